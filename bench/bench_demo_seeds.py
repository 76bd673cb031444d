"""Benchmark: the default demo recipe on new demo cohorts (new seeds, other planted regions).

    python bench/bench_demo_seeds.py --out /tmp/seeds --cores 2 [--cohorts cortical,subcortical] [--keep] [--set training.epochs=8]

For each cohort of ``COHORTS`` (a seed and a planted-effects table that the default demo never used:
cortical regions, subcortical structures and the cerebellum, one-hemisphere effects; ``mild_restored``
with -15 % effects and the brain mean restored; and ``demo``, the default demo itself) it writes a config
(the repository's config.yaml with only ``results_dir``, ``demo.seed``, ``demo.effects_tsv`` and
``demo.restore_brain_mean`` changed),
runs the whole workflow (``snakemake --cores N all``: generation, preprocessing, training, explanations,
rankings) and reads what the pipeline wrote: per task the folds that learned (``learned`` in
tables/metrics.tsv), the mean subject-level test AUC over folds, the (patient, control) test pairs of
the same fold ranked right over all folds, and the AUC of every fold's test subjects
pooled (the table's fold-0 row), the folds whose validation pair ranked right (0/0 with the demo's
defaults since 2026-12-04: ``selection: last`` chooses nothing, so there are no validation subjects), and the recall of the planted regions
in the task's top 10 (``headmri.explain.merge.planted_recall`` on tables/source-S_task-T_regions.tsv, S from
``--source``, default T1w, and the
cohort's ground_truth.tsv). One row per cohort and task goes to ``<out>/seeds.tsv`` (appended, so a
long run can be continued cohort by cohort); the targets of issue 12 are every fold learned, mean test
AUC >= 0.9 and recall >= 0.8 on every cohort and task. Wall minutes depend on what else the machine runs.
``--set KEY=VALUE`` (repeatable) runs a recipe candidate instead: that config.yaml setting changed in every
cohort's config (a key config.yaml lacks is an error), the overrides recorded in the ``recipe`` column.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Sequence

import pandas as pd
import yaml

from headmri.atomic import write_tsv
from headmri.evaluation.metrics import POOLED_FOLD
from headmri.explain.merge import planted_recall

REPO = Path(__file__).resolve().parents[1]
TASK_GROUP = {"migraine": "migraine", "apth": "APTH", "ppth": "PPTH"}

# name -> (seed, rows of group, region, hemisphere, tissue, effect); effects as strong as the demo's (-0.25)
COHORTS: dict[str, tuple[int, list[tuple[str, str, str, str, float]]]] = {
    "cortical": (101, [("migraine", "superiortemporal", "both", "both", -0.25), ("migraine", "paracentral", "both", "both", -0.25),
                       ("APTH", "insula", "both", "both", -0.25), ("APTH", "superiorparietal", "both", "both", -0.25),
                       ("PPTH", "lingual", "both", "both", -0.25), ("PPTH", "inferiorparietal", "both", "both", -0.25)]),
    "subcortical": (202, [("migraine", "Thalamus", "both", "both", -0.25), ("migraine", "supramarginal", "both", "both", -0.25),
                          ("APTH", "Putamen", "both", "both", -0.25), ("APTH", "precuneus", "both", "both", -0.25),
                          ("PPTH", "cerebellum", "both", "both", -0.25), ("PPTH", "lateraloccipital", "both", "both", -0.25)]),
    "one_hemisphere": (303, [("migraine", "postcentral", "lh", "both", -0.25), ("migraine", "caudalmiddlefrontal", "lh", "both", -0.25),
                             ("APTH", "superiorfrontal", "rh", "both", -0.25), ("APTH", "Hippocampus", "rh", "both", -0.25),
                             ("PPTH", "fusiform", "lh", "both", -0.25), ("PPTH", "supramarginal", "rh", "both", -0.25)]),
    "mixed_a": (404, [("migraine", "Caudate", "both", "both", -0.25), ("migraine", "middletemporal", "rh", "both", -0.25),
                      ("APTH", "parsopercularis", "both", "both", -0.25), ("APTH", "cerebellum", "lh", "both", -0.25),
                      ("PPTH", "precentral", "both", "both", -0.25), ("PPTH", "cuneus", "both", "both", -0.25)]),
    "mixed_b": (505, [("migraine", "lateralorbitofrontal", "both", "both", -0.25), ("migraine", "Putamen", "lh", "both", -0.25),
                      ("APTH", "postcentral", "rh", "both", -0.25), ("APTH", "inferiortemporal", "both", "both", -0.25),
                      ("PPTH", "Thalamus", "rh", "both", -0.25), ("PPTH", "rostralmiddlefrontal", "both", "both", -0.25)]),
    # issue 13's scoring cohort: a milder effect (-15 %), small and large structures, subcortical and one-sided,
    # with the brain mean restored (RESTORED) so that only the planted regions separate the groups
    "mild_restored": (606, [("migraine", "Amygdala", "both", "both", -0.15), ("migraine", "superiorfrontal", "lh", "both", -0.15),
                            ("APTH", "Thalamus", "rh", "both", -0.15), ("APTH", "parahippocampal", "both", "both", -0.15),
                            ("PPTH", "pericalcarine", "both", "both", -0.15), ("PPTH", "middletemporal", "lh", "both", -0.15)]),
    # 2026-12-01, after the recipe and the explanation defaults were fixed: a cohort nothing was chosen on,
    # again a large region beside a small subcortical one in each task (the shape of seed 505's miss)
    "mixed_c": (707, [("migraine", "insula", "lh", "both", -0.25), ("migraine", "Caudate", "both", "both", -0.25),
                      ("APTH", "lingual", "both", "both", -0.25), ("APTH", "Hippocampus", "rh", "both", -0.25),
                      ("PPTH", "precuneus", "both", "both", -0.25), ("PPTH", "Pallidum", "lh", "both", -0.25)]),
    # 2026-12-02, made after every default of 2026-12-01 and never used to choose anything: regions and sides
    # no other cohort plants (a small cortical one, a medial one, one-sided cortex and striatum)
    "mixed_d": (808, [("migraine", "posteriorcingulate", "both", "both", -0.25), ("migraine", "Putamen", "rh", "both", -0.25),
                      ("APTH", "transversetemporal", "both", "both", -0.25), ("APTH", "inferiorparietal", "rh", "both", -0.25),
                      ("PPTH", "Hippocampus", "both", "both", -0.25), ("PPTH", "caudalmiddlefrontal", "rh", "both", -0.25)]),
    # 2026-12-02, after the occlusion slice step: regions no other cohort plants, one-sided ones on both sides
    "mixed_e": (909, [("migraine", "medialorbitofrontal", "both", "both", -0.25), ("migraine", "Amygdala", "lh", "both", -0.25),
                      ("APTH", "isthmuscingulate", "both", "both", -0.25), ("APTH", "Thalamus", "lh", "both", -0.25),
                      ("PPTH", "parstriangularis", "rh", "both", -0.25), ("PPTH", "Accumbens-area", "both", "both", -0.25)]),
    # 2026-12-04, made for multiple-instance training's held-out check, never used to choose anything: regions
    # no other cohort plants (a medial one, the right pallidum, two small temporal ones)
    "mixed_f": (1111, [("migraine", "rostralanteriorcingulate", "both", "both", -0.25), ("migraine", "Pallidum", "rh", "both", -0.25),
                       ("APTH", "bankssts", "both", "both", -0.25), ("APTH", "Caudate", "rh", "both", -0.25),
                       ("PPTH", "entorhinal", "both", "both", -0.25), ("PPTH", "temporalpole", "lh", "both", -0.25)]),
}
RESTORED = {"mild_restored"}


def _demo_cohort() -> tuple[int, list[tuple[str, str, str, str, float]]]:
    """The default demo: config.yaml's seed and effects table, as ``make demo`` makes it."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())["demo"]
    effects = pd.read_csv(REPO / config["effects_tsv"], sep="\t")
    return int(config["seed"]), list(effects[["group", "region", "hemisphere", "tissue", "effect"]].itertuples(index=False, name=None))


