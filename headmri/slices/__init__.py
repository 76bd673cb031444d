"""2D slice tensors of 3D brains, their geometry, and a fast batch loader."""

from headmri.slices.extract import decode, extract_slices
from headmri.slices.geometry import SliceGeometry
from headmri.slices.loader import SliceBatchLoader

__all__ = ["SliceBatchLoader", "SliceGeometry", "decode", "extract_slices"]
