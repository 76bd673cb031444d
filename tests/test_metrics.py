"""Multiple-instance aggregation and metrics agree with scikit-learn; the tables merge folds."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from headmri.evaluation import aggregate_subjects, binary_metrics, evaluate_fold, metrics_table, multiclass_metrics
from headmri.evaluation.metrics import fold_metrics, pooled_test_metrics


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_metrics_equal_scikit_learn(seed, threshold):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 40), 0, 1)
    pred = (p >= threshold).astype(int)
    got = binary_metrics(y, p, threshold)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (tp, fp, tn, fn)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert got["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert got["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p))


def test_binary_metrics_on_a_hand_worked_example():
    got = binary_metrics([0, 0, 0, 1, 1, 1], [0.1, 0.6, 0.2, 0.9, 0.4, 0.8])
    assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (2, 1, 2, 1)
    assert got["sensitivity"] == pytest.approx(2 / 3) and got["specificity"] == pytest.approx(2 / 3)
    assert got["precision"] == pytest.approx(2 / 3) and got["auc"] == pytest.approx(8 / 9)
    assert got["confusion"] == [[2, 1], [1, 2]]
    one_class = binary_metrics([1, 1], [0.7, 0.2])
    assert np.isnan(one_class["auc"]) and one_class["balanced_accuracy"] == 0.5
    assert binary_metrics([0, 0], [0.1, 0.2])["precision"] == 0.0  # nothing predicted positive


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(4), 15)
    logits = rng.normal(size=(60, 4)) + 1.2 * np.eye(4)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = proba.argmax(1)
    got = multiclass_metrics(y, proba)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert got["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    cm = skm.confusion_matrix(y, pred, labels=range(4))
    assert got["confusion"] == cm.tolist()
    specificity = [skm.recall_score(y == c, pred == c, pos_label=False) for c in range(4)]
    assert got["specificity"] == pytest.approx(np.mean(specificity))


def slice_table(rng, n_subjects=6, classes=("HC", "migraine")):
    rows = []
    for s in range(n_subjects):
        n = int(rng.integers(3, 9))
        logits = rng.normal(size=(n, len(classes)))
        proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        for k in range(n):
            rows.append({"participant_id": f"sub-{s:02d}", "split": "test" if (s // 2) % 2 == 0 else "val", "slice_index": k,
                         "class_index": s % len(classes), "fold": 2,
                         **{f"prob_{c}": proba[k, i] for i, c in enumerate(classes)}})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", ["mean", "max", "median"])
def test_aggregation_matches_numpy_per_subject(method):
    rng = np.random.default_rng(0)
    slices = slice_table(rng, classes=("HC", "migraine", "APTH"))
    subjects = aggregate_subjects(slices, method)
    assert len(subjects) == 6 and list(subjects.columns[:2]) == ["participant_id", "split"]
    for _, row in subjects.iterrows():
        part = slices[slices.participant_id == row.participant_id][["prob_HC", "prob_migraine", "prob_APTH"]].to_numpy()
        expected = getattr(np, method)(part, axis=0)
        expected = expected / expected.sum()
        assert row[["prob_HC", "prob_migraine", "prob_APTH"]].to_numpy(float) == pytest.approx(expected)
        assert row.n_slices == len(part) and row.predicted == ["HC", "migraine", "APTH"][expected.argmax()]
    assert "class_index" in subjects and "fold" in subjects and "slice_index" not in subjects


def test_evaluate_fold_gives_one_row_per_split_from_subject_means():
    rng = np.random.default_rng(1)
    slices = slice_table(rng, n_subjects=10)
    subjects, table = evaluate_fold(slices, ["HC", "migraine"], task="migraine", model="vit", fold=2)
    assert list(table.split) == ["test", "val"]
    test = subjects[subjects.split == "test"]
    assert table.loc[0, "auc"] == pytest.approx(skm.roc_auc_score(test.class_index, test.prob_migraine))
    assert table.loc[0, "n_subjects"] == 6 and json.loads(table.loc[0, "confusion"])
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregate_subjects(slices, "vote")


def test_a_participant_with_several_images_counts_once_with_its_images_mean():
    # sub-a scanned twice (0.9 and 0.3: mean 0.6), sub-b once; controls c (0.4) and d (0.7)
    images = pd.DataFrame({"participant_id": ["sub-a_ses-1", "sub-a_ses-2", "sub-b", "sub-c", "sub-d"],
                           "subject": ["sub-a", "sub-a", "sub-b", "sub-c", "sub-d"], "split": "test",
                           "class_index": [1, 1, 1, 0, 0], "prob_migraine": [0.9, 0.3, 0.8, 0.4, 0.7]})
    images["prob_HC"] = 1 - images["prob_migraine"]
    row = fold_metrics(images, ["HC", "migraine"], task="migraine", model="vit", fold=1).iloc[0]
    assert row.n_subjects == 4  # participants, not the 5 images
    # per participant: patients 0.6, 0.8 against controls 0.4, 0.7: 3 of 4 pairs right (per image: 4 of 6)
    assert row.auc == pytest.approx(3 / 4)
    assert (row.tp, row.fp, row.tn, row.fn) == (2, 1, 1, 0)
    # one image per participant: the same rows as without the subject column
    single = images.drop(index=1)
    assert fold_metrics(single, ["HC", "migraine"], task="migraine", model="vit", fold=1).equals(
        fold_metrics(single.drop(columns="subject"), ["HC", "migraine"], task="migraine", model="vit", fold=1))
    images.loc[1, "class_index"] = 0
    with pytest.raises(ValueError, match="different classes"):
        fold_metrics(images, ["HC", "migraine"], task="migraine", model="vit", fold=1)


def test_metrics_table_merges_folds_into_mean_and_sd(tmp_path):
    rng = np.random.default_rng(3)
    files = []
    for task in ("migraine", "apth"):
        for fold in (1, 2, 3):
            subjects = slice_table(rng, n_subjects=8)
            _, table = evaluate_fold(subjects, ["HC", "migraine"], task=task, model="vittiny", fold=fold)
            path = tmp_path / f"train/task-{task}/fold-{fold}/metrics.tsv"
            path.parent.mkdir(parents=True)
            table.to_csv(path, sep="\t", index=False)
            files.append(path)
    out_tsv, out_md, out_png = tmp_path / "t/metrics.tsv", tmp_path / "t/summary.md", tmp_path / "f/metrics.png"
    summary = metrics_table(files, out_tsv, out_md, out_png)
    merged = pd.read_csv(out_tsv, sep="\t")
    assert len(merged) == 12 and set(merged.split) == {"test", "val"}
    part = merged[(merged.task == "apth") & (merged.split == "test")]
    row = summary[(summary.task == "apth") & (summary.split == "test")].iloc[0]
    assert row.accuracy_mean == pytest.approx(part.accuracy.mean())
    assert row.accuracy_sd == pytest.approx(part.accuracy.std(ddof=1)) and row.n_folds == 3 and row.n_learned == 3
    text = out_md.read_text()
    assert "| apth | vittiny | 3 / 3 | " + f"{100 * part.accuracy.mean():.2f} ± {100 * part.accuracy.std():.2f}%" in text
    assert text.index("## test") < text.index("## val")
    assert "None: every fold's model learned" in text  # files without a learned column count as learned
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def _fold_files(tmp_path, learned: dict[int, bool], accuracy: dict[int, float]) -> list:
    files = []
    for fold, flag in learned.items():
        rows = pd.DataFrame({"task": "ppth", "model": "vittiny", "fold": fold, "split": ["test", "val"],
                             "accuracy": accuracy[fold], "precision": 0.5, "specificity": 0.5, "sensitivity": 0.5,
                             "auc": accuracy[fold], "f1": 0.5, "balanced_accuracy": 0.5, "learned": flag,
                             "learned_reason": "fine" if flag else "the training loss never went below 0.6238"})
        path = tmp_path / f"fold-{fold}_metrics.tsv"
        rows.to_csv(path, sep="\t", index=False)
        files.append(path)
    return files


def test_summary_means_are_over_the_folds_that_learned_and_say_how_many(tmp_path, caplog):
    files = _fold_files(tmp_path, {1: True, 2: False, 3: True}, {1: 1.0, 2: 0.0, 3: 0.5})
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        summary = metrics_table(files, out / "metrics.tsv", out / "summary.md", out / "metrics.png")
    merged = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert len(merged) == 6 and merged["learned"].tolist().count(False) == 2  # the unlearned fold's rows stay
    assert {"learned_reason"} <= set(merged.columns)
    test = summary[summary.split == "test"].iloc[0]
    assert test.accuracy_mean == pytest.approx(0.75)  # (1.0 + 0.5) / 2, not (1.0 + 0.0 + 0.5) / 3
    assert test.accuracy_sd == pytest.approx(pd.Series([1.0, 0.5]).std())
    assert (test.n_folds, test.n_learned) == (3, 2)
    text = (out / "summary.md").read_text()
    assert "| ppth | vittiny | 2 / 3 ⚠ | 75.00 ± 35.36%" in text
    assert "**Warning**: 1 fold(s) did not learn" in text
    assert "| ppth | vittiny | 2 | the training loss never went below 0.6238 |" in text
    assert any("fold 2 did not learn" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_a_task_with_no_fold_that_learned_has_no_mean(tmp_path):
    files = _fold_files(tmp_path, {1: False, 2: False}, {1: 1.0, 2: 0.0})
    out = tmp_path / "out"
    summary = metrics_table(files, out / "metrics.tsv", out / "summary.md", out / "metrics.png")
    test = summary[summary.split == "test"].iloc[0]
    assert (test.n_folds, test.n_learned) == (2, 0) and pd.isna(test.accuracy_mean)
    assert "| ppth | vittiny | 0 / 2 ⚠ | n/a |" in (out / "summary.md").read_text()


def test_a_pooled_row_from_a_metrics_file_is_shown_as_pooled_and_not_averaged_as_a_fold(tmp_path):
    files = _fold_files(tmp_path, {1: True, 2: True}, {1: 1.0, 2: 0.5})
    pooled = pd.DataFrame({"source": "rfcs", "task": "ppth", "model": "svmloso", "fold": 0, "split": ["test"], "n_subjects": 9,
                           "accuracy": 0.25, "precision": 0.5, "specificity": 0.5, "sensitivity": 0.5, "auc": 0.25,
                           "f1": 0.5, "balanced_accuracy": 0.5})  # the fMRI baselines' leave-one-subject-out row
    pooled.to_csv(tmp_path / "baseline_metrics.tsv", sep="\t", index=False)
    out = tmp_path / "out"
    summary = metrics_table([*files, tmp_path / "baseline_metrics.tsv"], out / "metrics.tsv", out / "summary.md", out / "metrics.png")
    assert "svmloso" not in set(summary["model"])  # no fold of its own, so no mean +- sd row
    text = (out / "summary.md").read_text()
    assert "| rfcs | ppth | svmloso | n/a | 9 | 25.00% |" in text.split("## test, pooled over folds")[1]


# ---- pooled test rows (leave-one-subject-out, small test sets) and per-class metrics -------------------------

def _fold_with_predictions(tmp_path, fold, subjects, classes, *, task="three", model="googlenet", source="rfcs", learned=True):
    """One fold's files from its subject predictions: metrics.tsv from the library, predictions_subjects.tsv."""
    metrics = fold_metrics(subjects, classes, task=task, model=model, fold=fold).assign(learned=learned)
    metrics.insert(0, "source", source)
    folder = tmp_path / f"fold-{fold}"
    folder.mkdir()
    metrics.to_csv(folder / "metrics.tsv", sep="\t", index=False)
    subjects.to_csv(folder / "predictions_subjects.tsv", sep="\t", index=False)
    return folder / "metrics.tsv", folder / "predictions_subjects.tsv"


