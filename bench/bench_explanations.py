"""Benchmark: every explanation method x region statistic scored against a cohort's planted truth (issue 13).

Given a FINISHED workflow results directory (trained models, splits, slices, parcellations) and the cohort's
``ground_truth.tsv`` (``group, region, name, label, ...``), this

1. explains every task x fold model with each requested method by calling the library's
   ``headmri.explain.job.explain_fold`` with the inputs the ``explain_fold`` rule gives it (patients: all,
   and the fold's controls explained for the disease class too, so that the contrast can be ranked), into a
   scratch folder per method (and per region statistic for the map methods: ``max`` and ``mean``);
   optionally the model-parameter randomisation test is run as the job runs it (``--sanity-patients`` x
   ``--sanity-repeats``);
2. merges the folds for every ranking combination (normalisation x ranking statistic) with the library's
   ``headmri.explain.merge.write_ranking``, as ``scripts/rank_regions.py`` does (each fold's training
   ``metrics.tsv`` decides whether the fold learned; folds that did not are left out), without bootstrap
   intervals (they never change a ranking);
3. scores each ranking against the planted truth of the task's disease class: recall of the planted
   structures in the top 5 and top 10 (``headmri.explain.merge.planted_recall``), the mean rank of the
   planted LUT labels, and how many planted labels are in the top 10.

One TSV row per cohort x task x method x statistic combination, appended to ``--out`` and printed, with the
date, the machine, the subjects explained per fold, whether the method is class-specific (the registry's
``class_specific``), the median over the task's folds of the randomisation test's median Spearman
correlation (and how many folds passed), and the seconds per explained subject (the randomisation test
excluded). A method that does not fit the model (rollout or chefer on a CNN) gets one row with a note.

Cost bound: ``--max-subjects-per-fold N`` explains at most N patients and N controls of each fold with the
methods in ``--limit-methods`` (default: occlusion, 15-25 s per subject on one core); the choice is
deterministic: the fold's test subjects, then its validation subjects, then its training subjects in the
order of crc32("<participant>:<fold>"). The bench applies it by wrapping ``select_patients`` and
``select_controls`` of ``headmri.explain.job`` (nothing else changes: occlusion's neutral image is still
the mean of all the fold's training controls). The row's ``subjects_per_fold`` says what was explained.
``--limited-sanity PxR`` runs their randomisation test on P patients x R re-initialisations only
(``sanity_size`` in the row).

    python bench/bench_explanations.py --results /tmp/exp/resA --truth /tmp/exp/resA/demo/bids/ground_truth.tsv \
        --methods gradcam,occlusion --cohort demo-seed20251121 --out bench_explanations.tsv \
        --max-subjects-per-fold 3 --limited-sanity 1x2

One torch thread by default (``--threads``); the CPU unless ``--device``. Scratch outputs (regions.tsv,
explain.json, mean maps, rankings) stay under ``--scratch`` (default /tmp/bench_explanations/<cohort>);
a fold whose explain.json is there from an earlier run with the same settings is not explained again
(``--no-reuse`` to redo).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
import zlib
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch
import yaml

from headmri.errors import ConfigError
from headmri.explain import job, methods
from headmri.explain.merge import RankingOptions, planted_recall, write_ranking

SPACE = "MNI152NLin6Asym"
STATISTICS = ("max", "mean")
log = logging.getLogger("bench_explanations")


# --- the run's layout (workflow/rules/common.smk) -----------------------------------------------------------

def run_config(results: Path) -> dict:
    path = results / "provenance" / "config.yaml"
    if not path.is_file():
        raise SystemExit(f"{path} not found: is {results} a finished workflow results directory?")
    return yaml.safe_load(path.read_text())


def task_classes(config: dict, results: Path) -> dict[str, list[str]]:
    """task -> classes (reference first), from the provenance config, else from the split tables."""
    tasks = {t["name"]: list(t["classes"]) for t in config.get("tasks", [])}
    if tasks:
        return tasks
    for path in sorted((results / "splits").glob("task-*.tsv")):
        split = pd.read_csv(path, sep="\t")
        order = split.drop_duplicates("class_index").sort_values("class_index")
        tasks[path.stem.removeprefix("task-")] = list(order["group"])
    return tasks


def model_keys(results: Path, task: str) -> list[str]:
    return sorted(p.name.removeprefix("model-") for p in (results / "train" / "source-T1w" / f"task-{task}").glob("model-*"))


def folds_of(results: Path, task: str, model: str) -> list[int]:
    return sorted(int(p.name.removeprefix("fold-")) for p in (results / "train" / "source-T1w" / f"task-{task}" / f"model-{model}").glob("fold-*")
                  if (p / "model.pt").is_file())


def subject_files(results: Path, pid: str) -> job.SubjectFiles:
    anat = results / "preproc" / pid / "anat"
    return job.SubjectFiles(slices=results / "slices" / "source-T1w" / f"{pid}_slices.npy",
                            geometry=results / "slices" / "source-T1w" / f"{pid}_slices.json",
                            dseg=anat / f"{pid}_space-{SPACE}_desc-wmparc_dseg.nii.gz",
                            volume=anat / f"{pid}_space-{SPACE}_desc-brain_T1w.nii.gz")


# --- the bounded subject choice ---------------------------------------------------------------------------

def _bounded(rows: pd.DataFrame, fold: int, limit: int | None) -> pd.DataFrame:
    """At most ``limit`` distinct subjects of ``rows`` (test, then val, then train in crc32 order), sorted by ID."""
    if not limit:
        return rows
    ids = rows.drop_duplicates("participant_id")
    order = {"test": 0, "val": 1}
    key = sorted(ids.itertuples(index=False),
                 key=lambda r: (order.get(r.split, 2), zlib.crc32(f"{r.participant_id}:{fold}".encode())))
    keep = {r.participant_id for r in key[:limit]}
    return rows[rows["participant_id"].isin(keep)].sort_values("participant_id", kind="stable").reset_index(drop=True)


class SubjectLimit:
    """Wraps job.select_patients / job.select_controls so that explain_fold explains at most N of each."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self._patients, self._controls = job.select_patients, job.select_controls

    def __enter__(self):
        limit = self.limit
        patients, controls = self._patients, self._controls
        job.select_patients = lambda split, fold, *a, **k: _bounded(patients(split, fold, *a, **k), fold, limit)
        job.select_controls = lambda split, fold, *a, **k: _bounded(controls(split, fold, *a, **k), fold, limit)
        return self

    def __exit__(self, *exc):
        job.select_patients, job.select_controls = self._patients, self._controls


