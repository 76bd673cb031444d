"""Per-subject preprocessing: brain extraction in native space, affine registration to MNI152NLin6Asym.

Each backend lives in its own module (``embedded``: deepbet and antspyx; ``fsl``: BET and FLIRT through
Nipype) with its own adapter script, so that a job running in the FSL environment never imports torch or
ANTs; which function, script and environment a backend name means is ``headmri.backends``, the one
dispatch the rules and the tests read. Shared pieces: ``native`` and ``mni`` (checks and atomic writes),
``transforms`` (affine conventions). This file imports nothing, for the same reason.
"""