def _loso_fold(tmp_path, fold, participant, class_index, probs, classes, learned=True):
    """One LOSO fold's files, one test subject (and one validation subject)."""
    subjects = pd.DataFrame({"participant_id": [participant, "sub-v"], "split": ["test", "val"],
                             "class_index": [class_index, 0], **{f"prob_{c}": [p, 1.0 / len(classes)]
                                                                  for c, p in zip(classes, probs)}})
    return _fold_with_predictions(tmp_path, fold, subjects, classes, learned=learned)


def test_leave_one_subject_out_folds_and_the_fmri_baselines_rows_go_into_one_table(tmp_path):
    # splits.scheme loso with the fMRI baselines on: the CNN's folds come with their predictions, the baselines'
    # file with rows its job pooled; the rule once handed both as one list, and pairing it with the folds'
    # predictions stopped the job (zip: argument 2 is shorter)
    classes = ["HC", "migraine"]
    files = [_loso_fold(tmp_path, k, pid, y, [1 - p, p], classes)
             for k, (pid, y, p) in enumerate([("sub-a", 0, 0.2), ("sub-c", 1, 0.9)], start=1)]
    baseline = pd.DataFrame({"source": "rfcs", "task": "three", "model": "svmloso", "fold": 0, "split": ["test"],
                             "n_subjects": 9, "accuracy": 0.5, "precision": 0.5, "specificity": 0.5,
                             "sensitivity": 0.5, "auc": 0.5, "f1": 0.5, "balanced_accuracy": 0.5})
    baseline.to_csv(tmp_path / "baseline_metrics.tsv", sep="\t", index=False)
    out = tmp_path / "out"
    metrics_table([m for m, _ in files], out / "metrics.tsv", out / "summary.md", out / "metrics.png",
                  prediction_files=[p for _, p in files], baseline_metric_files=[tmp_path / "baseline_metrics.tsv"])
    pooled = pd.read_csv(out / "metrics.tsv", sep="\t").query("fold == 0").set_index("model")
    assert sorted(pooled.index) == ["googlenet", "svmloso"]
    assert (pooled.loc["googlenet", "n_subjects"], pooled.loc["googlenet", "auc"]) == (2, 1.0)
    assert pooled.loc["svmloso", "n_subjects"] == 9


