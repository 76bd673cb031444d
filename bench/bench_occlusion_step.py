"""Benchmark: occlusion with a slice step against the exact values of a finished run.

``explain.occlusion.slice_step`` k occludes every k-th of the slices that hold a region and weights each
drop by the slices it stands for (headmri.explain.occlusion). This script reads, for every task and fold,
the run's own ``regions.tsv`` (the workflow's explain jobs, step 1 unless the run says otherwise) and the
same fold explained again with a step by ``bench/bench_explanations.py --occlusion-slice-step k`` (its
scratch folder; ``--max-subjects-per-fold 0`` explains every subject, as the workflow did), and reports how
far the step moved each subject's region values and the task's ranking:

- ``spearman``: per explained subject (and target), Spearman's correlation of its region values, step
  against exact; the median and the minimum over the fold's subjects;
- ``rel_error``: per subject, the largest |step - exact| over its regions divided by its largest |exact|;
  the median over the fold's subjects;
- per task: the rank in the exact ranking of every region in the step ranking's top 10 (and the other way
  round), both read from the ranking files (same normalisation and ranking statistic); with ``--truth``
  also each ranking's planted recall and mean rank of the planted labels (``bench_explanations.score_ranking``).

    python bench/bench_explanations.py --results RUN/results --truth RUN/results/demo/bids/ground_truth.tsv \\
        --methods occlusion --occlusion-slice-step 2 --normalisations none --rankings contrast \\
        --max-subjects-per-fold 0 --cohort NAME --out /tmp/step.tsv --scratch /tmp/step/NAME
    python bench/bench_occlusion_step.py --results RUN/results --scratch /tmp/step/NAME --step 2 \\
        --truth RUN/results/demo/bids/ground_truth.tsv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from bench_explanations import score_ranking
from scipy.stats import spearmanr

KEYS = ["participant_id", "target"]


def subject_agreement(exact: pd.DataFrame, stepped: pd.DataFrame) -> pd.DataFrame:
    """One row per explained subject and target: Spearman's rho and the relative largest error."""
    merged = exact.merge(stepped, on=[*KEYS, "label"], suffixes=("_exact", "_step"), validate="one_to_one")
    if len(merged) != len(exact) or len(merged) != len(stepped):
        raise ValueError(f"the two tables explain different subjects or regions ({len(exact)}, {len(stepped)}, "
                         f"{len(merged)} in common)")
    rows = []
    for key, part in merged.groupby(KEYS):
        a, b = part["value_exact"].to_numpy(float), part["value_step"].to_numpy(float)
        scale = np.abs(a).max()
        rows.append({"participant_id": key[0], "target": key[1], "spearman": spearmanr(a, b).statistic,
                     "rel_error": float(np.abs(a - b).max() / scale) if scale > 0 else float("nan")})
    return pd.DataFrame(rows)


def top_ranks(ranking_a: pd.DataFrame, ranking_b: pd.DataFrame, k: int = 10) -> list[int]:
    """The rank in ``ranking_b`` of each of ``ranking_a``'s top ``k`` regions, in ``ranking_a``'s order."""
    rank_b = dict(zip(ranking_b["label"].astype(int), ranking_b["rank"].astype(int)))
    return [rank_b.get(int(label), -1) for label in ranking_a.sort_values("rank")["label"].head(k)]


def planted(ranking_tsv: Path, truth: Path | None, group: str) -> str:
    if truth is None:
        return ""
    score = score_ranking(ranking_tsv, truth, group)
    return f"recall {score['recall_top10']}, planted labels at mean rank {score['mean_rank_planted']}"


def task_rows(args: argparse.Namespace) -> list[dict]:
    results, source, model, step = args.results, args.source, args.model, args.step
    rows = []
    for task_dir in sorted(args.scratch.glob("task-*")):
        task = task_dir.name.removeprefix("task-")
        stepped_dir = task_dir / f"occlusion_step{step}"
        folds = sorted(stepped_dir.glob("fold-*/regions.tsv"))
        if not folds:
            continue  # the task was not explained with this step
        for path in folds:
            fold = path.parent.name
            exact = pd.read_csv(results / "explain" / f"source-{source}" / f"task-{task}" / f"model-{model}" / fold /
                                "regions.tsv", sep="\t")
            agreement = subject_agreement(exact, pd.read_csv(path, sep="\t"))
            rows.append({"task": task, "fold": fold, "subjects": len(agreement),
                         "spearman_median": round(float(agreement["spearman"].median()), 4),
                         "spearman_min": round(float(agreement["spearman"].min()), 4),
                         "rel_error_median": round(float(agreement["rel_error"].median()), 4)})
        workflow_tsv, stepped_tsv = results / "tables" / f"source-{source}_task-{task}_regions.tsv", stepped_dir / args.ranking_file
        workflow, stepped = pd.read_csv(workflow_tsv, sep="\t"), pd.read_csv(stepped_tsv, sep="\t")
        print(f"{task}: the step's top 10 at exact ranks {top_ranks(stepped, workflow)}; the exact top 10 at step "
              f"ranks {top_ranks(workflow, stepped)}", flush=True)
        if args.truth is not None:
            group = str(workflow["target"].iloc[0])
            print(f"  exact: {planted(workflow_tsv, args.truth, group)}; step {step}: "
                  f"{planted(stepped_tsv, args.truth, group)}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="a finished workflow results directory")
    parser.add_argument("--scratch", type=Path, required=True, help="bench_explanations.py's --scratch folder")
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--source", default="T1w")
    parser.add_argument("--model", default="cnndemo", help="model key (model-<key> in the paths)")
    parser.add_argument("--truth", type=Path, default=None, help="the cohort's ground_truth.tsv")
    parser.add_argument("--ranking-file", default="ranking_norm-none_stat-contrast.tsv",
                        help="the step run's ranking compared with the workflow's (same normalisation and ranking)")
    args = parser.parse_args(argv)
    rows = task_rows(args)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
