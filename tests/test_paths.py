"""The path table (headmri.paths) is the one place output names live: results/README.md shows its paths."""

from __future__ import annotations

from headmri.config import ExplainConfig
from headmri.paths import LETTERS, path_table, shown
from headmri.results_readme import RunLayout, results_readme

# folders and bookkeeping files of the table that the README describes by their contents, not by name
DESCRIBED_BY_CONTENT = {"train_dir", "explain_dir", "tables", "figures", "task_figures", "qc_row", "results_readme"}


def test_every_output_of_the_table_is_in_results_readme():
    text = results_readme(RunLayout(sources=["T1w", "alff"], tasks=["migraine"], models=["cnndemo", "resnet3d"], folds=[1, 2], fmri=True),
                          ExplainConfig(method="occlusion", patients="all", save_nifti=True, sanity_check=True, controls=True,
                                        bootstrap=100))
    missing = [key for key in path_table() if key not in DESCRIBED_BY_CONTENT and f"`{shown(key)}" not in text]
    assert not missing, missing


def test_paths_are_shown_relative_with_a_letter_per_wildcard():
    assert shown("regions") == "tables/source-S_task-T_regions.tsv"
    assert shown("train_dir", "/model.pt") == "train/source-S/task-T/model-M/fold-K/model.pt"
    for template in path_table("results").values():
        assert template.startswith("results/")
        wildcards = {part.split("}")[0] for part in template.split("{")[1:]}
        assert wildcards <= set(LETTERS), template
