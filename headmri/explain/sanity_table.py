"""``tables/sanity.tsv``: the randomisation test's record (headmri.explain.sanity) of every explain job's
explain.json, one row per source, task, model, method and fold. Kept apart from the test itself so that the
cohort-level job that writes the table imports no torch (3-6 s of every run)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from headmri.atomic import write_tsv
from headmri.errors import InputError

log = logging.getLogger(__name__)

SANITY_COLUMNS = ("source", "task", "model", "method", "fold", "spearman", "passed", "threshold", "n_patients", "repeats",
                  "randomised", "seconds")


def sanity_rows(summary_json: str | Path, *, source: str | None = None, task: str | None = None,
                model: str | None = None) -> dict:
    """One row of the sanity table from a fold's explain.json (its ``sanity`` record)."""
    try:
        summary = json.loads(Path(summary_json).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the explanation summary: {error}", path=summary_json) from error
    record = summary.get("sanity")
    if not record:
        raise InputError("the explanation summary has no randomisation test (explain.sanity_check was off when it "
                         "was written)", path=summary_json)
    return {
        "source": source or summary.get("source"), "task": task or summary.get("task"), "model": model or summary.get("model") or summary.get("encoder"),
        "method": summary.get("method"), "fold": int(summary.get("fold")), "spearman": record.get("spearman"),
        "passed": record.get("passed"), "threshold": record.get("threshold"), "n_patients": record.get("n_patients"),
        "repeats": len(record.get("seeds", [])) or None, "randomised": ",".join(record.get("randomised", [])), "seconds": record.get("seconds"),
    }


def sanity_table(summaries: Sequence[tuple[str, str, str, str | Path]]) -> pd.DataFrame:
    """The sanity table (``SANITY_COLUMNS``) from (source, task, model, explain.json) tuples, sorted."""
    rows = [sanity_rows(path, source=source, task=task, model=model) for source, task, model, path in summaries]
    table = pd.DataFrame(rows, columns=list(SANITY_COLUMNS))
    return table.sort_values(["source", "task", "model", "method", "fold"]).reset_index(drop=True)


def write_sanity_table(summaries: Sequence[tuple[str, str, str, str | Path]], out_tsv: str | Path) -> pd.DataFrame:
    table = sanity_table(summaries)
    write_tsv(table, out_tsv, float_format="%.4g")
    failed = table[table["passed"].eq(False)]
    if len(failed):
        log.warning("the randomisation test failed for %d of %d task x model x method x fold(s): %s", len(failed),
                    len(table), ", ".join(f"{r.source}/{r.task}/{r.model}/{r.method}/fold {r.fold}" for r in failed.itertuples()))
    return table
