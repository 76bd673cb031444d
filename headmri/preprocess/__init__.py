"""Per-subject preprocessing: brain extraction in native space, affine registration to MNI152NLin6Asym.

``brain_extraction.extract_brain`` and ``registration.register_to_mni`` take the backend by name. Each
backend lives in its own module (``embedded``: deepbet and antspyx; ``fsl``: BET and FLIRT through Nipype)
so that a job running in the FSL environment never imports torch or ANTs; the rules call the backend
modules directly. Shared pieces: ``native`` and ``mni`` (checks and atomic writes), ``transforms``
(affine conventions). This file imports nothing, for the same reason.
"""
