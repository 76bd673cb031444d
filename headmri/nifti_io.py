"""Reading gzipped NIfTI files fast: ISA-L decompression, nibabel parsing.

Why not ``nib.load`` for ``.nii.gz``: nibabel streams the file through Python's ``gzip`` module (zlib),
which was the largest single cost of building a subject's slice cache (docs/benchmarks.md). ISA-L's
``igzip`` (python-isal, the decompressor of xopen and cutadapt) inflates the same stream about twice as
fast and releases the GIL, so a brain and its mask can be read at once on two threads. The header and
data are still parsed by nibabel (``from_bytes``, ``from_fileobj``), so every NIfTI-1/-2 detail (scaling,
orientation, extensions) is nibabel's.

``InflatingNifti`` inflates a file chunk by chunk into its image's array and says after each chunk how many
planes along the slowest voxel axis are complete, so a caller can work on those while the rest inflates.
"""

from __future__ import annotations

from collections.abc import Iterator
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


# Bytes inflated per step: a band of a few MNI planes (1 mm float32: 158 KiB a plane), small enough that
# the first band is ready early, large enough that handing bands over costs little.
CHUNK_BYTES = 1 << 20


class InflatingNifti:
    """A NIfTI image whose data arrive plane by plane: ``image`` is usable at once (header, affine, shape)
    and its array fills as ``inflate()`` runs, in file order (voxel axis 0 fastest, axis 2 slowest).

    Unscaled gzipped data are inflated straight into the image's array, one chunk at a time. Anything else
    (plain ``.nii``, scaled data, more than three dimensions with data beyond the first volume) is read by
    ``load_nifti`` when the object is made, and ``inflate()`` then reports every plane at once.
    """

    def __init__(self, path: str | Path, chunk_bytes: int | None = None):
        self.path = Path(path)
        self.chunk_bytes = int(chunk_bytes or CHUNK_BYTES)
        self._stream = None
        self.image = None
        if self.path.name.endswith(".gz"):
            self._open_stream()
        if self.image is None:
            self.image = load_nifti(self.path)

    @property
    def n_planes(self) -> int:
        """Planes along voxel axis 2 (1 for a 2D image)."""
        shape = self.image.shape
        return shape[2] if len(shape) > 2 else 1

    def _open_stream(self) -> None:
        stream = igzip.open(self.path, "rb")  # FileNotFoundError for a missing file, as load_nifti
        try:
            start = stream.peek(4)[:4]
            image_class = next((c for order in ("little", "big")
                                if (c := _IMAGE_CLASS.get(int.from_bytes(start, order))) is not None), None)
            if image_class is None:
                raise ValueError(f"not a NIfTI-1 or NIfTI-2 file (header size field {start!r})")
            header = image_class.header_class.from_fileobj(stream)
            slope, inter = header.get_slope_inter()
            shape = header.get_data_shape()
            if slope not in (None, 1) or inter not in (None, 0) or any(n != 1 for n in shape[3:]):
                stream.close()  # scaled or 4D: nibabel's own reading (load_nifti) applies
                return
            skip = int(header.get_data_offset()) - stream.tell()
            if skip < 0 or len(stream.read(skip)) != skip:
                raise ValueError(f"the header's data offset {header.get_data_offset()} lies inside the header "
                                 f"or beyond the end of the file")
        except BaseException:
            stream.close()
            raise
        array = np.empty(shape, dtype=header.get_data_dtype(), order="F")
        self._stream = stream
        self._buffer = memoryview(array.reshape(-1, order="F").view(np.uint8))  # its bytes, in file order
        self._filled = 0
        self.image = image_class(array, header.get_best_affine(), header)

    def inflate(self) -> Iterator[int]:
        """Inflate the rest, yielding after each chunk the number of complete planes along axis 2 so far.

        Raises ``ValueError`` when the file ends before its data do, ``OSError`` for a damaged stream.
        """
        if self._stream is None:
            yield self.n_planes
            return
        plane_bytes = max(len(self._buffer) // max(self.n_planes, 1), 1)
        with self._stream as stream:
            while self._filled < len(self._buffer):
                read = stream.readinto(self._buffer[self._filled:self._filled + self.chunk_bytes])
                if not read:
                    raise ValueError(f"the file holds {self._filled} bytes of data but its header describes "
                                     f"{len(self._buffer)} (shape {self.image.shape}, "
                                     f"{self.image.get_data_dtype()}): it is truncated")
                self._filled += read
                yield self._filled // plane_bytes
