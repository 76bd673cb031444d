"""Image sources (config `sources`): the back half (slices, training, explanations, rankings) keyed by
source, each with its own atlas and label table.

The fast tests check the typed configuration and the label tables; the slow one declares a second
source beside the T1w one (the same brain under another name, axial slices, a box atlas with its own
label table) and runs both through splits, training, explanation and ranking in one Snakemake run.
"""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from headmri import config as cfg_module
from headmri import labels
from headmri.errors import ConfigError, InputError
from headmri.explain import regions as regional
from headmri.explain.merge import merge_folds

from workflow_runner import REPO, TINY_CONFIG, copy_workdir, planned_jobs, preprocessed_workdir, run_snakemake, write_config

BOX_NAMES = {101: ("box-L-posterior", "L"), 102: ("box-R-posterior", "R"), 103: ("box-L-anterior", "L"),
             104: ("box-R-anterior", "R"), 105: ("box-midline", "B")}
EXCLUDED_BOX = 105


def write_box_table(path) -> None:
    rows = [{"label": code, "name": name, "hemisphere": hemi, "tissue": "box",
             "excluded": "yes" if code == EXCLUDED_BOX else "no"} for code, (name, hemi) in BOX_NAMES.items()]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


# --- configuration --------------------------------------------------------------------------------------

def test_the_default_source_is_todays_t1w_set_up():
    config = cfg_module.load(REPO / "config.yaml")
    assert [s.name for s in config.sources] == ["T1w"]
    t1w = config.source("T1w")
    assert (t1w.image, t1w.mask, t1w.atlas, t1w.labels) == ("brain_mni", "mask_mni", "dseg_mni", "freesurfer")
    assert (t1w.axis, t1w.size, t1w.encoders) == (config.slices.axis, config.slices.size, (config.model.encoder,))


def test_the_schema_fills_a_second_sources_defaults_and_it_keeps_its_own_settings():
    config = cfg_module.load(REPO / "config.yaml", {"sources": [
        {"name": "T1w"}, {"name": "axial", "atlas": "boxes.nii.gz", "labels": "boxes.tsv", "axis": 2, "size": 64,
                          "encoders": ["vit_tiny_demo"]}]})
    axial = config.source("axial")
    assert (axial.image, axial.mask) == ("brain_mni", "mask_mni")
    assert (axial.atlas, axial.labels, axial.axis, axial.size, axial.encoders) == (
        "boxes.nii.gz", "boxes.tsv", 2, 64, ("vit_tiny_demo",))
    with pytest.raises(ConfigError, match="no source named"):
        config.source("alff")


def test_source_names_are_unique():
    with pytest.raises(ConfigError, match="unique"):
        cfg_module.load(REPO / "config.yaml", {"sources": [{"name": "T1w"}, {"name": "T1w", "axis": 2}]})


def test_the_slice_size_is_each_encoders_unless_the_source_sets_one():
    from headmri.models import slice_sizes

    assert slice_sizes(["cnn_demo"]) == {"cnn_demo": 64} and slice_sizes(["biomedclip", "resnet3d"]) == {"biomedclip": 224}
    assert slice_sizes(["resnet3d"]) == {}
    assert slice_sizes(["vit_tiny_demo", "cnn_demo"]) == {"vit_tiny_demo": 112, "cnn_demo": 64}
    assert slice_sizes(["vit_tiny_demo", "cnn_demo"], 112) == {"vit_tiny_demo": 112, "cnn_demo": 112}
    config = cfg_module.load(REPO / "config.yaml")
    assert config.slices.size is None and config.source("T1w").size is None  # the workflow asks the encoder


@pytest.mark.parametrize("encoder", ["biomedclip", "vit_tiny_demo", "cnn_demo", "googlenet", "resnet18"])
def test_the_planned_slice_size_is_the_size_the_built_model_takes(encoder):
    # the workflow plans slices from encoder_names.INPUT_SIZES without building a model (or importing torch)
    from headmri.encoder_names import INPUT_SIZES
    from headmri.models import build_architecture

    assert build_architecture(encoder, ("a", "b"), device="meta").input_size == INPUT_SIZES[encoder]


