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
import numpy as np
from isal import igzip
from nibabel.arrayproxy import ArrayProxy

# sizeof_hdr, the first field of both formats: 348 for NIfTI-1, 540 for NIfTI-2 (either byte order).
_IMAGE_CLASS = {348: nib.Nifti1Image, 540: nib.Nifti2Image}


def load_nifti(path: str | Path) -> nib.Nifti1Image | nib.Nifti2Image:
    """A single-file NIfTI image (``.nii`` or ``.nii.gz``), its data in memory for gzipped files.

    For a gzipped file whose data are stored unscaled, the image holds a read-only array that is a view of
    the inflated bytes: nibabel's proxy would copy them once more (30 MB, 7 ms for an MNI brain). Scaled
    data go through nibabel's proxy, which applies the scaling.

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
            return _in_memory(image_class.from_bytes(data), data)
    raise ValueError(f"not a NIfTI-1 or NIfTI-2 file (header size field {data[:4]!r})")


def _in_memory(image: nib.Nifti1Image | nib.Nifti2Image, data: bytes) -> nib.Nifti1Image | nib.Nifti2Image:
    """``image`` with its data as a view of ``data`` (the whole file) where no scaling applies."""
    proxy = image.dataobj
    if not isinstance(proxy, ArrayProxy) or proxy.slope != 1 or proxy.inter != 0:
        return image
    needed = proxy.offset + int(np.prod(proxy.shape)) * proxy.dtype.itemsize
    if len(data) < needed:
        raise ValueError(f"the file holds {len(data)} bytes but its header describes {needed} "
                         f"(shape {proxy.shape}, {proxy.dtype}, data offset {proxy.offset}): it is truncated")
    array = np.ndarray(proxy.shape, dtype=proxy.dtype, buffer=data, offset=proxy.offset, order=proxy.order)
    return type(image)(array, image.affine, image.header)
