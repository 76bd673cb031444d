"""Per-subject preprocessing: brain extraction in native space, affine registration to MNI152NLin6Asym."""

from headmri.preprocess.brain_extraction import extract_brain
from headmri.preprocess.registration import register_to_mni

__all__ = ["extract_brain", "register_to_mni"]
