"""Affine registration of a skull-stripped brain to the MNI152NLin6Asym 1 mm template, by backend name.

- ``embedded``: antspyx ``AffineFast`` or ``Affine`` (``headmri.preprocess.embedded``), ITK ``.mat``.
- ``fsl``: FLIRT 12 dof through Nipype (``headmri.preprocess.fsl``), FLIRT's text matrix.

Both write the MNI brain (linear interpolation) and mask (nearest neighbour) on the template grid in RAS
voxel order, the backend's own transform, and the 4x4 matrix mapping subject scanner RAS mm to MNI RAS
mm (``numpy.loadtxt``), all four atomically together. ``template_brain`` is the template T1w: voxels
outside ``template_mask`` are zeroed first, so a whole-head template with its mask is fine; ``None`` for
both means the backend's own template.
"""

from __future__ import annotations

import os

from headmri.errors import ConfigError

BACKENDS = ("embedded", "fsl")


def register_to_mni(
    brain: str | os.PathLike,
    mask: str | os.PathLike,
    template_brain: str | os.PathLike | None,
    template_mask: str | os.PathLike | None,
    brain_out: str | os.PathLike,
    mask_out: str | os.PathLike,
    xfm_out: str | os.PathLike,
    affine_out: str | os.PathLike,
    *,
    backend: str,
    transform: str = "AffineFast",
    subject: str,
    threads: int | None = None,
) -> None:
    """Register a native-space brain (and move its mask) to the template; write four files or none."""
    outputs = (brain_out, mask_out, xfm_out, affine_out)
    if backend == "embedded":
        from headmri.preprocess.embedded import register_ants  # lazy: antspyx is heavy

        register_ants(brain, mask, template_brain, template_mask, *outputs, transform=transform, subject=subject,
                      threads=threads)
    elif backend == "fsl":
        from headmri.preprocess.fsl import register_flirt

        register_flirt(brain, mask, template_brain, template_mask, *outputs, subject=subject)
    else:
        raise ConfigError(f"unknown registration backend {backend!r}; choose one of {BACKENDS}")
