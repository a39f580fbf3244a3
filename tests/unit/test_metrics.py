"""overseer.metrics against scikit-learn and against counts worked out by hand."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from overseer.metrics import classification_report, probability_scores, write_report

NAMES = ["A", "B", "C", "D"]


@pytest.fixture
def labels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    y_pred[y_true == 3] = 0  # class D is never predicted: precision 0/0 must become 0
    return y_true, y_pred


def test_matches_sklearn(labels: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, y_pred = labels
    report = classification_report(y_true, y_pred, NAMES)
    expected = sk_report(y_true, y_pred, labels=range(4), target_names=NAMES, output_dict=True, zero_division=0)
    np.testing.assert_array_equal(report.confusion, sk_confusion(y_true, y_pred, labels=range(4)))
    for name in NAMES:
        row = report.per_class.loc[name]
        assert row["precision"] == pytest.approx(expected[name]["precision"])
        assert row["recall"] == pytest.approx(expected[name]["recall"])
        assert row["f1"] == pytest.approx(expected[name]["f1-score"])
        assert row["support"] == expected[name]["support"]
    for key in ("precision", "recall"):
        assert report.macro[key] == pytest.approx(expected["macro avg"][key])
        assert report.weighted[key] == pytest.approx(expected["weighted avg"][key])
    assert report.macro["f1"] == pytest.approx(expected["macro avg"]["f1-score"])
    assert report.weighted["f1"] == pytest.approx(expected["weighted avg"]["f1-score"])
    assert report.accuracy == pytest.approx(expected["accuracy"])
    assert report.per_class.loc["D", "precision"] == 0.0


def test_one_vs_rest_rates_by_hand() -> None:
    # true:  A A A B B C ; pred: A A B B C C
    report = classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["A", "B", "C"])
    a, b = report.per_class.loc["A"], report.per_class.loc["B"]
    assert (a["tp"], a["fp"], a["fn"], a["tn"]) == (2, 0, 1, 3)
    assert a["specificity"] == 1.0 and a["type_i_error"] == 0.0
    assert a["type_ii_error"] == pytest.approx(1 / 3)
    assert (b["tp"], b["fp"], b["fn"], b["tn"]) == (1, 1, 1, 3)
    assert b["accuracy"] == pytest.approx(4 / 6)
    assert b["specificity"] == pytest.approx(3 / 4) and b["type_i_error"] == pytest.approx(1 / 4)
    assert report.macro["specificity"] == pytest.approx(np.mean(report.per_class["specificity"]))
    assert report.accuracy == pytest.approx(4 / 6)


def test_false_inferences_name_items_and_confidence() -> None:
    report = classification_report(
        [0, 1, 1], [0, 0, 1], ["A", "B"], confidence=[0.9, 0.6, 0.8], item_ids=["x", "y", "z"]
    )
    fi = report.false_inferences
    assert fi["misclassified"] == [{"item": "y", "true_class": "B", "predicted_class": "A", "confidence": 0.6}]
    assert fi["false_positive"]["A"] == [{"item": "y", "confidence": 0.6}]
    assert fi["false_negative"]["B"] == [{"item": "y", "confidence": 0.6}]
    assert fi["false_positive"]["B"] == [] and fi["false_negative"]["A"] == []


def test_per_class_values_are_scikit_learns_exactly(labels: tuple[np.ndarray, np.ndarray]) -> None:
    # one definition: the report's precision, recall, F1 and support are scikit-learn's, bit for bit
    y_true, y_pred = labels
    report = classification_report(y_true, y_pred, NAMES)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=range(4), average=None, zero_division=0
    )
    np.testing.assert_array_equal(report.per_class["precision"].to_numpy(), precision)
    np.testing.assert_array_equal(report.per_class["recall"].to_numpy(), recall)
    np.testing.assert_array_equal(report.per_class["f1"].to_numpy(), f1)
    np.testing.assert_array_equal(report.per_class["support"].to_numpy(), support)
    assert report.macro["f1"] == float(np.mean(f1))


def test_a_class_absent_from_truth_and_prediction_keeps_its_row() -> None:
    # C never occurs: its row is all zeros (0/0 -> 0) and it still counts in the macro average
    report = classification_report([0, 0, 1, 1], [0, 1, 1, 1], ["A", "B", "C"])
    assert list(report.per_class.index) == ["A", "B", "C"]
    assert report.confusion.shape == (3, 3) and report.confusion[2].sum() == report.confusion[:, 2].sum() == 0
    c = report.per_class.loc["C"]
    assert (c["support"], c["tp"], c["fp"], c["fn"], c["tn"]) == (0, 0, 0, 0, 4)
    assert c["precision"] == c["recall"] == c["f1"] == c["type_ii_error"] == 0.0
    assert c["specificity"] == 1.0 and c["accuracy"] == 1.0
    f1_a, f1_b = 2 / 3, 0.8  # A: P 1, R 1/2; B: P 2/3, R 1
    assert report.macro["f1"] == pytest.approx((f1_a + f1_b + 0.0) / 3)
    assert report.weighted["f1"] == pytest.approx((2 * f1_a + 2 * f1_b) / 4)
    assert report.accuracy == pytest.approx(3 / 4)


def test_zero_division_is_zero_without_warnings() -> None:
    # B is never predicted: its precision is 0/0, which is 0 (and its F1 with it), without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_report([0, 0, 1], [0, 0, 0], ["A", "B"])
    b = report.per_class.loc["B"]
    assert (b["precision"], b["recall"], b["f1"]) == (0.0, 0.0, 0.0)
    assert report.per_class.loc["A", "precision"] == pytest.approx(2 / 3)


def test_no_items_is_an_all_zero_report() -> None:
    report = classification_report([], [], ["A", "B"])
    assert report.confusion.shape == (2, 2) and report.confusion.sum() == 0
    assert report.accuracy == 0.0 and report.macro["f1"] == 0.0 and report.weighted["f1"] == 0.0
    assert report.per_class["support"].tolist() == [0, 0] and report.false_inferences["misclassified"] == []
    assert report.per_class["tp"].dtype == np.int64 and report.per_class["support"].dtype == np.int64


def test_rejects_labels_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        classification_report([0, 2], [0, 1], ["A", "B"])


def test_write_report_files(tmp_path, labels) -> None:
    y_true, y_pred = labels
    report = classification_report(y_true, y_pred, NAMES)
    paths = write_report(report, tmp_path)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(report.accuracy)
    assert summary["per_class"]["B"]["f1"] == pytest.approx(report.per_class.loc["B", "f1"])
    table = pd.read_csv(tmp_path / "per_class.csv", index_col=0)
    assert list(table.index[-2:]) == ["macro avg", "weighted avg"]
    confusion = pd.read_csv(tmp_path / "confusion_matrix.csv", index_col=0)
    np.testing.assert_array_equal(confusion.to_numpy(), report.confusion)
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert len(predictions) == len(y_true) and set(predictions.columns) >= {"actual", "predicted"}
    for key in ("confusion_matrix.png", "f1_per_class.png", "class_distribution.png", "fp_fn_per_class.png"):
        assert paths[key].stat().st_size > 1000
    assert not list(tmp_path.glob(".*")), "no temporary files left behind"


def test_probability_scores_against_definitions() -> None:
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=200)
    truth = np.array([rng.choice(3, p=p) for p in proba])  # calibrated by construction
    scores = probability_scores(truth, proba, bins=5)
    assert scores.log_loss == pytest.approx(log_loss(truth, proba, labels=[0, 1, 2]))
    assert scores.brier == pytest.approx(np.mean(((proba - np.eye(3)[truth]) ** 2).sum(axis=1)))
    table = scores.reliability
    assert table["count"].sum() == 200 and len(table) == 5
    conf, correct = proba.max(axis=1), proba.argmax(axis=1) == truth
    by_hand = sum(
        (m := (conf > lo) & (conf <= hi)).sum() / 200 * abs(correct[m].mean() - conf[m].mean())
        for lo, hi in zip(table["low"], table["high"], strict=True)
        if ((conf > lo) & (conf <= hi)).any()
    )
    assert scores.expected_calibration_error == pytest.approx(by_hand)
    assert 0 <= scores.expected_calibration_error < 0.15  # sampled from its own probabilities


def test_probability_scores_of_a_sure_and_right_model_and_of_a_sure_and_wrong_one() -> None:
    right = probability_scores([0, 1, 1], np.eye(2)[[0, 1, 1]])
    assert right.log_loss == pytest.approx(0, abs=1e-12) and right.brier == 0 and right.expected_calibration_error == 0
    wrong = probability_scores([1, 0], np.eye(2)[[0, 1]])
    assert wrong.brier == 2 and wrong.expected_calibration_error == 1 and wrong.log_loss > 30
    with pytest.raises(ValueError, match="n × k"):
        probability_scores([0, 1], np.ones((3, 2)) / 2)
