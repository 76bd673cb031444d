"""The paper's Table 1: participants' characteristics per group with a test across groups.

Numeric columns (age, education, scales): median (IQR) per group and the Kruskal-Wallis H test
(scipy.stats.kruskal, tie-corrected). Categorical columns (sex, site, ...): n (%) per category and group,
and Pearson's chi-square test of independence (scipy.stats.chi2_contingency, no continuity correction).
Percentages are of the group's subjects with a value (the paper divides by all 64 participants, which
makes the groups' rows hard to compare). P values are written as in the paper (".40", ".002", "<.001").
Not specific to fMRI: the structural cohort's participants.tsv gives its table the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, kruskal

from headmri.atomic import write_tsv
from headmri.errors import InputError

log = logging.getLogger(__name__)

NOT_VARIABLES = ("participant_id", "group")
MAX_CATEGORIES = 10  # more distinct values than this in a text column: an identifier or free text, not a category


def format_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "<.001"
    text = f"{p:.3f}" if p < 0.01 else f"{p:.2f}"
    return text.lstrip("0") if not text.startswith("1") else "1.00"


def median_iqr(values: pd.Series) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "n/a"
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{median:.2f} ({q1:.2f}-{q3:.2f})"


def kruskal_p(samples: list[np.ndarray]) -> tuple[float, float]:
    """(H, p) across groups; NaN when fewer than two groups have values or every value is the same."""
    samples = [s for s in samples if len(s)]
    if len(samples) < 2 or np.unique(np.concatenate(samples)).size < 2:
        return float("nan"), float("nan")
    result = kruskal(*samples)
    return float(result.statistic), float(result.pvalue)


def chi_square_p(counts: pd.DataFrame) -> tuple[float, float]:
    """(chi-square, p) of a categories x groups table; NaN when it has fewer than two of either."""
    counts = counts.loc[counts.sum(axis=1) > 0, counts.sum(axis=0) > 0]
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return float("nan"), float("nan")
    result = chi2_contingency(counts.to_numpy(), correction=False)
    return float(result.statistic), float(result.pvalue)


def _numeric_row(name: str, column: pd.Series, group: pd.Series, groups: Sequence[str]) -> list[dict]:
    stat, p = kruskal_p([column[group == g].dropna().to_numpy(float) for g in groups])
    row = {"variable": f"{name}, median (IQR)", **{g: median_iqr(column[group == g]) for g in groups}}
    return [{**row, "p_value": format_p(p), "test": "Kruskal-Wallis H", "statistic": stat, "p": p}]


def _categorical_rows(name: str, column: pd.Series, group: pd.Series, groups: Sequence[str]) -> list[dict]:
    counts = pd.crosstab(column, group).reindex(columns=list(groups), fill_value=0)
    stat, p = chi_square_p(counts)
    rows = [{"variable": f"{name}, n (%)", **{g: "" for g in groups}, "p_value": format_p(p),
             "test": "chi-square", "statistic": stat, "p": p}]
    totals = counts.sum(axis=0)
    for category, line in counts.iterrows():
        cells = {g: f"{int(line[g])} ({100 * line[g] / totals[g]:.0f}%)" if totals[g] else "0" for g in groups}
        rows.append({"variable": f"  {category}", **cells, "p_value": "", "test": "", "statistic": np.nan, "p": np.nan})
    return rows


def demographics_table(participants: pd.DataFrame, groups: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 1 rows (variable, one column per group headed "<group> (n=<k>)", p_value, test, statistic, p)."""
    if "group" not in participants.columns:
        raise InputError(f"the participants table has no 'group' column; it has {list(participants.columns)}")
    table = participants[participants["group"].isin(groups)]
    absent = [g for g in groups if g not in set(table["group"])]
    if absent:
        raise InputError(f"groups {absent} have no participants")
    rows = []
    for name in columns or [c for c in table.columns if c not in NOT_VARIABLES]:
        column = table[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            rows += _numeric_row(name, column, table["group"], groups)
        elif column.nunique() <= MAX_CATEGORIES:
            rows += _categorical_rows(name, column.astype("string"), table["group"], groups)
        else:
            log.info("participants column %r has %d distinct values: not a category, left out of Table 1", name, column.nunique())
    sizes = table["group"].value_counts()
    out = pd.DataFrame(rows, columns=["variable", *groups, "p_value", "test", "statistic", "p"])
    return out.rename(columns={g: f"{g} (n={int(sizes[g])})" for g in groups})


def write_demographics(participants_tsv: str | Path, out_tsv: str | Path, groups: Sequence[str]) -> pd.DataFrame:
    path = Path(participants_tsv)
    if not path.exists():
        raise InputError("participants.tsv does not exist", path=path)
    table = demographics_table(pd.read_csv(path, sep="\t", na_values=["n/a"]), groups)
    write_tsv(table, out_tsv)
    return table
