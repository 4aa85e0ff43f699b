import math

import numpy as np
import pytest

from perfcast.evaluation import accuracy_within, collapse_by_hash, coverage, kendall, mape, rmse, spearman, summarize

TRUE = [10.0, 20.0, 40.0, 50.0]
PRED = [10.8, 19.5, 40.0, 60.0]  # relative errors 8%, 2.5%, 0%, 20%


def test_point_metrics_exact():
    assert mape(TRUE, PRED) == pytest.approx(7.625)
    assert rmse(TRUE, PRED) == pytest.approx(math.sqrt((0.64 + 0.25 + 0 + 100) / 4))
    assert accuracy_within(TRUE, PRED, 5) == 0.5
    assert accuracy_within(TRUE, PRED, 10) == 0.75


def test_missing_labels_are_dropped():
    assert mape([*TRUE, np.nan], [*PRED, 5.0]) == pytest.approx(7.625)
    assert coverage([1, np.nan, 3], [0, 0, 4], [2, 0, 5]) == 0.5


def test_duplicates_collapse_before_ranking():
    # "c" appears twice: its labels average to 4 and its predictions to 2
    hashes = ["a", "b", "c", "c", "d"]
    t, p = collapse_by_hash([1, 2, 3, 5, 10], [3, 1, 2, 2, 4], hashes)
    assert t.tolist() == [1, 2, 4, 10] and p.tolist() == [3, 1, 2, 4]
    # ranks 1234 vs 3124: sum d^2 = 6 -> rho = 1 - 6*6/(4*15); 4 concordant, 2 discordant pairs
    assert spearman([1, 2, 3, 5, 10], [3, 1, 2, 2, 4], hashes) == pytest.approx(0.4)
    assert kendall([1, 2, 3, 5, 10], [3, 1, 2, 2, 4], hashes) == pytest.approx(1 / 3)
    # counted as five networks the answer differs
    assert kendall([1, 2, 3, 5, 10], [3, 1, 2, 2, 4], list("abcde")) != pytest.approx(1 / 3)


def test_ties_use_average_ranks_and_tau_b():
    hashes = list("abcd")
    assert spearman([1, 2, 3, 4], [1, 1, 2, 3], hashes) == pytest.approx(math.sqrt(0.9))
    assert kendall([1, 2, 3, 4], [1, 1, 2, 3], hashes) == pytest.approx(5 / math.sqrt(30))
    assert kendall([1, 2, 3, 4], [4, 3, 2, 1], hashes) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1], [2, 3], ["a", "a"]))


def test_coverage_is_inclusive():
    assert coverage([1, 2, 3, 4], [0, 2.5, 3, 0], [2, 3, 3, 3]) == 0.5


def test_summarize_keys_and_values():
    s = summarize(TRUE, PRED, list("abcd"), lo=[9, 19, 41, 45], hi=[11, 21, 42, 55])
    assert s == {
        "n": 4, "n_distinct": 4, "mape_pct": pytest.approx(7.625),
        "rmse": pytest.approx(math.sqrt(100.89 / 4)), "acc_5pct": 0.5, "acc_10pct": 0.75,
        "spearman": pytest.approx(1.0), "kendall": pytest.approx(1.0), "coverage": 0.75,
    }
    assert "coverage" not in summarize(TRUE, PRED, list("abcd"))
