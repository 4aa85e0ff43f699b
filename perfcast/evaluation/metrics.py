"""Accuracy metrics of predictions: pure functions of arrays.

Conventions: ``mape`` is in percent; ``accuracy_within(pct)`` is the fraction of predictions whose
relative error is at most ``pct`` percent; ``spearman`` and ``kendall`` rank DISTINCT networks: rows
sharing a content hash are collapsed to one, their true and predicted values averaged
(NAS-Bench-201's 15,625 strings are 6,466 networks). Kendall's is tau-b (ties in either ranking
counted as in scipy.stats.kendalltau); Spearman's is Pearson's correlation of average ranks.
Rows whose true value is NaN (no label) are dropped by every metric.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=float).reshape(-1)
    p = np.asarray(y_pred, dtype=float).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values, y_pred {p.size}")
    keep = ~np.isnan(t)
    return t[keep], p[keep]


def mape(y_true, y_pred) -> float:
    """Mean absolute percentage error, in percent."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t) / np.abs(t)) * 100.0)


def rmse(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def accuracy_within(y_true, y_pred, pct: float) -> float:
    """Fraction of predictions within ``pct`` percent of the truth (``pct=10`` gives ±10% accuracy)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t) <= pct / 100.0 * np.abs(t)))


def collapse_by_hash(y_true, y_pred, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """One (mean true, mean predicted) pair per distinct hash, in order of first appearance."""
    t = np.asarray(y_true, dtype=float).reshape(-1)
    p = np.asarray(y_pred, dtype=float).reshape(-1)
    h = np.asarray(list(hashes), dtype=object)
    if not (t.size == p.size == h.size):
        raise ValueError(f"{t.size} true values, {p.size} predictions, {h.size} hashes")
    keep = ~np.isnan(t)
    t, p, h = t[keep], p[keep], h[keep]
    _, first, inverse = np.unique(h.astype(str), return_index=True, return_inverse=True)
    counts = np.bincount(inverse)
    order = np.argsort(first)
    return (np.bincount(inverse, t) / counts)[order], (np.bincount(inverse, p) / counts)[order]


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(1, x.size + 1)
    _, inverse = np.unique(x, return_inverse=True)
    return (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(y_true, y_pred, hashes: Sequence[str]) -> float:
    """Spearman's rho over distinct networks (NaN with fewer than two)."""
    t, p = collapse_by_hash(y_true, y_pred, hashes)
    if t.size < 2:
        return float("nan")
    return _pearson(_average_ranks(t), _average_ranks(p))


def kendall(y_true, y_pred, hashes: Sequence[str]) -> float:
    """Kendall's tau-b over distinct networks (NaN with fewer than two)."""
    t, p = collapse_by_hash(y_true, y_pred, hashes)
    n = t.size
    if n < 2:
        return float("nan")
    concordant = ties_t = ties_p = total = 0.0
    for i in range(n - 1):
        st = np.sign(t[i + 1:] - t[i])
        sp = np.sign(p[i + 1:] - p[i])
        concordant += float((st * sp).sum())
        ties_t += float((st == 0).sum())
        ties_p += float((sp == 0).sum())
        total += n - 1 - i
    denom = np.sqrt((total - ties_t) * (total - ties_p))
    return float(concordant / denom) if denom > 0 else float("nan")


def coverage(y_true, lo, hi) -> float:
    """Fraction of labelled rows whose truth lies in ``[lo, hi]``."""
    t = np.asarray(y_true, dtype=float).reshape(-1)
    lo = np.asarray(lo, dtype=float).reshape(-1)
    hi = np.asarray(hi, dtype=float).reshape(-1)
    keep = ~np.isnan(t)
    return float(np.mean((t[keep] >= lo[keep]) & (t[keep] <= hi[keep])))


def summarize(y_true, y_pred, hashes: Sequence[str], lo=None, hi=None) -> dict:
    """Every metric of one target as a JSON-ready dict (``coverage`` when an interval is given)."""
    out = {
        "n": int(np.sum(~np.isnan(np.asarray(y_true, dtype=float)))),
        "n_distinct": int(collapse_by_hash(y_true, y_pred, hashes)[0].size),
        "mape_pct": mape(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "acc_5pct": accuracy_within(y_true, y_pred, 5),
        "acc_10pct": accuracy_within(y_true, y_pred, 10),
        "spearman": spearman(y_true, y_pred, hashes),
        "kendall": kendall(y_true, y_pred, hashes),
    }
    if lo is not None and hi is not None:
        out["coverage"] = coverage(y_true, lo, hi)
    return out