def test_encoders_of_different_input_sizes_each_train_on_slices_of_their_own_size(tmp_path):
    """One source, the demo CNN (64 px) and the demo ViT (112 px): the source is sliced at both sizes and
    each model's training reads its own (a dry run of the demo workflow)."""
    configfile = write_config(tmp_path / "config.yaml", sources=[{"name": "T1w", "encoders": ["cnn_demo", "vit_tiny_demo"]}],
                              tasks=[{"name": "migraine", "classes": ["HC", "migraine"]}])
    train = "results/train/source-T1w/task-migraine/model-{}/fold-1/model.pt"
    done = run_snakemake(tmp_path, configfile, "--dry-run", "--", train.format("cnndemo"), train.format("vittinydemo"))
    jobs = planned_jobs(done.stdout)
    slicing = {(j.wildcards["subject"], j.wildcards["size"]) for j in jobs if j.rule == "make_slices"}
    subjects = {s for s, _ in slicing}
    assert slicing == {(s, size) for s in subjects for size in ("64", "112")} and len(subjects) == 16
    blocks = {b.split("wildcards: ")[1].split("model=")[1].split(",")[0]: b
              for b in re.split(r"\n(?=rule \w+:)", done.stdout) if b.startswith("rule train_fold:")}
    assert "_size-64_slices.npy" in blocks["cnndemo"] and "_size-112_" not in blocks["cnndemo"]
    assert "_size-112_slices.npy" in blocks["vittinydemo"] and "_size-64_" not in blocks["vittinydemo"]


# --- label tables --------------------------------------------------------------------------------------

def test_a_label_table_names_scores_and_excludes_its_own_codes(tmp_path):
    write_box_table(tmp_path / "boxes.tsv")
    table = labels.read_label_table(tmp_path / "boxes.tsv")
    assert table.name_of(103) == "box-L-anterior"
    assert table.column([101], "region") == ["box-L-posterior"]  # no region column: the name
    assert table.scored([105, 104, 101, 999]) == [101, 104]  # excluded and unknown codes are not scored
    # the FreeSurfer table is the built-in one, with its optional codes, also when named by its file
    assert labels.load(str(labels.LUT_PATH)) is labels.load("freesurfer")
    assert 1000 in labels.load("freesurfer").optional


def test_a_label_table_without_its_columns_is_refused(tmp_path):
    (tmp_path / "bad.tsv").write_text("label\tname\n1\ta\n")
    with pytest.raises(InputError, match="hemisphere"):
        labels.read_label_table(tmp_path / "bad.tsv")


def test_region_rows_and_the_ranking_take_their_names_from_the_sources_table(tmp_path):
    write_box_table(tmp_path / "boxes.tsv")
    boxes = labels.read_label_table(tmp_path / "boxes.tsv")
    codes = regional.expected_codes_from_subjects([[101, 102, 103, 104, 105]], boxes)
    assert codes == [101, 102, 103, 104]
    with pytest.raises(InputError, match="not in the label table"):
        regional.check_codes([101, 7], codes[:1], subject="sub-1", path="x", labels=boxes)
    fold_tables = {}
    for fold in (1, 2):
        rows = []
        for pid, values in (("sub-a", [0.1, 0.2, 0.9, 0.3]), ("sub-b", [0.2, 0.1, 0.8, 0.4])):
            table = regional.region_rows(np.array(values), codes, boxes)
            rows.append(table.assign(participant_id=pid, group="migraine", split="test", target="migraine"))
        fold_tables[fold] = pd.concat(rows, ignore_index=True)
    assert set(fold_tables[1]["region"]) == {"box-L-posterior", "box-R-posterior", "box-L-anterior", "box-R-anterior"}
    ranking = merge_folds(fold_tables, top_k=2, labels=boxes)
    assert ranking.iloc[0]["region"] == "box-L-anterior"
    assert list(ranking["hemisphere"]) == ["L", "R", "L", "R"]
    assert set(ranking["tissue"]) == {"box"}


