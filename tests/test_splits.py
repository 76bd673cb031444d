"""Subject-level splits: sizes, disjointness, leakage check, stability when subjects are added, errors."""

import pandas as pd
import pytest

from headmri.errors import InputError, LeakageError
from headmri.splits import check_leakage, make_split_file, make_splits, read_split


def cohort(sizes: dict, site_of=None, start=0) -> pd.DataFrame:
    rows, i = [], start
    for group, n in sizes.items():
        for _ in range(n):
            row = {"participant_id": f"sub-s{i:04d}", "group": group}
            if site_of:
                row["site"] = site_of(i)
            rows.append(row)
            i += 1
    return pd.DataFrame(rows)


def fold_of_test_subjects(split):
    return {(r.participant_id): r.fold for r in split[split.split == "test"].itertuples()}


def test_balanced_sets_have_the_requested_sizes_and_never_share_a_test_subject():
    split = make_splits(cohort({"HC": 60, "migraine": 37}), ["HC", "migraine"], folds=5, val_per_class=6,
                        test_per_class=6, seed=3)
    check_leakage(split)
    counts = split.groupby(["fold", "split", "group"]).size()
    for fold in range(1, 6):
        for group in ("HC", "migraine"):
            assert counts[fold, "test", group] == 6 and counts[fold, "val", group] == 6
    assert counts[1, "train", "migraine"] == 37 - 12
    tests = split[split.split == "test"]
    assert tests.participant_id.is_unique  # 5 x 12 distinct test subjects
    assert set(split.columns) >= {"participant_id", "label", "group", "class_index", "fold", "split"}
    assert (split.label == split.participant_id.str[4:]).all()
    assert (split.class_index == split.group.map({"HC": 0, "migraine": 1})).all()
    # every subject appears once per fold
    assert (split.groupby("fold").participant_id.nunique() == 97).all()


def test_without_validation_the_validation_subjects_train_and_every_fold_tests_the_same_subjects():
    people = cohort({"HC": 8, "migraine": 8})
    with_val = make_splits(people, ["HC", "migraine"], folds=3, val_per_class=1, test_per_class=1, seed=13)
    without = make_splits(people, ["HC", "migraine"], folds=3, val_per_class=0, test_per_class=1, seed=13)
    check_leakage(without)
    assert set(without["split"]) == {"train", "test"}
    pd.testing.assert_frame_equal(with_val[with_val.split == "test"], without[without.split == "test"])
    moved = without[with_val["split"].eq("val").to_numpy()]
    assert len(moved) == 3 * 2 and (moved["split"] == "train").all()


def test_same_seed_same_split_other_seed_other_split():
    people = cohort({"HC": 30, "APTH": 30})
    a = make_splits(people, ["HC", "APTH"], folds=3, val_per_class=2, test_per_class=2, seed=1)
    b = make_splits(people.sample(frac=1, random_state=0), ["HC", "APTH"], folds=3, val_per_class=2,
                    test_per_class=2, seed=1)
    c = make_splits(people, ["HC", "APTH"], folds=3, val_per_class=2, test_per_class=2, seed=2)
    pd.testing.assert_frame_equal(a, b)  # row order of participants.tsv does not matter
    assert fold_of_test_subjects(a) != fold_of_test_subjects(c)


def test_leakage_check_catches_an_injected_overlap_within_a_fold():
    split = make_splits(cohort({"HC": 20, "PPTH": 20}), ["HC", "PPTH"], folds=3, val_per_class=2, test_per_class=2)
    test_subject = split[(split.fold == 1) & (split.split == "test")].participant_id.iloc[0]
    leaked = pd.concat([split, pd.DataFrame([{**split.iloc[0].to_dict(), "participant_id": test_subject,
                                              "fold": 1, "split": "train"}])])
    with pytest.raises(LeakageError, match=f"{test_subject} is in test and train of fold 1"):
        check_leakage(leaked)


