"""Benchmark: the region-score normalisations compared on finished runs, by merging their folds again.

    python bench/bench_normalisations.py /tmp/seeds/subcortical /tmp/seeds/demo ... [--out normalisations.tsv]
        [--rankings mean,contrast]

Each argument is a folder of ``bench/bench_demo_seeds.py --keep`` (``results/`` with the workflow's
``explain/**/task-T/model-M/fold-F/regions.tsv``, ``train/**/metrics.tsv`` and the cohort's
``demo/bids/ground_truth.tsv``). The normalisation only changes how the folds' region tables are merged,
so nothing is explained again: every task is merged with ``headmri.explain.merge.write_ranking`` under
each normalisation and ranking statistic of ``--rankings`` (``contrast`` needs runs whose controls were
explained; folds that did not learn left out, as the workflow does) and scored with ``planted_recall``
(top 10, top 5, and top 1: whether the first row is a planted structure) and the mean rank of the planted
labels. One row per cohort x task x normalisation x ranking, printed and written to ``--out``;
docs/explanations.md ("Which normalisation") keeps the table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from headmri.config import NORMALISATIONS, RANKINGS
from headmri.explain.merge import RankingOptions, planted_recall, write_ranking
from headmri.labels import load as load_labels

TASK_GROUP = {"migraine": "migraine", "apth": "APTH", "ppth": "PPTH"}


def fold_tables(results: Path, task: str) -> tuple[dict[int, str], dict[int, str]]:
    """fold -> regions.tsv and fold -> the fold's training metrics.tsv (either results layout)."""
    regions = sorted(results.glob(f"explain/**/task-{task}/model-*/fold-*/regions.tsv"))
    folds = [int(path.parent.name.split("-")[1]) for path in regions]
    metrics = [str(path).replace("/explain/", "/train/").replace("regions.tsv", "metrics.tsv") for path in regions]
    return dict(zip(folds, map(str, regions))), dict(zip(folds, metrics))


def score(run: Path, task: str, normalisation: str, scratch: Path, ranking_statistic: str = "mean") -> dict:
    results = run / "results"
    truth, group = results / "demo" / "bids" / "ground_truth.tsv", TASK_GROUP[task]
    regions, metrics = fold_tables(results, task)
    out = scratch / f"{run.name}_{task}_{normalisation}_{ranking_statistic}.tsv"
    options = RankingOptions(normalisation=normalisation, ranking=ranking_statistic, reference_class="HC", bootstrap=0)
    ranking = write_ranking(regions, 10, out, metrics_paths=metrics, exclude_unlearned=True, options=options,
                            labels=load_labels("freesurfer"))
    planted = pd.read_csv(truth, sep="\t").query("group == @group")["label"]
    return {"cohort": run.name, "task": task, "normalisation": normalisation, "ranking": ranking_statistic,
            "recall_top10": planted_recall(out, truth, 10, group=group),
            "recall_top5": planted_recall(out, truth, 5, group=group),
            "planted_first": planted_recall(out, truth, 1, group=group) > 0,
            "mean_rank_planted": round(float(ranking.loc[ranking["label"].isin(planted), "rank"].mean()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="folders of bench_demo_seeds.py --keep")
    parser.add_argument("--out", type=Path, default=Path("normalisations.tsv"))
    parser.add_argument("--rankings", default="mean", help=f"comma-separated, of {', '.join(RANKINGS)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [score(run, task, normalisation, Path(scratch), statistic) for run in args.runs for task in TASK_GROUP
                if fold_tables(run / "results", task)[0] for normalisation in NORMALISATIONS
                for statistic in args.rankings.split(",")]
    table = pd.DataFrame(rows)
    table.to_csv(args.out, sep="\t", index=False)
    print(table.to_string(index=False))
    summary = table.assign(all_top10=table["recall_top10"] == 1, all_top5=table["recall_top5"] == 1)
    print(summary.groupby(["normalisation", "ranking"])[["all_top10", "all_top5", "planted_first", "mean_rank_planted"]]
          .agg({"all_top10": "sum", "all_top5": "sum", "planted_first": "sum", "mean_rank_planted": "mean"}).to_string())


if __name__ == "__main__":
    main()
