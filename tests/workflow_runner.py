"""Running the real workflow from tests: a small config in a temporary folder, Snakemake as a subprocess
bounded by `timeout -k` (SIGTERM alone does not stop Snakemake), and the dry-run's job list parsed."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@dataclass(frozen=True)
class PlannedJob:
    rule: str
    wildcards: dict[str, str]
    reason: str
    inputs: tuple[str, ...] = ()

    @property
    def subject(self) -> str | None:
        return self.wildcards.get("subject")


_RULE = re.compile(r"^(\s*)(?:local)?(?:checkpoint|rule) (\w+):$")


def planned_jobs(dry_run_output: str) -> list[PlannedJob]:
    """The jobs a `snakemake --dry-run` would run, from its printed job blocks (group jobs included:
    their members are printed as indented blocks)."""
    jobs: list[PlannedJob] = []
    rule, indent, fields = None, 0, {}

    def close():
        wildcards = dict(w.split("=", 1) for w in fields.get("wildcards", "").split(", ") if "=" in w)
        inputs = tuple(filter(None, fields.get("input", "").split(", ")))
        jobs.append(PlannedJob(rule, wildcards, fields.get("reason", ""), inputs))

    for line in dry_run_output.splitlines():
        if rule is not None:
            depth = len(line) - len(line.lstrip())
            if line.strip() and depth > indent:
                key, _, value = line.strip().partition(": ")
                fields[key] = value
                continue
            close()
            rule = None
        match = _RULE.match(line.rstrip())
        if match:
            indent, rule, fields = len(match.group(1)), match.group(2), {}
    if rule is not None:
        close()
    return jobs


def write_config(path: Path, **overrides) -> Path:
    """The repository's config.yaml with overrides (nested dicts merge), written to path."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())

    def merge(base: dict, extra: dict) -> dict:
        for key, value in extra.items():
            base[key] = merge(dict(base.get(key) or {}), value) if isinstance(value, dict) else value
        return base

    path.write_text(yaml.safe_dump(merge(config, overrides), sort_keys=False))
    return path


def snakemake_command(workdir: Path, configfile: Path, *args: str, profile: str | None = "default") -> list[str]:
    """Snakemake on the repository's workflow in workdir; `profile` is the workflow profile under
    profiles/ (None: no workflow profile, e.g. when --profile names another)."""
    return [
        *SNAKEMAKE,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(configfile),
        "--workflow-profile", str(REPO / "profiles" / profile) if profile else "none",
        *args,
    ]


def run_snakemake(
    workdir: Path, configfile: Path, *args: str, timeout_s: int = 600, check: bool = True, **kwargs
) -> subprocess.CompletedProcess:
    """Run Snakemake to completion (or kill it after timeout_s); stdout and stderr merged."""
    cmd = ["timeout", "-k", "10", str(timeout_s), *snakemake_command(workdir, configfile, *args, **kwargs)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} exited {done.returncode}:\n{done.stdout[-6000:]}")
    return done


