"""SPORE (Huang et al., "Predicting Execution Time of Computer Programs Using Sparse Polynomial
Regression", NIPS 2010): LASSO over polynomial terms of the features.

Features: ``log1p`` of the graph-level totals and per-family aggregates of
:mod:`perfcast.predictors.features` (the first ``N_AGGREGATE`` columns; the dataflow counts are
left to the trees, as their products would multiply the terms many times over); columns
constant in training are dropped, and so is a column whose correlation with an earlier kept one
exceeds ``1 - 1e-9`` (``flops`` when it is twice ``macs``), so each selected term names one
quantity. The kept columns are standardised and every monomial of total degree 1 to ``degree``
(products with repetition: squares, pairwise products, ...) is a term; terms are standardised too.
The model is ``log(target) = b_0 + sum_j b_j term_j`` fitted by the LASSO

    ``min (1 / 2n) ||log y - b_0 - X b||^2 + alpha ||b||_1``

with cyclic coordinate descent on the Gram matrix, restricted to the active set and grown by the
KKT conditions (the strategy of glmnet), along a path of ``n_alphas`` values from the smallest
``alpha`` that zeroes every term down to ``eps`` times it. ``alpha`` is the path value with the
lowest mean squared log error in ``folds``-fold cross-validation on the training set.

The selected terms and their coefficients (in original, unstandardised term units) are written
into ``predictor.json`` as text as well as kept as arrays.
"""

from __future__ import annotations

import itertools
import json
from typing import Mapping

import numpy as np

from perfcast.errors import UsageError
from perfcast.predictors.base import Predictor, _log_features, register_predictor
from perfcast.predictors.features import COLUMNS, N_AGGREGATE, GraphStats

_LABEL_FLOOR = 1e-12
_DUPLICATE_CORRELATION = 1.0 - 1e-9
_TOL = 1e-7
_ROUND = 2
_MAX_ROUNDS = 200


# --- the L1 solver -------------------------------------------------------------------------------
def _soft(value: float, threshold: float) -> float:
    return float(np.sign(value) * max(abs(value) - threshold, 0.0))


def _sweeps(gram: np.ndarray, diag: np.ndarray, grad: np.ndarray, b: np.ndarray, order: list[int],
            alpha: float, count: int) -> bool:
    """Up to ``count`` coordinate-descent sweeps over ``order`` (``b`` and ``grad`` in place);
    True once the largest change of a sweep is below the tolerance."""
    for _ in range(count):
        biggest = 0.0
        for j in order:
            new = _soft(grad[j] + diag[j] * b[j], alpha) / diag[j]
            delta = new - b[j]
            if delta != 0.0:
                grad -= gram[:, j] * delta
                b[j] = new
                biggest = max(biggest, abs(delta) * np.sqrt(diag[j]))
        if biggest < _TOL:
            return True
    return False


def _polish(gram: np.ndarray, corr: np.ndarray, b: np.ndarray, alpha: float) -> None:
    """Move ``b`` toward the exact solution on its support with its signs kept (the stationarity
    condition ``G_AA b_A = c_A - alpha sign(b_A)``), stopping where a coefficient first reaches
    zero (that one leaves the support), in place. The objective decreases along this segment."""
    support = np.flatnonzero(b)
    if support.size == 0:
        return
    current = b[support]
    signs = np.sign(current)
    exact = np.linalg.lstsq(gram[np.ix_(support, support)], corr[support] - alpha * signs, rcond=None)[0]
    flipped = np.sign(exact) != signs
    if not flipped.any():
        b[support] = exact
        return
    steps = current[flipped] / (current[flipped] - exact[flipped])
    first = int(np.argmin(steps))
    b[support] = current + steps[first] * (exact - current)
    b[support[np.flatnonzero(flipped)[first]]] = 0.0


