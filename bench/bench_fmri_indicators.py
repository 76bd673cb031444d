"""Benchmark: the fMRI indicators of one subject at the paper's size (61 x 73 x 61 x 170, 3 mm MNI, TR 2 s).

A synthetic run inside nilearn's MNI152 brain mask (noise plus a low-frequency signal shared within each
AAL region, so the time series look like BOLD to the rank and spectrum code), written as an uncompressed
NIfTI with its sidecar. Measured, each ``--repeats`` times (the median and the minimum are printed):

- ``reho_27`` / ``reho_19`` / ``reho_7``: ``headmri.fmri.reho.kendall_w`` on the in-memory array
- ``alff_falff``: ALFF and fALFF of the in-mask series
- ``rfcs``: RFCS on the 116 AAL regions (atlas resampling included)
- ``subject``: ``headmri.fmri.indicators.compute_indicators`` from the files (loading, both cleanings
  through nilearn, every map): the time per subject a workflow job would take

    python bench/bench_fmri_indicators.py                 # --repeats 3
    python bench/bench_fmri_indicators.py --json out.json

Set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS to pin the thread count; the numbers are wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from headmri.fmri import alff, reho
from headmri.fmri.atlas import aal116, mni_brain_mask, on_grid
from headmri.fmri.bold import MNI_3MM, BoldFiles
from headmri.fmri.indicators import IndicatorSettings, compute_indicators
from headmri.fmri.rfcs import rfcs

TR = 2.0


def synthetic_run(n_volumes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(data x, y, z, t float32, mask bool) on the 3 mm MNI grid."""
    rng = np.random.default_rng(seed)
    reference = nib.Nifti1Image(np.zeros(MNI_3MM.shape, np.float32), MNI_3MM.affine)
    mask = np.asarray(mni_brain_mask(MNI_3MM.shape, MNI_3MM.affine).dataobj) > 0
    labels = on_grid(aal116(), reference).labels()
    spectrum = np.fft.rfftfreq(n_volumes, TR)
    slow = rng.standard_normal((int(labels.max()) + 1, spectrum.size)) * ((spectrum > 0.01) & (spectrum < 0.08))
    region_signal = np.fft.irfft(slow, n=n_volumes, axis=1).astype(np.float32) * 8
    data = rng.standard_normal(MNI_3MM.shape + (n_volumes,), dtype=np.float32)
    data += region_signal[labels]
    data += 1000.0
    data[~mask] = 0.0
    return data, mask


def timed(function, repeats: int) -> dict:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(seconds), 2), "min_s": round(min(seconds), 2), "runs": repeats}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=170)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    data, mask = synthetic_run(args.volumes)
    series = data[mask]
    bold_img = nib.Nifti1Image(data, MNI_3MM.affine)
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), MNI_3MM.affine)
    context = {"grid": list(data.shape), "mask_voxels": int(mask.sum()), "cpus": os.cpu_count(),
               "load_average": [round(x, 1) for x in os.getloadavg()], "machine": platform.machine()}
    print(json.dumps(context))
    rows = []
    for size in (27, 19, 7):
        rows.append({"step": f"reho_{size}", **timed(lambda size=size: reho.kendall_w(data, mask, size), args.repeats)})
        print(json.dumps(rows[-1]))
    rows.append({"step": "alff_falff", **timed(lambda: (alff.alff(series, TR), alff.falff(series, TR)), args.repeats)})
    print(json.dumps(rows[-1]))
    rows.append({"step": "rfcs", **timed(lambda: rfcs(bold_img, mask_img, aal116()), args.repeats)})
    print(json.dumps(rows[-1]))
    with tempfile.TemporaryDirectory() as tmp:
        files = BoldFiles(subject="sub-bench", bold=Path(tmp) / "sub-bench_bold.nii", mask=Path(tmp) / "mask.nii")
        bold_img.header.set_zooms((3.0, 3.0, 3.0, TR))
        nib.save(bold_img, files.bold)
        nib.save(mask_img, files.mask)
        files.sidecar_path().write_text(json.dumps({"RepetitionTime": TR}))
        rows.append({"step": "subject", **timed(lambda: compute_indicators(files, IndicatorSettings()), args.repeats)})
        print(json.dumps(rows[-1]))
    if args.json:
        args.json.write_text(json.dumps({"context": context, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