# --- explaining -------------------------------------------------------------------------------------------

def method_fits(method: str, model_path: Path, target_layer: str | None) -> str | None:
    """None if ``method`` can explain the model of ``model_path``, else why not."""
    model, meta = job.load_fold_model(model_path, task="-", fold=0, device=torch.device("cpu"))
    try:
        cls = methods.check_method(method, meta.get("kind", "slices"))
        layer = target_layer or meta.get("target_layer_name") or getattr(model, "target_layer_name", None)
        explainer = cls(model, batch_size=1, target_layer=layer if cls.uses_target_layer else None)
        if not cls.scores_regions and meta.get("kind", "slices") == "slices":  # rollout on a CNN fails only here
            size = int(meta["input_size"])
            explainer.slice_maps(torch.zeros(1, 1, size, size), len(meta["classes"]) - 1)
    except ConfigError as error:
        return f"skipped: {error}"
    return None


def explain_task(args, results: Path, config: dict, task: str, classes: list[str], model: str, method: str,
                 statistic: str, limit: int | None, out_dir: Path) -> list[dict]:
    """Every fold of one task x model explained with one method (and region statistic); per-fold records."""
    explain = config.get("explain", {})
    split_tsv = results / "splits" / f"task-{task}.tsv"
    split = pd.read_csv(split_tsv, sep="\t", dtype={"participant_id": str})
    subjects = {pid: subject_files(results, pid) for pid in split.loc[split["group"].isin(classes[1:]), "participant_id"]}
    controls = {pid: subject_files(results, pid) for pid in split.loc[split["group"] == classes[0], "participant_id"]}
    embedded = config.get("preprocessing", {}).get("parcellation", "embedded") == "embedded"
    atlas_tsv = results / "atlas" / f"atlas-DKwm_space-{SPACE}_dseg.tsv"
    methods.method_class(method)  # an unknown method name fails here, before any work
    options = dict(explain.get("occlusion", {}) or {}) if method == "occlusion" else {}
    sanity = None
    if args.sanity_patients >= 0 and args.sanity_repeats > 0:
        sanity = {"patients": args.sanity_patients, "repeats": args.sanity_repeats,
                  "threshold": float(explain.get("sanity_threshold", 0.5)), "seed": int(explain.get("seed", 0))}
    settings = {"method": method, "statistic": statistic, "limit": limit, "patients": "all", "controls": True,
                "sanity": sanity, "method_options": options, "target_layer": explain.get("target_layer")}
    records = []
    for fold in folds_of(results, task, model):
        fold_dir = out_dir / f"fold-{fold}"
        summary = fold_dir / "explain.json"
        bench_json = fold_dir / "bench.json"
        if args.reuse and summary.is_file() and bench_json.is_file() and \
                json.loads(bench_json.read_text()).get("settings") == json.loads(json.dumps(settings)):
            record = json.loads(bench_json.read_text())
            print(f"  reuse {task} {method}/{statistic} fold {fold}: {record['seconds']:.1f} s", flush=True)
            records.append(record)
            continue
        started = time.perf_counter()
        with SubjectLimit(limit):
            table = job.explain_fold(
                model_path=results / "train" / "source-T1w" / f"task-{task}" / f"model-{model}" / f"fold-{fold}" / "model.pt",
                split_tsv=split_tsv, task=task, classes=classes, fold=fold, subjects=subjects,
                regions_tsv=fold_dir / "regions.tsv", mean_map=fold_dir / f"space-{SPACE}_desc-mean_map.nii.gz",
                summary_json=summary, montage_png=None, maps_dir=None, method=method,
                target_layer=explain.get("target_layer"), statistic=statistic, patients="all",
                expected_regions_tsv=atlas_tsv if embedded else None,
                batch_size=int(config.get("training", {}).get("batch_size", 32)), device=args.device,
                controls=controls, method_options=options, explain_controls=True, sanity=sanity)
        seconds = time.perf_counter() - started
        info = json.loads(summary.read_text())
        sanity_seconds = float((info.get("sanity") or {}).get("seconds") or 0.0)
        n_patients = table.loc[table["group"] != classes[0], "participant_id"].nunique()
        n_controls = table.loc[table["group"] == classes[0], "participant_id"].nunique()
        record = {"settings": settings, "fold": fold, "seconds": seconds, "sanity_seconds": sanity_seconds,
                  "n_patients": int(n_patients), "n_controls": int(n_controls),
                  # a control is explained once per disease class
                  "n_explanations": int(table.groupby(["participant_id", "target"]).ngroups),
                  "sanity": info.get("sanity"), "class_specific": info.get("class_specific")}
        bench_json.write_text(json.dumps(record, indent=1))
        print(f"  {task} {method}/{statistic} fold {fold}: {n_patients} patients + {n_controls} controls in "
              f"{seconds:.1f} s (randomisation test {sanity_seconds:.1f} s)", flush=True)
        records.append(record)
    return records


