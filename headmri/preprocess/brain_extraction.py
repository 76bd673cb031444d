"""Brain extraction by backend name; the outputs (skull-stripped T1w, binary mask) stay on the input's
own grid and orientation whatever the backend.

- ``embedded``: deepbet (``headmri.preprocess.embedded``), weights in the wheel, CPU or GPU.
- ``fsl``: FSL BET through Nipype (``headmri.preprocess.fsl``), as in the structural paper.

Either way the T1w is first fully checked (``headmri.t1w.load_t1w``: unreadable, truncated, not 3D,
NaN, all-zero, impossible voxel size or field of view), so bad input fails before any heavy work, and the
two outputs are written atomically together.
"""

from __future__ import annotations

import os

from headmri.errors import ConfigError

BACKENDS = ("embedded", "fsl")


def extract_brain(
    t1w_path: str | os.PathLike,
    brain_out: str | os.PathLike,
    mask_out: str | os.PathLike,
    *,
    backend: str,
    subject: str,
    bet_frac: float = 0.5,
    threads: int | None = None,
) -> None:
    """Skull-strip one T1w image; write the brain and its mask (uint8 0/1), both or neither."""
    if backend == "embedded":
        from headmri.preprocess.embedded import extract_brain_deepbet  # lazy: torch is heavy

        extract_brain_deepbet(t1w_path, brain_out, mask_out, subject=subject, threads=threads)
    elif backend == "fsl":
        from headmri.preprocess.fsl import extract_brain_bet

        extract_brain_bet(t1w_path, brain_out, mask_out, subject=subject, frac=bet_frac)
    else:
        raise ConfigError(f"unknown brain extraction backend {backend!r}; choose one of {BACKENDS}")
