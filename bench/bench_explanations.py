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
import re
import statistics
import time
import zlib
from dataclasses import dataclass
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


def train_dir(results: Path, source: str, task: str, model: str | None = None, fold: int | None = None) -> Path:
    """results/train/source-S/task-T[/model-M[/fold-K]] (headmri.paths)."""
    path = results / "train" / f"source-{source}" / f"task-{task}"
    path = path / f"model-{model}" if model is not None else path
    return path / f"fold-{fold}" if fold is not None else path


def model_keys(results: Path, source: str, task: str) -> list[str]:
    return sorted(p.name.removeprefix("model-") for p in train_dir(results, source, task).glob("model-*"))


def folds_of(results: Path, source: str, task: str, model: str) -> list[int]:
    return sorted(int(p.name.removeprefix("fold-")) for p in train_dir(results, source, task, model).glob("fold-*")
                  if (p / "model.pt").is_file())


def subject_files(results: Path, source: str, pid: str, atlas: str | None = None) -> job.SubjectFiles:
    """The slices of ``source``, the parcellation (``atlas``: a path with ``{pid}``, default the T1w one)
    and the MNI-space T1w brain (the 3D baseline's input) of one subject."""
    anat = results / "preproc" / pid / "anat"
    folder = results / "slices" / f"source-{source}"
    sized = sorted(folder.glob(f"{pid}_size-*_slices.npy"))  # runs before slices were kept per size had no size-
    if len(sized) > 1:
        raise SystemExit(f"{pid} has slices of several sizes in {folder}; this benchmark explains runs of one size")
    slices = sized[0] if sized else folder / f"{pid}_slices.npy"
    return job.SubjectFiles(slices=slices, geometry=slices.with_suffix(".json"),
                            dseg=Path(atlas.format(pid=pid)) if atlas else anat / f"{pid}_space-{SPACE}_desc-wmparc_dseg.nii.gz",
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


@dataclass(frozen=True)
class TaskRun:
    """One task x model of a finished run, explained with one method and region statistic."""

    results: Path
    config: dict
    task: str
    classes: list[str]
    model: str
    method: str
    statistic: str
    limit: int | None

    @property
    def explain(self) -> dict:
        return self.config.get("explain", {}) or {}


def fold_inputs(args, run: TaskRun) -> dict:
    """The explain job's inputs common to every fold: split, patients' and controls' files, regions."""
    split_tsv = run.results / "splits" / f"task-{run.task}.tsv"
    split = pd.read_csv(split_tsv, sep="\t", dtype={"participant_id": str})
    files = {group: {pid: subject_files(run.results, args.source, pid, args.atlas)
                     for pid in split.loc[split["group"].isin(groups), "participant_id"]}
             for group, groups in (("patients", run.classes[1:]), ("controls", run.classes[:1]))}
    # the embedded atlas's region table lists the regions every T1w parcellation holds
    embedded = run.config.get("preprocessing", {}).get("parcellation", "embedded") == "embedded" and not args.atlas
    atlas_tsv = run.results / "atlas" / f"atlas-DKwm_space-{SPACE}_dseg.tsv"
    return {"split_tsv": split_tsv, **files, "expected": atlas_tsv if embedded else None}


def run_settings(args, run: TaskRun) -> dict:
    """What decides a fold's explanation (reused from an earlier run only when equal)."""
    methods.method_class(run.method)  # an unknown method name fails here, before any work
    options = dict(run.explain.get("occlusion", {}) or {}) if run.method == "occlusion" else {}
    if run.method == "occlusion" and args.occlusion_score:
        options["score"] = args.occlusion_score
    if run.method == "occlusion" and args.occlusion_mode:
        options["mode"] = args.occlusion_mode
    if run.method == "occlusion" and args.occlusion_slice_step:
        options["slice_step"] = args.occlusion_slice_step
    sanity = None
    if args.sanity_patients >= 0 and args.sanity_repeats > 0:
        sanity = {"patients": args.sanity_patients, "repeats": args.sanity_repeats,
                  "threshold": float(run.explain.get("sanity_threshold", 0.5)), "seed": int(run.explain.get("seed", 0))}
    return {"method": run.method, "statistic": run.statistic, "limit": run.limit, "patients": "all", "controls": True,
            "sanity": sanity, "method_options": options, "target_layer": run.explain.get("target_layer")}


def explain_one_fold(args, run: TaskRun, common: dict, settings: dict, fold: int, fold_dir: Path) -> dict:
    """One fold explained as the explain_fold rule does (patients all, controls too); its record."""
    summary = fold_dir / "explain.json"
    started = time.perf_counter()
    with SubjectLimit(run.limit):
        table = job.explain_fold(
            job.FoldInputs(train_dir(run.results, args.source, run.task, run.model, fold) / "model.pt",
                           common["split_tsv"], common["patients"], common["controls"], common["expected"],
                           args.label_table),
            job.FoldKey(run.task, run.classes, fold),
            job.ExplainSettings(run.method, settings["target_layer"], run.statistic, "all",
                                int(run.config.get("training", {}).get("batch_size", 32)), settings["method_options"],
                                explain_controls=True, sanity=settings["sanity"]),
            job.FoldOutputs(fold_dir / "regions.tsv", fold_dir / f"space-{SPACE}_desc-mean_map.nii.gz", summary),
            args.device)
    seconds = time.perf_counter() - started
    info = json.loads(summary.read_text())
    n_patients = table.loc[table["group"] != run.classes[0], "participant_id"].nunique()
    n_controls = table.loc[table["group"] == run.classes[0], "participant_id"].nunique()
    return {"settings": settings, "fold": fold, "seconds": seconds,
            "sanity_seconds": float((info.get("sanity") or {}).get("seconds") or 0.0),
            "n_patients": int(n_patients), "n_controls": int(n_controls),
            # a control is explained once per disease class
            "n_explanations": int(table.groupby(["participant_id", "target"]).ngroups),
            "sanity": info.get("sanity"), "class_specific": info.get("class_specific")}


def explain_task(args, run: TaskRun, out_dir: Path) -> list[dict]:
    """Every fold of one task x model explained with one method (and region statistic); per-fold records."""
    common, settings = fold_inputs(args, run), run_settings(args, run)
    records = []
    for fold in folds_of(run.results, args.source, run.task, run.model):
        fold_dir = out_dir / f"fold-{fold}"
        bench_json = fold_dir / "bench.json"
        if args.reuse and (fold_dir / "explain.json").is_file() and bench_json.is_file() and \
                json.loads(bench_json.read_text()).get("settings") == json.loads(json.dumps(settings)):
            record = json.loads(bench_json.read_text())
            print(f"  reuse {run.task} {run.method}/{run.statistic} fold {fold}: {record['seconds']:.1f} s", flush=True)
        else:
            record = explain_one_fold(args, run, common, settings, fold, fold_dir)
            bench_json.write_text(json.dumps(record, indent=1))
            print(f"  {run.task} {run.method}/{run.statistic} fold {fold}: {record['n_patients']} patients + "
                  f"{record['n_controls']} controls in {record['seconds']:.1f} s (randomisation test "
                  f"{record['sanity_seconds']:.1f} s)", flush=True)
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="a finished workflow results directory")
    parser.add_argument("--truth", type=Path, required=True, help="the cohort's ground_truth.tsv")
    parser.add_argument("--methods", default="gradcam,occlusion", help=f"comma-separated, of {', '.join(methods.NAMES)}")
    parser.add_argument("--cohort", required=True, help="the cohort's name in the table")
    parser.add_argument("--out", type=Path, required=True, help="TSV to append the rows to")
    parser.add_argument("--source", default="T1w", help="image source (source-<name> in the paths; default T1w)")
    parser.add_argument("--atlas", default=None,
                        help="the source's parcellation of each subject, a path with {pid} (default: the T1w one)")
    parser.add_argument("--label-table", default=None,
                        help="the source's label table TSV (default: the FreeSurfer table of the T1w source)")
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
    parser.add_argument("--occlusion-mode", default=None, choices=["delete", "insert"],
                        help="occlusion's mode (default: the run's explain.occlusion.mode)")
    parser.add_argument("--occlusion-score", default=None, choices=["probability", "log_odds"],
                        help="occlusion's score (default: the run's explain.occlusion.score)")
    parser.add_argument("--occlusion-slice-step", type=int, default=None,
                        help="occlusion's slice_step (default: the run's explain.occlusion.slice_step)")
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--no-reuse", dest="reuse", action="store_false")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def sanity_of(args, method: str, limited: bool) -> tuple[int, int]:
    """(patients, repeats) of the randomisation test for ``method`` ((-1, 0): no test)."""
    if args.sanity_methods is not None and method not in set(args.sanity_methods.split(",")):
        return -1, 0
    if limited and args.limited_sanity:
        patients, repeats = (int(v) for v in args.limited_sanity.lower().split("x"))
        return patients, repeats
    return args.sanity_patients, args.sanity_repeats