COHORTS["demo"] = _demo_cohort()


def parse_override(text: str) -> tuple[list[str], object]:
    """``training.epochs=8`` -> (["training", "epochs"], 8): a dotted config key and a YAML value."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a dotted config key, got {text!r}")
    return key.split("."), yaml.safe_load(value)


def apply_overrides(config: dict, overrides: Sequence[tuple[list[str], object]]) -> dict:
    """Set each dotted key of ``overrides`` in ``config`` (a recipe candidate); a key config.yaml does not have is
    an error, so that a typo cannot leave the default silently in place."""
    for keys, value in overrides:
        node = config
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise KeyError(f"config.yaml has no {'.'.join(keys[:depth + 1])}")
            parent, node = node, node[key]
        parent[keys[-1]] = value
    return config


def recipe_label(overrides: Sequence[tuple[list[str], object]]) -> str:
    """What seeds.tsv records as the recipe: ``default`` or the overrides, ``training.epochs=8; ...``."""
    return "; ".join(f"{'.'.join(keys)}={value}" for keys, value in overrides) or "default"


def write_cohort_config(name: str, out: Path, overrides: Sequence[tuple[list[str], object]] = ()) -> Path:
    seed, effects = COHORTS[name]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    effects_tsv = folder / "effects.tsv"
    pd.DataFrame(effects, columns=["group", "region", "hemisphere", "tissue", "effect"]).to_csv(effects_tsv, sep="\t", index=False)
    config = apply_overrides(yaml.safe_load((REPO / "config.yaml").read_text()), overrides)
    config["results_dir"] = str(folder / "results")
    config["demo"]["seed"] = seed
    config["demo"]["effects_tsv"] = str(effects_tsv)
    config["demo"]["restore_brain_mean"] = name in RESTORED
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def first_row_planted(ranking_tsv: Path, truth_tsv: Path, group: str) -> bool:
    """Is the ranking's first region one of ``group``'s planted labels?"""
    ranking = pd.read_csv(ranking_tsv, sep="\t").sort_values("rank")
    truth = pd.read_csv(truth_tsv, sep="\t")
    return int(ranking["label"].iloc[0]) in set(truth.loc[truth["group"] == group, "label"].astype(int))


def randomisation_passed(results: Path, task: str, source: str) -> str:
    """``passed/folds`` of the randomisation test (tables/sanity.tsv) for the source's first model."""
    sanity = pd.read_csv(results / "tables" / "sanity.tsv", sep="\t")
    rows = sanity[(sanity["task"] == task) & (sanity["source"] == source) & (sanity["model"] != "resnet3d")]
    return f"{int(rows['passed'].astype(bool).sum())}/{len(rows)}"