# --- scoring ----------------------------------------------------------------------------------------------

def score_ranking(ranking_tsv: Path, truth_tsv: Path, group: str) -> dict:
    ranking = pd.read_csv(ranking_tsv, sep="\t")
    if (ranking["target"] == group).any():
        ranking = ranking[ranking["target"] == group]
    truth = pd.read_csv(truth_tsv, sep="\t")
    truth = truth[truth["group"] == group]
    labels = set(truth["label"].astype(int))
    ranks = ranking.loc[ranking["label"].astype(int).isin(labels), "rank"]
    missing = len(labels) - len(ranks)
    return {
        "recall_top5": round(planted_recall(ranking_tsv, truth_tsv, 5, group=group), 3),
        "recall_top10": round(planted_recall(ranking_tsv, truth_tsv, 10, group=group), 3),
        "mean_rank_planted": round(float(ranks.mean()), 1) if len(ranks) else float("nan"),
        "planted_labels_top10": int((ranks <= 10).sum()),
        "n_planted_structures": int(truth["region"].nunique()),
        "n_planted_labels": len(labels) - missing,
        "n_regions": int(len(ranking)),
        "n_folds_ranked": int(ranking["n_folds"].max()),
        "n_learned": int(ranking["n_learned"].max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="a finished workflow results directory")
    parser.add_argument("--truth", type=Path, required=True, help="the cohort's ground_truth.tsv")
    parser.add_argument("--methods", default="gradcam,occlusion", help=f"comma-separated, of {', '.join(methods.NAMES)}")
    parser.add_argument("--cohort", required=True, help="the cohort's name in the table")
    parser.add_argument("--out", type=Path, required=True, help="TSV to append the rows to")
    parser.add_argument("--model", default=None, help="model key (model-<key>; default: the first of the run)")
    parser.add_argument("--tasks", default=None, help="comma-separated (default: every task of the run)")
    parser.add_argument("--statistics", default=",".join(STATISTICS), help="region statistics of the map methods")
    parser.add_argument("--normalisations", default="none,zscore")
    parser.add_argument("--rankings", default="mean,contrast")
    parser.add_argument("--max-subjects-per-fold", type=int, default=4,
                        help="at most this many patients and as many controls per fold, for --limit-methods (0: all)")
    parser.add_argument("--limit-methods", default="occlusion", help="the methods --max-subjects-per-fold applies to")
    parser.add_argument("--sanity-patients", type=int, default=2, help="randomisation test: patients (0: all; -1: no test)")
    parser.add_argument("--sanity-repeats", type=int, default=3, help="randomisation test: re-initialisations (0: no test)")
    parser.add_argument("--sanity-methods", default=None,
                        help="methods to run the randomisation test for (default: every method)")
    parser.add_argument("--limited-sanity", default=None, metavar="PxR",
                        help="randomisation test of the --limit-methods: P patients x R re-initialisations "
                             "(default: --sanity-patients x --sanity-repeats)")
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--no-reuse", dest="reuse", action="store_false")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    results = args.results.resolve()
    config = run_config(results)
    classes_of = task_classes(config, results)
    tasks = args.tasks.split(",") if args.tasks else list(classes_of)
    scratch = args.scratch or Path("/tmp/bench_explanations") / args.cohort
    limited = set(filter(None, args.limit_methods.split(",")))
    sanity_methods = set(args.sanity_methods.split(",")) if args.sanity_methods else None
    top_k = int(config.get("explain", {}).get("top_k", 10))
    load = os.getloadavg()
    machine = (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
               f"{args.device}, load {load[0]:.1f})")
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"{stamp} {machine}; cohort {args.cohort}: {results}", flush=True)
    bench_started = time.perf_counter()

    rows = []
    for task in tasks:
        classes = classes_of[task]
        model = args.model or model_keys(results, task)[0]
        folds = folds_of(results, task, model)
        first_model = results / "train" / "source-T1w" / f"task-{task}" / f"model-{model}" / f"fold-{folds[0]}" / "model.pt"
        for method in args.methods.split(","):
            cls = methods.method_class(method)
            base = {"date": stamp, "machine": machine, "cohort": args.cohort, "task": task, "model": model,
                    "method": method, "class_specific": bool(cls.class_specific)}
            why_not = method_fits(method, first_model, config.get("explain", {}).get("target_layer"))
            if why_not:
                print(f"{task} {method}: {why_not}", flush=True)
                rows.append({**base, "note": why_not})
                continue
            limit = args.max_subjects_per_fold if method in limited and args.max_subjects_per_fold > 0 else None
            saved = (args.sanity_patients, args.sanity_repeats)
            if sanity_methods is not None and method not in sanity_methods:
                args.sanity_patients, args.sanity_repeats = -1, 0
            elif limit and args.limited_sanity:
                args.sanity_patients, args.sanity_repeats = (int(v) for v in args.limited_sanity.lower().split("x"))
            for statistic in ("-",) if cls.scores_regions else args.statistics.split(","):
                out_dir = scratch / f"task-{task}" / (method if statistic == "-" else f"{method}-{statistic}")
                records = explain_task(args, results, config, task, classes, model, method,
                                       statistic if statistic != "-" else "max", limit, out_dir)
                metrics = {r["fold"]: results / "train" / "source-T1w" / f"task-{task}" / f"model-{model}" / f"fold-{r['fold']}" / "metrics.tsv"
                           for r in records}
                regions = {r["fold"]: out_dir / f"fold-{r['fold']}" / "regions.tsv" for r in records}
                tests = [r["sanity"] for r in records if r.get("sanity")]
                rhos = [t["spearman"] for t in tests if t.get("spearman") is not None]
                explained = sum(r["n_explanations"] for r in records)
                per_subject = sum(r["seconds"] - r["sanity_seconds"] for r in records) / max(explained, 1)
                n_p = sorted({r["n_patients"] for r in records})
                n_c = sorted({r["n_controls"] for r in records})
                subjects = f"{'/'.join(map(str, n_p))}+{'/'.join(map(str, n_c))}" + (f" (max {limit})" if limit else " (all)")
                for normalisation in args.normalisations.split(","):
                    for ranking in args.rankings.split(","):
                        options = RankingOptions(normalisation=normalisation, ranking=ranking, bootstrap=0,
                                                 seed=int(config.get("explain", {}).get("seed", 0)),
                                                 reference_class=classes[0])
                        ranking_tsv = out_dir / f"ranking_norm-{normalisation}_stat-{ranking}.tsv"
                        write_ranking(regions, top_k, ranking_tsv, metrics_paths=metrics,
                                      exclude_unlearned=bool(config.get("explain", {}).get("exclude_unlearned", True)),
                                      options=options)
                        for group in classes[1:]:
                            row = {**base, "target": group, "region_statistic": statistic,
                                   "normalisation": normalisation, "ranking": ranking,
                                   **score_ranking(ranking_tsv, args.truth, group),
                                   "subjects_per_fold": subjects,
                                   "sanity_spearman": round(statistics.median(rhos), 3) if rhos else None,
                                   "sanity_passed": f"{sum(bool(t.get('passed')) for t in tests)}/{len(tests)}" if tests else "",
                                   "sanity_size": f"{args.sanity_patients}x{args.sanity_repeats}" if tests else "",
                                   "s_per_subject": round(per_subject, 2), "note": ""}
                            rows.append(row)
                            print("  " + " ".join(f"{k}={row[k]}" for k in (
                                "task", "method", "region_statistic", "normalisation", "ranking", "recall_top5",
                                "recall_top10", "mean_rank_planted", "planted_labels_top10", "sanity_spearman",
                                "s_per_subject")), flush=True)
            args.sanity_patients, args.sanity_repeats = saved

    table = pd.DataFrame(rows)
    columns = ["date", "machine", "cohort", "task", "target", "model", "method", "class_specific", "region_statistic",
               "normalisation", "ranking", "recall_top5", "recall_top10", "mean_rank_planted", "planted_labels_top10",
               "n_planted_structures", "n_planted_labels", "n_regions", "n_folds_ranked", "n_learned",
               "subjects_per_fold", "sanity_spearman", "sanity_passed", "sanity_size", "s_per_subject", "note"]
    table = table.reindex(columns=columns)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, mode="a", header=not args.out.exists())
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_rows", None):
        print(table.drop(columns=["date", "machine"]).to_string(index=False))
    print(f"{args.cohort}: {len(table)} rows in {(time.perf_counter() - bench_started) / 60:.1f} min -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