def summary_columns(args, records: list[dict], limit: int | None) -> dict:
    """The columns a method's folds give every row: subjects explained, randomisation test, seconds."""
    tests = [r["sanity"] for r in records if r.get("sanity")]
    rhos = [t["spearman"] for t in tests if t.get("spearman") is not None]
    explained = sum(r["n_explanations"] for r in records)
    per_subject = sum(r["seconds"] - r["sanity_seconds"] for r in records) / max(explained, 1)
    n_p = sorted({r["n_patients"] for r in records})
    n_c = sorted({r["n_controls"] for r in records})
    return {"subjects_per_fold": f"{'/'.join(map(str, n_p))}+{'/'.join(map(str, n_c))}"
                                 + (f" (max {limit})" if limit else " (all)"),
            "sanity_spearman": round(statistics.median(rhos), 3) if rhos else None,
            "sanity_passed": f"{sum(bool(t.get('passed')) for t in tests)}/{len(tests)}" if tests else "",
            "sanity_size": f"{args.sanity_patients}x{args.sanity_repeats}" if tests else "",
            "s_per_subject": round(per_subject, 2), "note": ""}


def rank_and_score(args, run: TaskRun, records: list[dict], out_dir: Path, base: dict) -> list[dict]:
    """Every ranking combination of the method's folds, scored against the planted truth: one row each."""
    explain = run.explain
    metrics = {r["fold"]: train_dir(run.results, args.source, run.task, run.model, r["fold"]) / "metrics.tsv"
               for r in records}
    regions = {r["fold"]: out_dir / f"fold-{r['fold']}" / "regions.tsv" for r in records}
    shared = summary_columns(args, records, run.limit)
    rows = []
    for normalisation in args.normalisations.split(","):
        for ranking in args.rankings.split(","):
            options = RankingOptions(normalisation=normalisation, ranking=ranking, bootstrap=0,
                                     seed=int(explain.get("seed", 0)), reference_class=run.classes[0])
            ranking_tsv = out_dir / f"ranking_norm-{normalisation}_stat-{ranking}.tsv"
            write_ranking(regions, int(explain.get("top_k", 10)), ranking_tsv, metrics_paths=metrics,
                          exclude_unlearned=bool(explain.get("exclude_unlearned", True)), options=options)
            for group in run.classes[1:]:
                row = {**base, "target": group,
                       "normalisation": normalisation, "ranking": ranking,
                       **score_ranking(ranking_tsv, args.truth, group), **shared}
                rows.append(row)
                print("  " + " ".join(f"{k}={row[k]}" for k in (
                    "task", "method", "region_statistic", "normalisation", "ranking", "recall_top5",
                    "recall_top10", "mean_rank_planted", "planted_labels_top10", "sanity_spearman",
                    "s_per_subject")), flush=True)
    return rows


