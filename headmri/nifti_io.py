"""Reading gzipped NIfTI files fast: ISA-L decompression, nibabel parsing.

Why not ``nib.load`` for ``.nii.gz``: nibabel streams the file through Python's ``gzip`` module (zlib),
which was the largest single cost of building a subject's slice cache (docs/benchmarks.md). ISA-L's
``igzip`` (python-isal, the decompressor of xopen and cutadapt) inflates the same stream about twice as
fast and releases the GIL, so a brain and its mask can be read at once on two threads. The header and
data are still parsed by nibabel (``from_bytes``), so every NIfTI-1/-2 detail (scaling, orientation,
extensions) is nibabel's.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
from isal import igzip

# sizeof_hdr, the first field of both formats: 348 for NIfTI-1, 540 for NIfTI-2 (either byte order).
_IMAGE_CLASS = {348: nib.Nifti1Image, 540: nib.Nifti2Image}


def load_nifti(path: str | Path) -> nib.Nifti1Image | nib.Nifti2Image:
    """A single-file NIfTI image (``.nii`` or ``.nii.gz``), its data in memory for gzipped files.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (or nibabel's own errors, or
    ``OSError`` for a damaged gzip stream) for content that is not single-file NIfTI.
    """
    path = Path(path)
    if not path.name.endswith(".gz"):
        return nib.load(path)
    data = igzip.decompress(path.read_bytes())
    for byteorder in ("little", "big"):
        image_class = _IMAGE_CLASS.get(int.from_bytes(data[:4], byteorder))
        if image_class is not None:
            return image_class.from_bytes(data)
    raise ValueError(f"not a NIfTI-1 or NIfTI-2 file (header size field {data[:4]!r})")
