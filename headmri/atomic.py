"""Atomic file writes: write to a temporary name in the same folder, then rename.

A killed job or an exception never leaves a half-written file under the final name, so Snakemake never
mistakes a partial output for a finished one. What a SIGKILLed writer leaves under its temporary name is
removed by the next write of the same output.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover  (nibabel loads when a NIfTI is written: training jobs write none)
    import nibabel as nib


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's live process
        return True
    return True


def _remove_orphans(path: Path) -> None:
    """Delete the temporaries that killed writers of ``path`` left behind (SIGKILL runs no cleanup).

    A temporary is named after its writer's process id; it is an orphan when no process with that id
    lives on this machine. Snakemake runs one job per output at a time, so a temporary of another live
    writer of the same output exists only on another node of a cluster, whose id this check cannot see:
    such a file is kept when the id happens to be alive here, which is harmless.
    """
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.pid*.tmp*"):
        pid = candidate.name[len(path.name) + 5:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_is_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()


def _temporary_sibling(path: Path) -> Path:
    _remove_orphans(path)
    # Keep the suffixes (".nii.gz") so libraries that choose a format from the name still do.
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600 files; outputs on a shared cluster must follow the user's umask like any file.
    os.chmod(tmp, 0o666 & ~_UMASK)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def with_units(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """``img`` with its header's units set where they are unknown: millimetres in space, seconds in time
    (what FSL and dcm2niix write, and what NIfTI readers assume). Changes the header in place.

    An image made from an array and an affine has unknown units, and so does the MNI template nimare
    ships; antspyx then prints "Warning: NIftI time units are 'unknown'" for every image it takes (four
    per registration), and other readers guess. Units that are set are left alone.
    """
    header = img.header
    if hasattr(header, "set_xyzt_units"):
        space, time = header.get_xyzt_units()
        header.set_xyzt_units("mm" if space == "unknown" else space, "sec" if time == "unknown" else time)
    return img


def save_nifti(img: nib.Nifti1Image, path: str | os.PathLike) -> None:
    """Write ``img`` atomically, with units in its header (``with_units``)."""
    import nibabel as nib

    with atomic_path(path) as tmp:
        nib.save(with_units(img), tmp)


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(obj, path: str | os.PathLike) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def write_tsv(frame: pd.DataFrame, path: str | os.PathLike, **kwargs) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=kwargs.pop("index", False), **kwargs)
