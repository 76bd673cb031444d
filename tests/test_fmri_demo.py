"""The synthetic BOLD cohort: deterministic per (seed, label), with its planted effects measurable by the
indicators (on a 6 mm grid to stay small; the default grid is the 3 mm MNI one)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from headmri.demo import bold as demo
from headmri.errors import ConfigError
from headmri.fmri import alff, rfcs
from headmri.fmri.atlas import aal116
from headmri.fmri.bold import MNI_3MM, BoldFiles, Grid, load_bold
from headmri.fmri.indicators import IndicatorSettings, compute_indicators

COARSE = Grid(shape=(31, 37, 31), affine=np.array([[6.0, 0, 0, -90], [0, 6.0, 0, -126], [0, 0, 6.0, -72], [0, 0, 0, 1]]))
SETTINGS = demo.BoldDemoSettings(seed=3, volumes=150, grid=COARSE)


def _region_mask(name):
    anat = demo.anatomy(COARSE)
    atlas = aal116()
    return anat.labels == atlas.ids[atlas.names.index(name)]


def test_defaults_are_the_papers_acquisition():
    settings = demo.BoldDemoSettings()
    assert settings.tr == 2.0 and settings.volumes >= 150 and settings.grid is MNI_3MM


def test_a_subject_depends_on_seed_and_label_only():
    a, ca = demo.synthesize_bold("hc001", "HC", demo.DEFAULT_EFFECTS, SETTINGS)
    b, cb = demo.synthesize_bold("hc001", "HC", demo.DEFAULT_EFFECTS, SETTINGS)
    np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(ca, cb)
    c, _ = demo.synthesize_bold("hc002", "HC", demo.DEFAULT_EFFECTS, SETTINGS)
    assert not np.array_equal(a, c)
    assert a.shape == COARSE.shape + (150,)


def test_planted_amplitude_raises_alff_in_its_region():
    def relative_alff(label, group):
        data, _ = demo.synthesize_bold(label, group, demo.DEFAULT_EFFECTS, SETTINGS)
        mask = demo.anatomy(COARSE).mask
        values = np.zeros(mask.shape)
        values[mask] = alff.alff(data[mask], SETTINGS.tr)
        region = _region_mask("Cuneus_L")
        return values[region].mean() / values[mask].mean()

    assert relative_alff("mwoa001", "MWoA") > 1.15 * relative_alff("hc001", "HC")


def test_planted_connectivity_makes_its_regions_the_strongest_rfcs():
    def strength(label, group):
        data, confounds = demo.synthesize_bold(label, group, demo.DEFAULT_EFFECTS, SETTINGS)
        anat, atlas = demo.anatomy(COARSE), aal116()
        present = [i for i in atlas.ids if (anat.labels == i).any()]
        series = np.stack([data[anat.labels == i].mean(axis=0) for i in present], axis=1)
        # the nuisance series are in every voxel (so every region correlates through them) until regressed
        x = np.column_stack([np.ones(len(confounds)), confounds[["csf", "white_matter"]].to_numpy()])
        series = series - x @ np.linalg.lstsq(x, series, rcond=None)[0]
        values, _ = rfcs.strength(series)
        return dict(zip([atlas.names[atlas.ids.index(i)] for i in present], values))

    patient, control = strength("mwa001", "MWA"), strength("hc001", "HC")
    top = sorted(patient, key=patient.get, reverse=True)[:2]
    assert set(top) == {"Precuneus_L", "Precuneus_R"}
    assert patient["Precuneus_L"] > control["Precuneus_L"] + 0.05


def test_written_subject_goes_through_the_indicators_with_planted_regions_on_top(tmp_path):
    paths = demo.write_bold_subject(tmp_path, "mwoa001", "MWoA", demo.DEFAULT_EFFECTS, SETTINGS)
    files = BoldFiles(subject="sub-mwoa001", bold=paths["bold"], mask=paths["mask"], confounds=paths["confounds"],
                      space=demo.SPACE)
    assert load_bold(files).tr == 2.0
    result = compute_indicators(files, IndicatorSettings(grid=None, confounds=("csf", "white_matter")))
    atlas = result.rfcs.atlas
    order = np.argsort(result.rfcs.strength)[::-1]
    assert {atlas.names[i] for i in order[:2]} == {"Precuneus_L", "Precuneus_R"}
    malff = np.asarray(result.maps["malff"].dataobj)
    assert malff[_region_mask("Cuneus_L")].mean() > 1.2


def test_cohort_tables_and_effect_checks(tmp_path):
    effects = (demo.BoldEffect("MWoA", "Cuneus_L", "amplitude", 0.5),)
    participants = demo.make_bold_cohort(tmp_path, {"HC": 1, "MWoA": 1}, effects, SETTINGS)
    assert list(participants["participant_id"]) == ["sub-hc001", "sub-mwoa001"]
    truth = pd.read_csv(tmp_path / "ground_truth.tsv", sep="\t")
    assert truth.iloc[0].to_dict() == {"group": "MWoA", "region": "Cuneus_L", "aal_id": 45, "kind": "amplitude", "strength": 0.5}
    with pytest.raises(ConfigError, match="not an AAL region"):
        demo.BoldEffect("MWoA", "Cuneus", "amplitude", 0.5)
    with pytest.raises(ConfigError, match="groups"):
        demo.make_bold_cohort(tmp_path, {"HC": 1}, effects, SETTINGS)


def test_planted_effects_come_from_a_table_and_a_bad_row_names_its_line(tmp_path):
    table = tmp_path / "effects.tsv"
    table.write_text("group\tregion\tkind\tstrength\nMWoA\tInsula_R\tconnectivity\t1.0\nMWA\tThalamus_L\tamplitude\t0.8\n")
    assert demo.read_bold_effects(table) == (demo.BoldEffect("MWoA", "Insula_R", "connectivity", 1.0),
                                             demo.BoldEffect("MWA", "Thalamus_L", "amplitude", 0.8))
    assert demo.read_bold_effects(None) == demo.DEFAULT_EFFECTS
    table.write_text("group\tregion\tkind\tstrength\nMWoA\tInsula_R\tconnectivity\t1.0\nMWA\tThalamus\tamplitude\t0.8\n")
    with pytest.raises(ConfigError, match=r"effects.tsv, line 3: 'Thalamus' is not an AAL region"):
        demo.read_bold_effects(table)
    table.write_text("group\tregion\tstrength\nMWoA\tInsula_R\t1.0\n")
    with pytest.raises(ConfigError, match=r"missing \['kind'\]"):
        demo.read_bold_effects(table)