# --- the workflow with two sources -----------------------------------------------------------------------

def write_box_atlas(workdir, path) -> None:
    """Four boxes over the brain's bounding box on the MNI grid (left/right x posterior/anterior) and a
    midline slab, with the codes of BOX_NAMES."""
    brain = next((workdir / "results" / "preproc").glob("sub-*/anat/*_space-*_desc-brain_mask.nii.gz"))
    image = nib.load(str(brain))
    inside = np.asarray(image.dataobj) > 0
    ijk = np.argwhere(inside)
    mid = (ijk.min(axis=0) + ijk.max(axis=0)) // 2
    x, y, _ = np.indices(inside.shape)
    codes = np.where(x < mid[0], 101, 102) + np.where(y < mid[1], 0, 2)
    codes[np.abs(x - mid[0]) <= 2] = 105
    # every box must cover the brain of every subject, so the whole grid is labelled
    nib.save(nib.Nifti1Image(codes.astype(np.int16), image.affine), str(path))


@pytest.mark.slow
def test_a_second_source_runs_beside_the_first_with_its_own_regions(tmp_path):
    wd = copy_workdir(preprocessed_workdir(), tmp_path / "wd")
    write_box_atlas(wd, wd / "boxes_dseg.nii.gz")
    write_box_table(wd / "boxes.tsv")
    sources = [{"name": "T1w"},
               {"name": "axial", "image": "brain_mni", "mask": "mask_mni", "atlas": "boxes_dseg.nii.gz",
                "labels": "boxes.tsv", "axis": 2}]
    # Grad-CAM: what is checked is each source's own regions and tables; occlusion of the tiny ViT over the
    # T1w atlas's 150 regions cost 80 s a job on a 2-core VM (its wiring: test_explain_methods.py)
    explain = {**TINY_CONFIG["explain"], "method": "gradcam", "bootstrap": 20, "sanity_patients": 1, "sanity_repeats": 1}
    configfile = write_config(wd / "config.yaml", **{**TINY_CONFIG, "sources": sources, "explain": explain})
    run_snakemake(wd, configfile, "--cores", "2", timeout_s=3000)
    check_two_sources(wd / "results")


def check_two_sources(results) -> None:
    """What the run with the T1w source and the axial box-atlas source must have written."""
    for source, axis in (("axial", 2), ("T1w", 0)):
        geometry = json.loads(next((results / "slices" / f"source-{source}").glob("sub-*_size-*_slices.json")).read_text())
        assert geometry["parameters"]["axis"] == geometry["geometry"]["axis"] == axis

    metrics = pd.read_csv(results / "tables" / "metrics.tsv", sep="\t")
    assert list(metrics.columns[:3]) == ["source", "task", "model"]
    assert set(metrics["source"]) == {"T1w", "axial"}
    folds = metrics[(metrics["split"] == "test") & (metrics["fold"] > 0)]
    assert sorted(folds["source"]) == ["T1w", "T1w", "axial", "axial"]
    assert sorted(metrics.loc[metrics["fold"] == 0, "source"]) == ["T1w", "axial"]  # each source's pooled row

    axial = pd.read_csv(results / "tables" / "source-axial_task-migraine_regions.tsv", sep="\t")
    assert set(axial["region"]) == {"box-L-posterior", "box-R-posterior", "box-L-anterior", "box-R-anterior"}
    assert set(axial["tissue"]) == {"box"}
    t1w = pd.read_csv(results / "tables" / "source-T1w_task-migraine_regions.tsv", sep="\t")
    assert "ctx-lh-precentral" in set(t1w["region"]) and not set(t1w["region"]) & set(axial["region"])

    sanity = pd.read_csv(results / "tables" / "sanity.tsv", sep="\t")
    assert set(sanity["source"]) == {"T1w", "axial"}
    for source in ("T1w", "axial"):
        assert (results / "figures" / f"source-{source}" / "task-migraine" / "regions_ranked.png").is_file()
    assert "source-S" in (results / "README.md").read_text()
