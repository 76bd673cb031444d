#!/usr/bin/env bash
# Snakemake runs this once, inside the new environment, after creating it from fsl.yaml.
# FSL's tools and Nipype's FSL interfaces find the standard images through $FSLDIR and write the
# format named by $FSLOUTPUTTYPE; conda runs activate.d scripts on every activation, jobs included.
set -euo pipefail
mkdir -p "$CONDA_PREFIX/etc/conda/activate.d"
cat >"$CONDA_PREFIX/etc/conda/activate.d/headmri-fsl.sh" <<'SH'
export FSLDIR="$CONDA_PREFIX"
export FSLOUTPUTTYPE=NIFTI_GZ
SH
