"""The explain job called with one flat set of keywords (the tests' shorthand): each keyword goes to the
typed group of ``headmri.explain.job.explain_fold`` that holds it."""

from __future__ import annotations

from headmri.explain.job import ExplainSettings, FoldInputs, FoldKey, FoldOutputs, explain_fold


def explain(*, model_path, split_tsv, task, classes, fold, subjects, regions_tsv, mean_map, summary_json,
            montage_png=None, maps_dir=None, controls=None, expected_regions_tsv=None, label_table=None, device=None,
            **settings):
    """``settings``: the fields of ``ExplainSettings`` (method, target_layer, statistic, patients, ...)."""
    return explain_fold(FoldInputs(model_path, split_tsv, subjects, controls, expected_regions_tsv, label_table),
                        FoldKey(task, classes, fold), ExplainSettings(**settings),
                        FoldOutputs(regions_tsv, mean_map, summary_json, montage_png, maps_dir), device)