def start_snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """Snakemake (2 cores, workdir/config.yaml) in a session of its own, so that a kill reaches it and every
    job it started; its output goes to workdir/snakemake.out."""
    log = open(workdir / "snakemake.out", "w")
    return subprocess.Popen(snakemake_command(workdir, workdir / "config.yaml", "--cores", "2", *args),
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # each line in the file as it is printed


def kill_when(proc: subprocess.Popen, started, timeout_s: float = 600) -> None:
    """SIGKILL the process group as soon as started() is true (the job is under way), as a crash or a
    cancelled cluster job would."""
    end = time.monotonic() + timeout_s
    while not started():
        assert proc.poll() is None, "Snakemake ended before the job could be killed"
        assert time.monotonic() < end, "the job never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def dry_run(workdir: Path, configfile: Path, *args: str) -> list[PlannedJob]:
    done = run_snakemake(workdir, configfile, "--dry-run", *args)
    return planned_jobs(done.stdout)


# --- a tiny generated cohort, shared by the workflow tests of one pytest session --------------------
# Three controls and three migraine patients (the least a 2-fold split with one validation and one test
# subject per class accepts), plus one more control held back, for the tests that add a subject.
COHORT_GROUPS = {"HC": 4, "migraine": 3}
HELD_BACK = "hc004"
COHORT_SEED = 7
TINY_CONFIG = {
    "bids_dir": "bids",
    "results_dir": "results",
    "groups": ["HC", "migraine"],
    "tasks": [{"name": "migraine", "classes": ["HC", "migraine"]}],
    "splits": {"folds": 2, "val_per_class": 1, "test_per_class": 1},
    "slices": {"size": 112},  # the input size of the small demo ViT
    "model": {"encoder": "vit_tiny_demo"},
    "training": {"epochs": 1, "batch_size": 16, "warmup_epochs": 0, "patience": 1, "max_slices_per_subject": 8},
    # the demo explains every patient and control (the contrast); these runs test the workflow's mechanics,
    # so they explain each fold's test patient only, a third of the occlusion time (the demo's wiring:
    # test_explain_job.py's dry run)
    "explain": {"ranking": "mean", "patients": "test"},
}
TRAIN_TARGET = "results/train/source-T1w/task-migraine/model-vittinydemo/fold-1/model.pt"


# the run's scratch folder for the shared inputs below (conftest.py sets it before any xdist worker starts)
SCRATCH_ENV = "HEADMRI_TEST_SCRATCH"


def _scratch(prefix: str) -> Path:
    """The folder of one shared test input. Under HEADMRI_TEST_CACHE=<dir> (for developers rerunning the slow
    tests: kept, and reused when a previous session completed it) or else HEADMRI_TEST_SCRATCH (conftest.py:
    one folder per pytest run, shared by its xdist workers, removed when the run ends); a private
    temporary folder otherwise."""
    shared = os.environ.get("HEADMRI_TEST_CACHE") or os.environ.get(SCRATCH_ENV)
    if shared:
        root = Path(shared) / prefix.strip("-")
        root.mkdir(parents=True, exist_ok=True)
        return root
    root = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    atexit.register(root.with_name(root.name + ".lock").unlink, missing_ok=True)
    return root


@contextlib.contextmanager
def _built_once(root: Path) -> Iterator[bool]:
    """True for the one process that must build what ``root`` holds, False where another already did: the
    pytest-xdist workers of a run share ``root``, and a worker that needs it while another builds it waits on
    the lock. The builder starts from an empty ``root`` (a half-built one of an interrupted run goes) and the
    folder counts as complete only when its block ends without an error."""
    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        if (root / ".complete").is_file():
            yield False
            return
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        yield True
        (root / ".complete").touch()


@functools.cache
def generated_cohort() -> Path:
    """A BIDS dataset of the demo generator (7 subjects), made once per test run."""
    from headmri.demo.cohort import make_demo_cohort
    from headmri.demo.effects import read_effects

    root = _scratch("headmri-cohort-")
    out = root / "bids"
    with _built_once(root) as build:
        if build:
            make_demo_cohort(out, group_sizes=COHORT_GROUPS, seed=COHORT_SEED,
                             effects=read_effects(REPO / "resources" / "demo_effects.tsv"), threads=2)
    return out


def add_subject(workdir: Path, label: str = HELD_BACK) -> None:
    """Copy a generated subject's image into workdir/bids and append its participants row."""
    source = generated_cohort()
    shutil.copytree(source / f"sub-{label}", workdir / "bids" / f"sub-{label}")
    rows = (source / "participants.tsv").read_text().splitlines()
    row = next(r for r in rows if r.startswith(f"sub-{label}\t"))
    with open(workdir / "bids" / "participants.tsv", "a") as tsv:
        tsv.write(row + "\n")


@functools.cache
def preprocessed_workdir() -> Path:
    """A workdir (config.yaml, bids/ without the held-back subject, results/) whose six subjects are
    preprocessed through `preprocess_all`, made once per test run. Tests copy it (copy_workdir)."""
    source = generated_cohort()
    root = _scratch("headmri-base-")
    workdir = root / "wd"
    with _built_once(root) as build:
        if build:
            (workdir / "bids").mkdir(parents=True)
            for item in source.iterdir():
                if item.name != f"sub-{HELD_BACK}" and item.name != "participants.tsv":
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, workdir / "bids" / item.name)
            rows = (source / "participants.tsv").read_text().splitlines(keepends=True)
            (workdir / "bids" / "participants.tsv").write_text(
                "".join(r for r in rows if not r.startswith(f"sub-{HELD_BACK}\t")))
            configfile = write_config(workdir / "config.yaml", **TINY_CONFIG)
            run_snakemake(workdir, configfile, "--cores", "2", "preprocess_all", timeout_s=1800)
    return workdir


def copy_workdir(source: Path, dest: Path) -> Path:
    """A copy that keeps file times (Snakemake decides from them) and Snakemake's own records."""
    shutil.copytree(source, dest, symlinks=True, copy_function=shutil.copy2)
    return dest
