"""Benchmark: what the region statistics and the randomisation test add to a run.

1. ``bootstrap``: ``headmri.explain.merge.merge_folds`` on synthetic regional tables (folds x patients x
   controls x regions), without intervals and with ``--replicates`` bootstrap replicates, for the mean and
   the contrast; the seconds each takes (the replicates are numpy matrix products, no Python loop over them).
2. ``sanity``: the explain job (``headmri.explain.job.explain_fold``) on a synthetic fold at the demo's
   size (the demo ViT with random weights, 112 px slices cut from a 182 x 218 x 182 MNI grid, a parcellation
   of ``--regions`` box regions), with and without the randomisation test (``--sanity-patients`` patients x
   ``--sanity-repeats`` re-initialisations), per method; the seconds of each and their ratio.

    python bench/bench_region_statistics.py                       # both, on the CPU, one torch thread
    python bench/bench_region_statistics.py --skip-sanity --replicates 1000 --patients 30 --regions 180

Prints one line per measurement; ``--json`` writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from headmri import labels as lut_labels
from headmri.explain.job import ExplainSettings, FoldInputs, FoldKey, FoldOutputs, SubjectFiles, explain_fold
from headmri.explain.merge import RankingOptions, merge_folds
from headmri.models import build_architecture
from headmri.slices.geometry import SliceGeometry
from headmri.training import save_trained

MNI_SHAPE = (182, 218, 182)
MNI_AFFINE = np.array([[1.0, 0, 0, -90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
CLASSES = ("HC", "migraine")


def scored_codes(n: int) -> list[int]:
    table = lut_labels.lut()
    codes = [int(c) for c in table.index[~table["excluded"]] if c > 0]
    return codes[:n]


def synthetic_tables(folds: int, patients: int, controls: int, regions: int, seed: int = 0) -> dict[int, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    codes = scored_codes(regions)
    tables = {}
    for fold in range(1, folds + 1):
        rows = []
        for group, n in (("migraine", patients), ("HC", controls)):
            values = rng.gamma(2.0, 1.0, size=(n, len(codes))) * rng.uniform(0.5, 100.0)  # a scale per fold
            for i in range(n):
                pid = f"sub-{group}{fold}x{i}"
                rows += [{"participant_id": pid, "group": group, "split": "test", "target": "migraine", "label": c,
                          "region": "", "value": v} for c, v in zip(codes, values[i])]
        tables[fold] = pd.DataFrame(rows)
    return tables


def bench_bootstrap(args) -> list[dict]:
    tables = synthetic_tables(args.folds, args.patients, args.patients, args.regions)
    results = []
    for ranking in ("mean", "contrast"):
        for replicates in (0, args.replicates):
            options = RankingOptions(normalisation="zscore", ranking=ranking, bootstrap=replicates, seed=0,
                                     reference_class="HC")
            started = time.perf_counter()
            merge_folds(tables, top_k=10, options=options)
            seconds = time.perf_counter() - started
            results.append({"measure": "bootstrap", "ranking": ranking, "replicates": replicates, "folds": args.folds,
                            "patients_per_fold": args.patients, "controls_per_fold": args.patients,
                            "regions": args.regions, "seconds": round(seconds, 3)})
            print(json.dumps(results[-1]), flush=True)
    return results


def box_parcellation(codes: list[int]) -> np.ndarray:
    """Box regions tiling a brain-sized block of the MNI grid."""
    labels = np.zeros(MNI_SHAPE, np.int16)
    lo, hi = np.array([30, 30, 30]), np.array([152, 188, 152])
    per_axis = int(np.ceil(len(codes) ** (1 / 3)))
    edges = [np.linspace(lo[a], hi[a], per_axis + 1).astype(int) for a in range(3)]
    k = 0
    for i in range(per_axis):
        for j in range(per_axis):
            for m in range(per_axis):
                if k < len(codes):
                    labels[edges[0][i]:edges[0][i + 1], edges[1][j]:edges[1][j + 1], edges[2][m]:edges[2][m + 1]] = codes[k]
                    k += 1
    return labels


def synthetic_fold(root: Path, patients: int, regions: int) -> tuple[dict[str, SubjectFiles], Path]:
    torch.manual_seed(0)
    model = build_architecture("vit_tiny_demo", CLASSES)
    save_trained(model, root / "model.pt", task="migraine", fold=1)
    labels = box_parcellation(scored_codes(regions))
    nib.save(nib.Nifti1Image(labels, MNI_AFFINE), root / "dseg.nii.gz")
    rng = np.random.default_rng(0)
    geometry = SliceGeometry.create(axis=0, size=model.input_size, source_shape=MNI_SHAPE, source_affine=MNI_AFFINE,
                                    kept_indices=range(22, 160))  # 138 kept slices, as on the demo
    files = {}
    for i in range(patients):
        pid = f"sub-p{i}"
        brain = np.where(labels > 0, rng.random(MNI_SHAPE, dtype=np.float32), 0)
        np.save(root / f"{pid}_slices.npy", (np.clip(geometry.slices_from_volume(brain), 0, 1) * 255).astype(np.uint8))
        (root / f"{pid}_slices.json").write_text(json.dumps(geometry.to_dict()))
        files[pid] = SubjectFiles(root / f"{pid}_slices.npy", root / f"{pid}_slices.json", root / "dseg.nii.gz")
    pd.DataFrame({"participant_id": list(files), "label": [p[4:] for p in files], "group": "migraine", "class_index": 1,
                  "fold": 1, "split": "test"}).to_csv(root / "split.tsv", sep="\t", index=False)
    return files, root / "split.tsv"


def bench_sanity(args) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files, split = synthetic_fold(root, args.job_patients, args.regions)
        for method in args.methods:
            seconds = {}
            for label, sanity in (("main", None), ("main+sanity", {"patients": args.sanity_patients,
                                                                    "repeats": args.sanity_repeats, "seed": 0})):
                out = root / f"{method}-{label}"
                started = time.perf_counter()
                explain_fold(FoldInputs(root / "model.pt", split, files), FoldKey("migraine", CLASSES, 1),
                             ExplainSettings(method=method, patients="test", batch_size=32, sanity=sanity),
                             FoldOutputs(out / "regions.tsv", out / "mean.nii.gz", out / "explain.json"), "cpu")
                seconds[label] = time.perf_counter() - started
            record = json.loads((root / f"{method}-main+sanity" / "explain.json").read_text())["sanity"]
            results.append({"measure": "sanity", "method": method, "patients": args.job_patients,
                            "sanity_patients": args.sanity_patients, "sanity_repeats": args.sanity_repeats,
                            "regions": args.regions, "main_s": round(seconds["main"], 2),
                            "with_sanity_s": round(seconds["main+sanity"], 2),
                            "sanity_s": record["seconds"], "ratio_sanity_to_main": round(record["seconds"] / seconds["main"], 2),
                            "spearman_random_vs_random": record["spearman"]})
            print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--patients", type=int, default=30, help="patients (and as many controls) per fold, bootstrap")
    parser.add_argument("--regions", type=int, default=151)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--job-patients", type=int, default=8, help="patients explained by the synthetic fold job")
    parser.add_argument("--sanity-patients", type=int, default=2)
    parser.add_argument("--sanity-repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["gradcam", "rollout", "chefer"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-bootstrap", action="store_true")
    parser.add_argument("--skip-sanity", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(), "load": os.getloadavg(), "threads": args.threads}))
    results = ([] if args.skip_bootstrap else bench_bootstrap(args)) + ([] if args.skip_sanity else bench_sanity(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