def test_leakage_check_catches_a_subject_tested_in_two_folds():
    split = make_splits(cohort({"HC": 20, "PPTH": 20}), ["HC", "PPTH"], folds=3, val_per_class=2, test_per_class=2)
    victim = split[(split.fold == 1) & (split.split == "test")].participant_id.iloc[0]
    leaked = split.copy()
    leaked.loc[(leaked.fold == 2) & (leaked.participant_id == victim), "split"] = "test"
    with pytest.raises(LeakageError, match=rf"{victim} is a test subject in folds \[1, 2\]"):
        check_leakage(leaked)


def test_validation_is_disjoint_from_test_within_each_fold():
    split = make_splits(cohort({"HC": 25, "migraine": 25}), ["HC", "migraine"], folds=4, val_per_class=3,
                        test_per_class=2)
    for _fold, rows in split.groupby("fold"):
        val = set(rows[rows.split == "val"].participant_id)
        test = set(rows[rows.split == "test"].participant_id)
        assert len(val) == 6 and len(test) == 4 and not val & test


@pytest.mark.parametrize("seed", range(4))
def test_two_folds_train_on_different_subjects(seed):
    """Validation comes from the next bucket's tail, so with buckets of t + v or more members it never
    coincides with the next fold's test set (with the head it did, and 2 folds trained identical models)."""
    def sets(split):
        return {(f, s): set(rows[rows.split == s].participant_id) for f, rows in split.groupby("fold")
                for s in ["train", "val", "test"]}

    small = sets(make_splits(cohort({"HC": 8, "migraine": 8}), ["HC", "migraine"], folds=2, val_per_class=1,
                             test_per_class=1, seed=seed))
    assert small[1, "train"] != small[2, "train"]
    # 20 per class: every bucket has at least t + v = 4 members for these seeds
    large = sets(make_splits(cohort({"HC": 20, "migraine": 20}), ["HC", "migraine"], folds=2, val_per_class=2,
                             test_per_class=2, seed=seed))
    assert not large[1, "val"] & large[2, "test"] and not large[2, "val"] & large[1, "test"]
    assert len(large[1, "train"] ^ large[2, "train"]) == 16  # each fold trains on the other's 8 val subjects


def _changes(before: pd.DataFrame, after: pd.DataFrame, newcomer: str) -> pd.DataFrame:
    merged = before.merge(after, on=["participant_id", "fold"], suffixes=("_old", "_new"))
    return merged[merged.split_old != merged.split_new]


@pytest.mark.parametrize("seed", [0, 1])
def test_adding_a_subject_moves_nobody_unless_it_takes_a_slot(seed):
    """The guarantee of docs/splits.md (no site column, no short buckets): a newcomer changes nothing when
    it lands outside every held-out slot; otherwise it takes one slot of its own bucket and pushes exactly
    one existing subject down one place; no existing subject ever changes test fold."""
    base = cohort({"HC": 40, "APTH": 40})
    params = dict(folds=5, val_per_class=2, test_per_class=2, seed=seed)
    before = make_splits(base, ["HC", "APTH"], **params)
    took_slot = 0
    for n in range(40):
        newcomer = f"sub-new{n:03d}"
        grown = pd.concat([base, pd.DataFrame([{"participant_id": newcomer, "group": ["HC", "APTH"][n % 2]}])])
        after = make_splits(grown, ["HC", "APTH"], **params)
        check_leakage(after)
        old_tests, new_tests = fold_of_test_subjects(before), fold_of_test_subjects(after)
        # nobody moves from one test fold to another
        assert all(new_tests[s] == f for s, f in old_tests.items() if s in new_tests)
        changes = _changes(before, after, newcomer)
        new_rows = after[after.participant_id == newcomer]
        held = new_rows[new_rows.split != "train"]
        if held.empty:
            assert changes.empty
        else:
            took_slot += 1
            left_test = set(old_tests) - set(new_tests)
            assert len(left_test) <= 1
            assert len(set(changes.participant_id)) <= 2  # the one displaced from test, the one from val
            assert set(changes.fold) <= set(held.fold)  # only in the folds the newcomer is held out in
    assert 0 < took_slot < 40  # both cases were exercised