def test_pooled_loso_row_equals_a_hand_computation_beside_the_fold_rows(tmp_path):
    classes = ["HC", "migraine"]
    # four one-subject folds: HC 0.2 (right), HC 0.7 (wrong), migraine 0.9 (right), migraine 0.6 (right)
    folds = [("sub-a", 0, 0.2), ("sub-b", 0, 0.7), ("sub-c", 1, 0.9), ("sub-d", 1, 0.6)]
    files = [_loso_fold(tmp_path, k, pid, y, [1 - p, p], classes, learned=k != 2)
             for k, (pid, y, p) in enumerate(folds, start=1)]
    out = tmp_path / "out"
    metrics_table([m for m, _ in files], out / "metrics.tsv", out / "summary.md", out / "metrics.png",
                  prediction_files=[p for _, p in files])
    merged = pd.read_csv(out / "metrics.tsv", sep="\t")
    pooled = merged[merged["fold"] == 0]
    assert len(pooled) == 1 and len(merged) == 1 + 4 * 2  # the pooled row beside every fold's test and val rows
    row = pooled.iloc[0]
    # tp = 2 (c, d), fp = 1 (b), tn = 1 (a), fn = 0
    assert (row.tp, row.fp, row.tn, row.fn, row.n_subjects) == (2, 1, 1, 0, 4)
    assert row.accuracy == pytest.approx(3 / 4) and row.precision == pytest.approx(2 / 3)
    assert row.sensitivity == pytest.approx(1.0) and row.specificity == pytest.approx(1 / 2)
    assert row.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    # AUC: migraine scores (0.9, 0.6) against HC scores (0.2, 0.7): 3 of 4 pairs ordered right
    assert row.auc == pytest.approx(3 / 4)
    assert (row.n_folds, row.n_learned, row.split) == (4, 3, "test")
    assert merged[(merged["fold"] > 0) & (merged["split"] == "test")]["auc"].isna().all()  # one subject: no AUC
    text = (out / "summary.md").read_text()
    assert "## test, pooled over folds" in text and "| rfcs | three | googlenet | 3 / 4 ⚠ | 4 | 75.00% |" in text
    with pytest.raises(ValueError, match="tested in several folds"):
        pooled_test_metrics(pd.DataFrame({"participant_id": ["sub-a", "sub-a"], "fold": [1, 2], "split": "test",
                                          "class_index": [0, 0], "prob_HC": 0.5, "prob_migraine": 0.5}),
                            classes, task="t", model="m")