def lasso_path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Coefficients ``(len(alphas), terms)`` of ``min (1/2n)||y - x b||^2 + alpha ||b||_1`` for
    centred ``x`` and ``y`` (no intercept), each solution starting from the previous one.

    Coordinate descent runs on the active set in rounds of ``_ROUND`` sweeps; after each round the
    support's exact solution is taken when sign-consistent, and inactive terms that violate the
    KKT condition ``|c_j - (G b)_j| <= alpha`` join the active set until none does."""
    n, p = x.shape
    gram = x.T @ x / n
    corr = x.T @ y / n
    diag = np.maximum(np.diag(gram), 1e-300)
    b = np.zeros(p)
    out = np.zeros((len(alphas), p))
    for row, alpha in enumerate(alphas):
        active = set(np.flatnonzero(b).tolist())
        for _ in range(_MAX_ROUNDS):
            grad = corr - gram @ b
            converged = _sweeps(gram, diag, grad, b, sorted(active), float(alpha), _ROUND)
            if not converged:
                _polish(gram, corr, b, float(alpha))
                continue
            violators = set(np.flatnonzero(np.abs(corr - gram @ b) > alpha * (1 + 1e-9)).tolist()) - active
            if not violators:
                break
            active |= violators
        out[row] = b
    return out


def alpha_grid(x: np.ndarray, y: np.ndarray, n_alphas: int, eps: float) -> np.ndarray:
    top = max(float(np.max(np.abs(x.T @ y))) / len(y), 1e-12)
    return np.geomspace(top, top * eps, n_alphas)


# --- polynomial terms ------------------------------------------------------------------------------
def _base_columns(z: np.ndarray) -> np.ndarray:
    """Indices of columns that vary and are not (near-)copies of an earlier kept column."""
    varying = np.flatnonzero(z.std(axis=0) > 1e-9)
    if varying.size == 0:
        return varying
    corr = np.abs(np.corrcoef(z[:, varying], rowvar=False).reshape(varying.size, varying.size))
    kept: list[int] = []
    for i in range(varying.size):
        if all(corr[i, k] < _DUPLICATE_CORRELATION for k in kept):
            kept.append(i)
    return varying[kept]


def _monomials(n_base: int, degree: int) -> list[tuple[int, ...]]:
    return [m for d in range(1, degree + 1) for m in itertools.combinations_with_replacement(range(n_base), d)]


def _terms(zs: np.ndarray, monomials: list[tuple[int, ...]]) -> np.ndarray:
    if not monomials:
        return np.zeros((zs.shape[0], 0))
    return np.column_stack([np.prod(zs[:, list(m)], axis=1) for m in monomials])


def _term_name(monomial: tuple[int, ...], base: np.ndarray) -> str:
    return " * ".join(f"z({COLUMNS[int(base[i])]})" for i in monomial)


@register_predictor("spore")
class SparsePolynomial(Predictor):
    """LASSO over degree-``degree`` monomials of standardised log features, predicting log(target)."""

    def __init__(self, degree: int = 2, folds: int = 5, n_alphas: int = 20, eps: float = 1e-3) -> None:
        self.degree = degree
        self.folds = folds
        self.n_alphas = n_alphas
        self.eps = eps

    def _check_params(self) -> None:
        for name, low, high in (("degree", 1, 3), ("folds", 2, 20), ("n_alphas", 1, 1000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UsageError(name, f"must be an integer in [{low}, {high}], not {value!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0 < self.eps < 1:
            raise UsageError("eps", f"must be in (0, 1), not {self.eps!r}")

    # -- design ---------------------------------------------------------------------------------------
    def _design(self, z: np.ndarray) -> dict:
        """Standardisation and terms learned from training log-features ``z``."""
        base = _base_columns(z[:, :N_AGGREGATE])
        mean, scale = z[:, base].mean(axis=0), z[:, base].std(axis=0)
        monomials = _monomials(base.size, self.degree)
        raw = _terms((z[:, base] - mean) / scale, monomials)
        t_mean, t_scale = raw.mean(axis=0), raw.std(axis=0)
        t_scale[t_scale < 1e-12] = np.inf  # a constant term (a square of a two-valued column) drops out
        return {"base": base, "mean": mean, "scale": scale, "monomials": monomials,
                "t_mean": t_mean, "t_scale": t_scale, "x": (raw - t_mean) / t_scale}

    def _path(self, z: np.ndarray, ly: np.ndarray, alphas: np.ndarray | None = None):
        d = self._design(z)
        centred = ly - ly.mean()
        if alphas is None:
            alphas = alpha_grid(d["x"], centred, self.n_alphas, float(self.eps))
        return d, alphas, lasso_path(d["x"], centred, alphas)

    def _choose_alpha(self, z: np.ndarray, ly: np.ndarray, alphas: np.ndarray) -> float:
        n = len(ly)
        k = min(self.folds, n)
        fold = np.random.default_rng(0).permutation(n) % k
        errors = np.zeros(len(alphas))
        for f in range(k):
            held, rest = fold == f, fold != f
            if rest.sum() < 2:
                continue
            d, _, coefs = self._path(z[rest], ly[rest], alphas)
            x_held = self._apply(d, z[held])
            pred = ly[rest].mean() + x_held @ coefs.T
            errors += ((pred - ly[held, None]) ** 2).sum(axis=0)
        return float(alphas[int(np.argmin(errors))])

    @staticmethod
    def _apply(d: Mapping, z: np.ndarray) -> np.ndarray:
        base = np.asarray(d["base"], int)
        raw = _terms((z[:, base] - d["mean"]) / d["scale"], d["monomials"])
        return (raw - d["t_mean"]) / d["t_scale"]

    # -- hooks ----------------------------------------------------------------------------------------
    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        z = _log_features(stats)
        ly = np.log(np.maximum(y, _LABEL_FLOOR))
        d, alphas, _ = self._path(z, ly)
        alpha = self._choose_alpha(z, ly, alphas)
        coef = lasso_path(d["x"], ly - ly.mean(), alphas[alphas >= alpha])[-1]
        selected = np.flatnonzero(coef)
        # back to raw (standardised-base) term units: log y = intercept + sum w_j raw_j
        weights = coef[selected] / d["t_scale"][selected]
        intercept = float(ly.mean() - weights @ d["t_mean"][selected])
        monomials = [d["monomials"][j] for j in selected]
        terms = [{"term": _term_name(m, d["base"]), "coef": float(w)} for m, w in zip(monomials, weights)]
        width = max(self.degree, 1)
        return {
            "base": d["base"].astype(float), "mean": d["mean"], "scale": d["scale"],
            "monomials": np.array([list(m) + [-1] * (width - len(m)) for m in monomials], float).reshape(-1, width),
            "weights": weights, "intercept": np.array([intercept]), "alpha": np.array([alpha]),
            "n_terms": np.array([float(len(d["monomials"]))]),
            "terms": json.dumps({"intercept": intercept, "alpha": alpha, "terms": terms}),
        }

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        z = _log_features(stats)
        base = np.asarray(model["base"], int)
        zs = (z[:, base] - model["mean"]) / model["scale"]
        width = max(self.degree, 1)
        monomials = [tuple(int(i) for i in row if i >= 0) for row in np.asarray(model["monomials"]).reshape(-1, width)]
        return np.exp(float(model["intercept"][0]) + _terms(zs, monomials) @ model["weights"])

    def selected_terms(self, target: str = "latency_ms") -> list[tuple[str, float]]:
        """``(term, coefficient)`` pairs kept by the LASSO for ``target`` (``z(c)`` is the
        standardised ``log1p`` of feature column ``c``)."""
        self._fitted()
        if target not in self.models_:
            raise UsageError("target", f"no model fitted for {target!r}")
        return [(t["term"], t["coef"]) for t in json.loads(self.models_[target]["terms"])["terms"]]
