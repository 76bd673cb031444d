"""Running the real workflow from tests: a small config in a temporary folder, Snakemake as a subprocess
bounded by `timeout -k` (SIGTERM alone does not stop Snakemake), and the dry-run's job list parsed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@dataclass(frozen=True)
class PlannedJob:
    rule: str
    wildcards: dict[str, str]
    reason: str

    @property
    def subject(self) -> str | None:
        return self.wildcards.get("subject")


_RULE = re.compile(r"^(?:local)?(?:checkpoint|rule) (\w+):$")


def planned_jobs(dry_run_output: str) -> list[PlannedJob]:
    """The jobs a `snakemake --dry-run` would run, from its printed job blocks."""
    jobs: list[PlannedJob] = []
    rule, fields = None, {}
    for line in dry_run_output.splitlines() + [""]:
        match = _RULE.match(line.strip())
        if match:
            rule, fields = match.group(1), {}
            continue
        if rule is None:
            continue
        stripped = line.strip()
        key, _, value = stripped.partition(": ")
        if line.startswith("    ") and key in {"wildcards", "reason", "jobid", "output", "input", "log"}:
            fields[key] = value
            continue
        wildcards = dict(w.split("=", 1) for w in fields.get("wildcards", "").split(", ") if "=" in w)
        jobs.append(PlannedJob(rule, wildcards, fields.get("reason", "")))
        rule = None
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


def snakemake_command(workdir: Path, configfile: Path, *args: str, profile: str = "default") -> list[str]:
    return [
        *SNAKEMAKE,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(configfile),
        "--workflow-profile", str(REPO / "profiles" / profile),
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


def dry_run(workdir: Path, configfile: Path, *args: str) -> list[PlannedJob]:
    done = run_snakemake(workdir, configfile, "--dry-run", *args)
    return planned_jobs(done.stdout)
