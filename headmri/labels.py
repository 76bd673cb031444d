"""Region label tables: the codes of a label image and their names, hemisphere and tissue.

Every image source (``sources`` in the config, ``headmri.config.SourceConfig``) brings its own atlas and
label table. A label table is a TSV with the columns ``label`` (the integer code in the label image),
``name``, ``hemisphere`` (L/R/B) and ``tissue``, and optionally ``region`` (the hemisphere- and
tissue-free structure; default: the name) and ``excluded`` (yes/no: never scored; default no).

The built-in table ``freesurfer`` (``resources/freesurfer_lut.tsv``: codes and names from FreeSurfer's
FreeSurferColorLUT.txt, for the structures wmparc.mgz holds) labels the T1w source; its 14 structures
that the structural paper excludes are marked ``excluded``. The front half (parcellation, the demo
cohort's effects) works in FreeSurfer codes and reads that table through ``lut()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from headmri.errors import InputError

LUT_PATH = Path(__file__).resolve().parent.parent / "resources" / "freesurfer_lut.tsv"
FREESURFER = "freesurfer"  # the name of the built-in FreeSurfer table in the config (sources[].labels)

# Vessels 30/62, lateral ventricles 4/43, unsegmented white matter 5001/5002, choroid plexus 31/63,
# inferior lateral ventricles 5/44, 3rd ventricle 14, 4th ventricle 15, CSF 24, optic chiasm 85.
EXCLUDED_CODES = frozenset({30, 62, 4, 43, 5001, 5002, 31, 63, 5, 44, 14, 15, 24, 85})
# FreeSurfer labels that a valid wmparc may or may not contain for a given subject (white-matter
# hypointensities, the 5th ventricle, the "unknown" and "corpus callosum" cortical and white-matter
# parcels): never required when the expected regions are inferred from the subjects themselves.
FREESURFER_OPTIONAL_CODES = frozenset({72, 77, 1000, 1004, 2000, 2004, 3000, 3004, 4000, 4004})
REQUIRED_COLUMNS = ("label", "name", "hemisphere", "tissue")


@dataclass(frozen=True)
class LabelTable:
    """A label table indexed by code (columns name, hemisphere, tissue, region, excluded), and the codes a
    label image may lack without being wrong (``optional``)."""

    table: pd.DataFrame
    optional: frozenset[int] = frozenset()
    source: str = ""

    def __contains__(self, code: object) -> bool:
        return int(code) in self.table.index  # type: ignore[call-overload]

    def name_of(self, code: int) -> str:
        return str(self.table.loc[int(code), "name"])

    def names(self, codes: Iterable[int]) -> list[str]:
        """Names of ``codes``; a code the table lacks is named by its number."""
        return [self.name_of(c) if c in self else str(c) for c in codes]

    def column(self, codes: Iterable[int], column: str) -> list[str]:
        return [str(self.table.loc[int(c), column]) for c in codes]

    def scored(self, codes: Iterable[int]) -> list[int]:
        """The codes that are scored: in the table and not excluded, sorted."""
        return sorted(int(c) for c in codes if int(c) in self and not bool(self.table.loc[int(c), "excluded"]))


def read_label_table(path: str | Path, optional: Iterable[int] = ()) -> LabelTable:
    """A label table from its TSV (module docstring), checked for its columns and unique codes."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"cannot read the label table: {error}", path=path) from error
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"the label table lacks columns {missing} (it needs {list(REQUIRED_COLUMNS)})", path=path)
    if table["label"].duplicated().any():
        raise InputError(f"the label table lists codes more than once: {sorted(set(table['label'][table['label'].duplicated()]))[:10]}",
                         path=path)
    table = table.astype({"label": int}).set_index("label")
    if "region" not in table.columns:
        table["region"] = table["name"]
    table["excluded"] = table["excluded"].eq("yes") if "excluded" in table.columns else False
    return LabelTable(table, frozenset(int(c) for c in optional), str(path))


def load(spec: str | Path | None = None) -> LabelTable:
    """The label table a source names: ``freesurfer`` (or None, or the built-in file's path) for the built-in
    one with its optional codes, else a TSV path. Read once per process."""
    if spec is None or str(spec) == FREESURFER or Path(spec).resolve() == LUT_PATH:
        return _cached(FREESURFER)
    return _cached(str(Path(spec).resolve()))


@lru_cache(maxsize=8)
def _cached(key: str) -> LabelTable:
    if key == FREESURFER:
        return read_label_table(LUT_PATH, FREESURFER_OPTIONAL_CODES)
    return read_label_table(key)


def lut() -> pd.DataFrame:
    """The FreeSurfer table indexed by LUT code: name, hemisphere (L/R/B), tissue, region, excluded."""
    return load(FREESURFER).table


def name_of(code: int) -> str:
    return load(FREESURFER).name_of(code)


def code_of(name: str) -> int:
    table = lut()
    hits = table.index[table["name"] == name]
    if len(hits) != 1:
        raise KeyError(f"no FreeSurfer LUT region named {name!r}")
    return int(hits[0])


def remove_excluded(labels: np.ndarray) -> np.ndarray:
    """Set the 14 excluded structures to background (0), leaving every other label as it is."""
    out = labels.copy()
    out[np.isin(out, sorted(EXCLUDED_CODES))] = 0
    return out
