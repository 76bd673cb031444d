"""Benchmark: the fMRI demo (config/fmri_demo.yaml) on synthetic BOLD cohorts with other seeds and regions.

    python bench/bench_fmri_demo.py --out /tmp/fmri_seeds --cores 2 [--cohorts paper,insula] [--keep]

For each cohort of ``COHORTS`` (a seed and planted effects: ``paper`` is the demo itself, the paper's
precunei, cuneus and middle frontal gyrus; the others plant other AAL regions, small and deep ones among
them) it writes a config (config.yaml read over by config/fmri_demo.yaml, with only ``results_dir``,
``fmri.demo.seed`` and ``fmri.demo.effects_tsv`` changed), runs the whole workflow and reads what the
pipeline wrote: per source, task and model the folds that learned and the mean test AUC
(tables/metrics.tsv), and per ranking (tables/source-S_task-T[_model-M]_regions.tsv for the CNN and ViT,
the baselines' permutation importances) and target class the rank of every region planted in the target's
groups and the recall of those the source can show in its top 10 (RFCS shows connectivity effects only;
mALFF and ReHo show both kinds: a region coupled more to the network signal also has more low-frequency
power). Rows are appended to ``<out>/fmri_seeds.tsv``. Wall minutes depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from datetime import date
from pathlib import Path

import pandas as pd
import yaml
from bench_demo_seeds import run_workflow

from headmri.evaluation.metrics import POOLED_FOLD
from headmri.paths import model_key

REPO = Path(__file__).resolve().parents[1]
TOP_K = 10
# the effect kinds an indicator map shows (headmri.demo.bold's signal model)
SHOWS = {"rfcs": {"connectivity"}, "malff": {"amplitude", "connectivity"}, "falff": {"amplitude", "connectivity"},
         "alff": {"amplitude", "connectivity"}, "reho": {"amplitude", "connectivity"}}

# name -> (seed, rows of group, AAL region, kind, strength); as strong as the demo's (1.0 and 0.5)
COHORTS: dict[str, tuple[int, list[tuple[str, str, str, float]]]] = {
    "paper": (0, [("MWoA", "Precuneus_L", "connectivity", 1.0), ("MWoA", "Precuneus_R", "connectivity", 1.0),
                  ("MWoA", "Cuneus_L", "amplitude", 0.5), ("MWA", "Precuneus_L", "connectivity", 1.0),
                  ("MWA", "Precuneus_R", "connectivity", 1.0), ("MWA", "Frontal_Mid_L", "amplitude", 0.5)]),
    "insula": (11, [("MWoA", "Insula_L", "connectivity", 1.0), ("MWoA", "Insula_R", "connectivity", 1.0),
                    ("MWoA", "Occipital_Mid_R", "amplitude", 0.5), ("MWA", "Insula_L", "connectivity", 1.0),
                    ("MWA", "Insula_R", "connectivity", 1.0), ("MWA", "Temporal_Sup_L", "amplitude", 0.5)]),
    "deep_one_sided": (22, [("MWoA", "Hippocampus_L", "connectivity", 1.0), ("MWoA", "Angular_R", "amplitude", 0.5),
                            ("MWA", "Hippocampus_L", "connectivity", 1.0), ("MWA", "Thalamus_R", "amplitude", 0.5)]),
}


def write_cohort_config(name: str, out: Path, encoders: list[str] | None = None) -> Path:
    seed, effects = COHORTS[name]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    effects_tsv = folder / "effects.tsv"
    pd.DataFrame(effects, columns=["group", "region", "kind", "strength"]).to_csv(effects_tsv, sep="\t", index=False)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(yaml.safe_load((REPO / "config" / "fmri_demo.yaml").read_text()))  # lists replace, as --configfile
    config["results_dir"] = str(folder / "results")
    config["fmri"]["demo"] = {**config["fmri"].get("demo", {}), "seed": seed, "effects_tsv": str(effects_tsv)}
    if encoders:
        config["fmri"]["encoders"] = list(encoders)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def rankings(tables: Path) -> list[tuple[str, str, str, Path]]:
    """(source, task, model, file) of every region ranking the run wrote; model ``main`` is the source's first."""
    found = []
    for path in sorted(tables.glob("source-*_task-*_regions.tsv")) + sorted(tables.glob("source-*_task-*_importance.tsv")):
        parts = dict(part.split("-", 1) for part in path.stem.split("_")[:-1])
        found.append((parts["source"], parts["task"], parts.get("model", "main"), path))
    return found