def test_folds_with_one_test_subject_per_class_get_a_pooled_auc_beside_their_zero_or_one_aucs(tmp_path):
    # the demo's balanced split: each fold tests one control and one patient, so its AUC is 0 or 1; the pooled
    # row ranks every test patient against every test control
    classes = ["HC", "migraine"]
    tests = [(0.30, 0.60), (0.45, 0.55), (0.52, 0.50)]  # (control, patient) probability of migraine per fold
    files = []
    for fold, (hc, patient) in enumerate(tests, start=1):
        subjects = pd.DataFrame({"participant_id": [f"sub-hc{fold}", f"sub-mig{fold}", "sub-v"],
                                 "split": ["test", "test", "val"], "class_index": [0, 1, 0],
                                 "prob_HC": [1 - hc, 1 - patient, 0.5], "prob_migraine": [hc, patient, 0.5]})
        files.append(_fold_with_predictions(tmp_path, fold, subjects, classes, task="migraine", model="cnndemo", source="T1w"))
    out = tmp_path / "out"
    metrics_table([m for m, _ in files], out / "metrics.tsv", out / "summary.md", out / "metrics.png",
                  prediction_files=[p for _, p in files])
    merged = pd.read_csv(out / "metrics.tsv", sep="\t")
    folds = merged[(merged["split"] == "test") & (merged["fold"] > 0)]
    assert folds["auc"].tolist() == [1.0, 1.0, 0.0]
    pooled = merged[merged["fold"] == 0].iloc[0]
    # patients 0.60, 0.55, 0.50 against controls 0.30, 0.45, 0.52: 8 of 9 pairs ordered right (0.50 < 0.52)
    assert pooled.auc == pytest.approx(8 / 9) and pooled.n_subjects == 6
    summary = (out / "summary.md").read_text()
    assert "66.67 ± 57.74%" in summary.split("## val")[0]  # the fold mean, over 3 folds
    assert "| T1w | migraine | cnndemo | 3 / 3 | 6 |" in summary.split("## test, pooled over folds")[1]


def test_three_class_rows_carry_per_class_one_vs_rest_metrics_and_the_confusion_matrix():
    classes = ["HC", "MWoA", "MWA"]
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    subjects = pd.DataFrame({"split": "test", "class_index": y, **{f"prob_{c}": proba[:, k] for k, c in enumerate(classes)}})
    row = fold_metrics(subjects, classes, task="three", model="m", fold=1).iloc[0]
    pred = proba.argmax(1)
    per_class = json.loads(row["per_class"])
    assert list(per_class) == classes
    for k, c in enumerate(classes):
        assert per_class[c]["precision"] == pytest.approx(skm.precision_score(y == k, pred == k, zero_division=0))
        assert per_class[c]["recall"] == pytest.approx(skm.recall_score(y == k, pred == k))
        assert per_class[c]["auc"] == pytest.approx(skm.roc_auc_score(y == k, proba[:, k])) and per_class[c]["n"] == 2
    assert row["auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert json.loads(row["confusion"]) == skm.confusion_matrix(y, pred).tolist()