def bench_method(args, results: Path, config: dict, task: str, classes: list[str], method: str, base: dict) -> list[dict]:
    """One task's rows for one method: each region statistic of a map method, or the region method's one."""
    model = base["model"]
    first_model = train_dir(results, args.source, task, model, folds_of(results, args.source, task, model)[0]) / "model.pt"
    why_not = method_fits(method, first_model, config.get("explain", {}).get("target_layer"))
    if why_not:
        print(f"{task} {method}: {why_not}", flush=True)
        return [{**base, "note": why_not}]
    limited = method in set(filter(None, args.limit_methods.split(",")))
    limit = args.max_subjects_per_fold if limited and args.max_subjects_per_fold > 0 else None
    saved = (args.sanity_patients, args.sanity_repeats)
    args.sanity_patients, args.sanity_repeats = sanity_of(args, method, bool(limit))
    scratch = args.scratch or Path("/tmp/bench_explanations") / args.cohort
    # one folder per method and option (occlusion[log_odds,insert] -> occlusion_log_odds_insert): two runs
    # with other options side by side must never write one fold's files
    folder = re.sub(r"[\[\],]+", "_", base["method"]).strip("_")
    rows = []
    try:
        for statistic in ("-",) if methods.method_class(method).scores_regions else args.statistics.split(","):
            out_dir = scratch / f"task-{task}" / (folder if statistic == "-" else f"{folder}-{statistic}")
            run = TaskRun(results, config, task, classes, model, method, statistic if statistic != "-" else "max", limit)
            records = explain_task(args, run, out_dir)
            rows += rank_and_score(args, run, records, out_dir, {**base, "region_statistic": statistic})
    finally:
        args.sanity_patients, args.sanity_repeats = saved
    return rows


COLUMNS = ["date", "machine", "cohort", "task", "target", "model", "method", "class_specific", "region_statistic",
           "normalisation", "ranking", "recall_top5", "recall_top10", "mean_rank_planted", "planted_labels_top10",
           "n_planted_structures", "n_planted_labels", "n_regions", "n_folds_ranked", "n_learned",
           "subjects_per_fold", "sanity_spearman", "sanity_passed", "sanity_size", "s_per_subject", "note"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    results = args.results.resolve()
    config = run_config(results)
    classes_of = task_classes(config, results)
    load = os.getloadavg()
    machine = (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
               f"{args.device}, load {load[0]:.1f})")
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"{stamp} {machine}; cohort {args.cohort}: {results}", flush=True)
    bench_started = time.perf_counter()
    rows = []
    for task in args.tasks.split(",") if args.tasks else list(classes_of):
        model = args.model or model_keys(results, args.source, task)[0]
        for method in args.methods.split(","):
            step = f"step{args.occlusion_slice_step}" if args.occlusion_slice_step else None
            tags = [t for t in (args.occlusion_score, args.occlusion_mode, step) if t] if method == "occlusion" else []
            label = f"{method}[{','.join(tags)}]" if tags else method
            base = {"date": stamp, "machine": machine, "cohort": args.cohort, "task": task, "model": model,
                    "method": label, "class_specific": bool(methods.method_class(method).class_specific)}
            rows += bench_method(args, results, config, task, classes_of[task], method, base)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, mode="a", header=not args.out.exists())
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_rows", None):
        print(table.drop(columns=["date", "machine"]).to_string(index=False))
    print(f"{args.cohort}: {len(table)} rows in {(time.perf_counter() - bench_started) / 60:.1f} min -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