def ranked_regions(path: Path) -> dict[str, list[str]]:
    """target -> AAL region names in rank order (importance tables: one target, ``*``); empty for a ranking
    over folds none of which learned (``n_learned`` 0: the workflow ranks them all and flags it)."""
    table = pd.read_csv(path, sep="\t")
    if "target" not in table.columns:
        return {"*": list(table.sort_values("rank")["name"])}
    return {target: [] if rows["n_learned"].max() == 0 else list(rows.sort_values("rank")["region"])
            for target, rows in table.groupby("target")}


def score_rankings(name: str, results: Path, pools: dict[str, dict[str, list[str]]]) -> pd.DataFrame:
    truth = pd.read_csv(results / "demo" / "bold" / "ground_truth.tsv", sep="\t")
    rows = []
    for source, task, model, path in rankings(results / "tables"):
        for target, order in ranked_regions(path).items():
            groups = pools[task].get(target, [target]) if target != "*" else sorted(set(truth["group"]))
            planted = truth[truth["group"].isin(groups)].drop_duplicates("region")
            shown = planted[planted["kind"].isin(SHOWS[source])]
            found = [r for r in shown["region"] if r in order[:TOP_K]]
            rows.append({"cohort": name, "source": source, "task": task, "model": model, "target": target,
                         "recall_top10": round(len(found) / len(shown), 3) if len(shown) and order else float("nan"),
                         "planted_ranks": ", ".join(f"{r} ({k[:4]}) {order.index(r) + 1 if r in order else '-'}"
                                                    for r, k in zip(planted["region"], planted["kind"]))
                         if order else "no fold learned"})
    return pd.DataFrame(rows)


def score(name: str, results: Path, config: dict, minutes: float) -> pd.DataFrame:
    pools = {t["name"]: {c: t.get("pool", {}).get(c, [c]) for c in t["classes"]} for t in config["tasks"]}
    metrics = pd.read_csv(results / "tables" / "metrics.tsv", sep="\t")
    test = metrics[metrics["split"] == "test"]
    # the folds' own rows, and the rows pooled by their own job (the leave-one-subject-out baselines: no n_folds)
    test = test[(test["fold"] != POOLED_FOLD) | test["n_folds"].isna()]
    folds = test.groupby(["source", "task", "model"]).agg(
        folds=("fold", "size"), learned=("learned", lambda v: int(sum(True if pd.isna(x) else bool(x) for x in v))),  # baselines: n/a
        mean_test_auc=("auc", "mean")).reset_index()
    ranks = score_rankings(name, results, pools)
    ranks["model_key"] = ranks["model"].where(ranks["model"] != "main", ranks["source"].map(_main_model(config)))
    table = ranks.merge(folds, left_on=["source", "task", "model_key"], right_on=["source", "task", "model"],
                        how="left", suffixes=("", "_m")).drop(columns=["model_m", "model_key"])
    table.insert(0, "date", date.today().isoformat())
    table.insert(1, "machine", f"{platform.node()} ({platform.machine()})")
    table["seed"], table["minutes"] = COHORTS[name][0], round(minutes, 1)
    table["mean_test_auc"] = table["mean_test_auc"].round(3)
    return table


def _main_model(config: dict) -> dict[str, str]:
    """source -> the model key of its first encoder (whose ranking has no model- entity)."""
    encoders = config["fmri"].get("encoders") or [config["model"]["encoder"]]
    return {source: model_key(encoders[0]) for source in config["fmri"]["sources"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--cohorts", default=",".join(COHORTS), help=f"comma-separated, of {', '.join(COHORTS)}")
    parser.add_argument("--keep", action="store_true", help="keep each cohort's results (default: remove after scoring)")
    parser.add_argument("--encoders", default=None, help="comma-separated fmri.encoders (default: the demo's)")
    parser.add_argument("--score-only", action="store_true", help="score finished runs under --out again, run nothing")
    args = parser.parse_args()
    table = args.out / "fmri_seeds.tsv"
    for name in args.cohorts.split(","):
        encoders = args.encoders.split(",") if args.encoders else None
        config_path = write_cohort_config(name, args.out, encoders) if not args.score_only else args.out / name / "config.yaml"
        started = time.perf_counter()
        if not args.score_only:
            run_workflow(config_path, args.cores)
        config = yaml.safe_load(config_path.read_text())
        rows = score(name, args.out / name / "results", config, (time.perf_counter() - started) / 60)
        rows.to_csv(table, sep="\t", index=False, mode="a", header=not table.exists())
        print(rows.drop(columns=["date", "machine"]).to_string(index=False), flush=True)
        if not args.keep and not args.score_only:
            shutil.rmtree(args.out / name / "results", ignore_errors=True)


if __name__ == "__main__":
    main()
