"""Table 1: Kruskal-Wallis for numbers, chi-square for categories, the paper's layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from headmri.fmri import demographics as dm


def _participants():
    rows = []
    sexes = {"MWoA": (7, 14), "MWA": (4, 11), "HC": (13, 15)}  # the paper's Table 1 counts (male, female)
    for group, (male, female) in sexes.items():
        for i in range(male + female):
            rows.append({"participant_id": f"sub-{group}{i}", "group": group, "sex": "M" if i < male else "F",
                         "age": 20 + i, "education": 16, "site": "A"})
    return pd.DataFrame(rows)


def test_sex_gets_a_chi_square_p_and_the_papers_40_is_kruskal_wallis_on_0_1_codes():
    participants = _participants()
    table = dm.demographics_table(participants, ["MWoA", "MWA", "HC"], columns=["sex"])
    header = table.iloc[0]
    assert header["variable"] == "sex, n (%)" and header["p_value"] == ".39" and header["test"] == "chi-square"
    # The paper's Table 1 says .40 and that every p is Kruskal-Wallis: sex coded 0/1 gives exactly that.
    codes = [(participants.loc[participants["group"] == g, "sex"] == "F").to_numpy(float) for g in ("MWoA", "MWA", "HC")]
    assert dm.format_p(dm.kruskal_p(codes)[1]) == ".40"
    male = table[table["variable"] == "  M"].iloc[0]
    assert male["MWoA (n=21)"] == "7 (33%)" and male["HC (n=28)"] == "13 (46%)"


def test_numeric_columns_get_median_iqr_and_kruskal_wallis_against_a_hand_computed_h():
    frame = pd.DataFrame({"participant_id": [f"s{i}" for i in range(9)], "group": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
                          "score": [1, 2, 3, 4, 5, 6, 7, 8, 9]})
    table = dm.demographics_table(frame, ["a", "b", "c"])
    row = table.iloc[0]
    # no ties: H = 12 / (N (N + 1)) * sum R_i^2 / n_i - 3 (N + 1), rank sums 6, 15, 24
    h = 12 / (9 * 10) * (6 ** 2 + 15 ** 2 + 24 ** 2) / 3 - 3 * 10
    assert row["statistic"] == pytest.approx(h)
    assert row["a (n=3)"] == "2.00 (1.50-2.50)" and row["variable"] == "score, median (IQR)"
    assert row["p_value"] == dm.format_p(row["p"]) and row["p"] < 0.05


def test_identical_values_and_identifier_columns_do_not_invent_statistics():
    table = dm.demographics_table(_participants(), ["MWoA", "MWA", "HC"])
    by_name = table.set_index("variable")
    assert by_name.loc["education, median (IQR)", "p_value"] == "n/a"  # everyone has 16 years
    assert by_name.loc["site, n (%)", "p_value"] == "n/a"  # one site
    assert not any(v.startswith("participant_id") for v in table["variable"])


@pytest.mark.parametrize("p, text", [(0.4012, ".40"), (0.0021, ".002"), (0.0004, "<.001"), (float("nan"), "n/a"), (1.0, "1.00")])
def test_p_values_are_written_as_in_the_paper(p, text):
    assert dm.format_p(p) == text


def test_write_demographics_reads_na(tmp_path):
    frame = _participants()
    frame.loc[0, "age"] = np.nan
    frame.to_csv(tmp_path / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    table = dm.write_demographics(tmp_path / "participants.tsv", tmp_path / "table1.tsv", ["MWoA", "MWA", "HC"])
    assert (tmp_path / "table1.tsv").exists()
    assert table.set_index("variable").loc["age, median (IQR)", "p_value"] != "n/a"