def test_with_sites_a_newcomer_only_touches_its_own_bucket_and_test_sets_mirror_the_sites():
    site_of = lambda i: "A" if i % 4 else "B"  # noqa: E731  (75% A, 25% B)
    base = cohort({"HC": 80, "migraine": 80}, site_of=site_of)
    params = dict(folds=4, val_per_class=4, test_per_class=4, seed=5)
    before = make_splits(base, ["HC", "migraine"], **params)
    tests = before[before.split == "test"]
    share_b = (tests.site == "B").groupby([tests.fold, tests.group]).mean()
    assert share_b.between(0.0, 0.5).all() and abs(share_b.mean() - 0.25) < 0.1
    for n in range(10):
        grown = pd.concat([base, cohort({"HC": 1}, site_of=lambda i: "B", start=9000 + n)])
        after = make_splits(grown, ["HC", "migraine"], **params)
        old_tests, new_tests = fold_of_test_subjects(before), fold_of_test_subjects(after)
        assert all(new_tests[s] == f for s, f in old_tests.items() if s in new_tests)
        changed_test_folds = {old_tests[s] for s in set(old_tests) - set(new_tests)}
        assert len(changed_test_folds) <= 1


def test_short_buckets_borrow_and_the_split_stays_valid():
    # exactly folds x held subjects: every bucket must end with one member, whatever the hashes say
    split = make_splits(cohort({"HC": 3, "APTH": 3}), ["HC", "APTH"], folds=3, val_per_class=1,
                        test_per_class=1, seed=0)
    check_leakage(split)
    assert (split[split.split == "test"].groupby(["fold", "group"]).size() == 1).all()
    assert split[split.split == "test"].participant_id.nunique() == 6


def test_proportional_scheme_scales_with_class_size():
    split = make_splits(cohort({"HC": 50, "migraine": 20}), ["HC", "migraine"], folds=5, scheme="proportional",
                        proportional_val=0.1, proportional_test=0.2)
    check_leakage(split)
    counts = split[split.fold == 1].groupby(["split", "group"]).size()
    assert counts["test", "HC"] == 10 and counts["test", "migraine"] == 4
    assert counts["val", "HC"] == 5 and counts["val", "migraine"] == 2


def test_a_class_without_subjects_is_an_error():
    with pytest.raises(InputError, match="class 'PPTH' has no subjects"):
        make_splits(cohort({"HC": 30}), ["HC", "PPTH"], folds=5, val_per_class=2, test_per_class=2, task="ppth")


def test_too_few_subjects_says_how_many_are_needed_and_how_many_there_are():
    with pytest.raises(InputError, match=r"class 'APTH' has 20 subjects but the balanced split needs at least 30"):
        make_splits(cohort({"HC": 60, "APTH": 20}), ["HC", "APTH"], folds=5, val_per_class=6, test_per_class=6)


def test_split_file_keeps_only_requested_subjects_and_other_groups_are_left_out(tmp_path):
    people = cohort({"HC": 12, "migraine": 12, "APTH": 5})
    people["participant_id"] = people["participant_id"]
    tsv = tmp_path / "participants.tsv"
    people.to_csv(tsv, sep="\t", index=False)
    wanted = [pid[4:] for pid in people.participant_id[:10]] + list(people.participant_id[12:22])
    out = tmp_path / "splits" / "task-migraine.tsv"
    make_split_file(tsv, out, ["HC", "migraine"], subjects=wanted, task="migraine", folds=3, val_per_class=1,
                    test_per_class=1)
    written = read_split(out)
    assert set(written.participant_id) == {p if p.startswith("sub-") else f"sub-{p}" for p in wanted}
    assert set(written.group) == {"HC", "migraine"}
    check_leakage(written)
    with pytest.raises(InputError, match=r"subjects \['sub-nobody'\] are not in participants.tsv"):
        make_split_file(tsv, out, ["HC", "migraine"], subjects=["nobody"], folds=3)


