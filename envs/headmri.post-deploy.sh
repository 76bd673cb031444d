#!/usr/bin/env bash
# Snakemake runs this once, inside the new environment, after creating it from headmri.yaml.
# nimare's wheel ships the MNI152NLin6Asym 1 mm template and brain mask on FSL's grid, which
# headmri.templates reads as data files; nimare's own pins (nilearn<0.14 and many packages we never
# import) would clash with ours, so it comes without its dependencies, as in the Makefile.
set -euo pipefail
python -m pip install --no-deps nimare==0.22.1