def pairs_right(folds: pd.DataFrame) -> str:
    """``right/pairs`` over the folds' test (patient, control) pairs: each fold's AUC times its pairs
    (positives tp + fn, negatives tn + fp of its two-class metrics row). With 1 test subject per class a
    fold is one pair and its AUC 0 or 1; with more, a fold's AUC alone hides how many pairs it missed."""
    pairs = (folds["tp"] + folds["fn"]) * (folds["tn"] + folds["fp"])
    return f"{int(round(float((folds['auc'] * pairs).sum())))}/{int(pairs.sum())}"


def score(name: str, results: Path, minutes: float, source: str = "T1w", recipe: str = "default") -> pd.DataFrame:
    """One row per task of image source ``source`` from what the finished workflow wrote under ``results``."""
    metrics = pd.read_csv(results / "tables" / "metrics.tsv", sep="\t")
    metrics = metrics[(metrics["model"] != "resnet3d") & (metrics["source"] == source)]
    pooled = metrics[(metrics["split"] == "test") & (metrics["fold"] == POOLED_FOLD)]
    test, val = (metrics[(metrics["split"] == split) & (metrics["fold"] != POOLED_FOLD)] for split in ("test", "val"))
    truth = results / "demo" / "bids" / "ground_truth.tsv"
    rows = []
    for task, group in TASK_GROUP.items():
        folds = test[test["task"] == task]
        ranking = results / "tables" / f"source-{source}_task-{task}_regions.tsv"
        rows.append({
            "date": date.today().isoformat(), "machine": f"{platform.node()} ({platform.machine()})", "cohort": name,
            "seed": COHORTS[name][0], "task": task, "recipe": recipe,
            "planted": ", ".join(f"{r}/{h}" for g, r, h, _, _ in COHORTS[name][1] if g == group),
            "folds_learned": f"{int(folds['learned'].astype(bool).sum())}/{len(folds)}",
            "test_folds_right": f"{int((folds['auc'] == 1.0).sum())}/{len(folds)}",
            "test_pairs_right": pairs_right(folds),
            # with selection: last (the demo's) the validation subjects choose nothing: held out as the test ones
            "val_folds_right": f"{int((val.loc[val['task'] == task, 'auc'] == 1.0).sum())}/{int((val['task'] == task).sum())}",
            "mean_test_auc": round(float(folds["auc"].mean()), 3),
            "pooled_test_auc": round(float(pooled.loc[pooled["task"] == task, "auc"].mean()), 3),
            "recall_top10": round(planted_recall(ranking, truth, top_k=10, group=group), 3),
            "first_row_planted": first_row_planted(ranking, truth, group),
            "randomisation_passed": randomisation_passed(results, task, source),
            "minutes": round(minutes, 1),
        })
    return pd.DataFrame(rows)


def run_workflow(config: Path, cores: int) -> None:
    """The whole workflow on ``config``, every job importing this checkout's headmri (not the one an editable
    install points at, when the benchmark runs from another worktree)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", str(config),
                    "--directory", str(REPO), "all"], check=True, cwd=REPO, env=env)


def append_rows(table: Path, rows: pd.DataFrame) -> None:
    """Add ``rows`` to the TSV ``table``, rewritten whole so that columns added since an older run's rows
    line up by name (theirs empty) rather than by position."""
    if table.exists():
        rows = pd.concat([pd.read_csv(table, sep="\t"), rows], ignore_index=True)
    write_tsv(rows, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--cohorts", default=",".join(COHORTS), help=f"comma-separated, of {', '.join(COHORTS)}")
    parser.add_argument("--source", default="T1w", help="the image source scored (config sources; default T1w)")
    parser.add_argument("--keep", action="store_true", help="keep each cohort's results (default: remove after scoring)")
    parser.add_argument("--set", dest="overrides", type=parse_override, action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe candidate: change one config.yaml setting (dotted key, YAML value), e.g. "
                             "training.epochs=8; repeatable, recorded in seeds.tsv")
    args = parser.parse_args()
    table = args.out / "seeds.tsv"
    for name in args.cohorts.split(","):
        config = write_cohort_config(name, args.out, args.overrides)
        started = time.perf_counter()
        run_workflow(config, args.cores)
        rows = score(name, args.out / name / "results", (time.perf_counter() - started) / 60, args.source,
                     recipe_label(args.overrides))
        append_rows(table, rows)
        print(rows.to_string(index=False), flush=True)
        if not args.keep:
            shutil.rmtree(args.out / name / "results", ignore_errors=True)


if __name__ == "__main__":
    main()