# ---- leave-one-subject-out (scheme loso) -------------------------------------------------------------------

def test_loso_tests_each_participant_once_with_all_sessions_and_validates_on_others(tmp_path):
    participants = cohort({"HC": 4, "MWoA": 3, "MWA": 3})
    (tmp_path / "participants.tsv").write_text(participants.to_csv(sep="\t", index=False))
    images = {"s0000_ses-1": "s0000", "s0000_ses-2": "s0000", "s0005_ses-a": "s0005", "s0005_ses-b": "s0005"}
    split = make_split_file(tmp_path / "participants.tsv", tmp_path / "split.tsv", ["HC", "MWoA", "MWA"],
                            images=images, scheme="loso", folds=5, val_per_class=1, seed=4)
    check_leakage(split)
    assert split["fold"].nunique() == 10  # one fold per participant, whatever splits.folds says
    test = split[split["split"] == "test"]
    assert test.groupby("fold")["subject"].nunique().eq(1).all()
    assert sorted(test["subject"].unique()) == sorted(participants["participant_id"])  # each tested exactly once
    assert sorted(test[test["subject"] == "sub-s0000"]["participant_id"]) == ["sub-s0000_ses-1", "sub-s0000_ses-2"]
    sets = split.groupby(["fold", "subject"])["split"].nunique()
    assert (sets == 1).all()  # both sessions of a participant always in the same set
    val = split[split["split"] == "val"]
    assert (val.groupby(["fold", "group"])["subject"].nunique() == 1).all() and val.groupby("fold")["group"].nunique().eq(3).all()
    train = split[split["split"] == "train"].groupby("fold")["subject"].nunique()
    assert (train == 10 - 1 - 3).all()
    assert val.groupby("subject")["fold"].nunique().max() < 10  # validation subjects change from fold to fold
    direct = make_splits(participants, ["HC", "MWoA", "MWA"], scheme="loso", val_per_class=1, seed=4)
    by_participant = direct.set_index(["fold", "participant_id"])["split"]
    assert all(by_participant[(r.fold, r.subject)] == r.split for r in split.itertuples())  # images follow their participant
    assert (read_split(tmp_path / "split.tsv")["split"] == split["split"]).all()


def test_loso_validation_is_stable_when_a_subject_joins_and_without_validation_everyone_else_trains():
    old = make_splits(cohort({"HC": 5, "migraine": 5}), ["HC", "migraine"], scheme="loso", val_per_class=2, seed=1)
    new = make_splits(cohort({"HC": 5, "migraine": 5}).pipe(
        lambda p: pd.concat([p, pd.DataFrame([{"participant_id": "sub-s9999", "group": "HC"}])])),
        ["HC", "migraine"], scheme="loso", val_per_class=2, seed=1)

    def val_sets(split):
        v = split[split["split"] == "val"]
        tested = split[split["split"] == "test"].set_index("fold")["participant_id"]
        return {tested[f]: set(g["participant_id"]) for f, g in v.groupby("fold")}

    before, after = val_sets(old), val_sets(new)
    # rendezvous hashing: a fold's validation set changes only where the newcomer wins a place in it
    changed = [s for s in before if after[s] != before[s]]
    assert all("sub-s9999" in after[s] and len(after[s] - before[s]) == 1 for s in changed)
    assert len(changed) < len(before)
    plain = make_splits(cohort({"HC": 2, "migraine": 2}), ["HC", "migraine"], scheme="loso", val_per_class=0)
    assert set(plain["split"]) == {"train", "test"} and (plain.groupby("fold")["split"].apply(lambda s: (s == "train").sum()) == 3).all()


def test_loso_with_too_small_a_class_says_what_it_needs():
    with pytest.raises(InputError, match=r"class\(es\) \{'migraine': 2\} need at least 3 subjects"):
        make_splits(cohort({"HC": 4, "migraine": 2}), ["HC", "migraine"], scheme="loso", val_per_class=1)
