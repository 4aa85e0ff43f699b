"""Transfer from other devices' predictors: a few measurements of a new device map a known
device's predictions onto it (the few-shot idea of HELP, Lee et al., NeurIPS 2021, reduced to its
simplest form: devices rank networks alike, so a known device's predictions are a strong feature).

For every target and every candidate (a base predictor and one of its targets: the same target
where some base has it, else any), the measurements are fitted by a log-linear map
``log y = c + b log base(x)``, the exponent ``b`` shrunk towards 1 by a ridge penalty worth
``prior_rows`` rows, and candidates are ranked by the leave-one-out mean squared log error of
that map. Then, with ``stack`` (the default) and two candidates or more, the new device is a
non-negative combination of every candidate in log space, ``log y = c + sum_j w_j log base_j(x)``:
non-negative least squares on the centred logs with a ridge penalty ``STACK_RIDGE`` per row on
the weights (a device that ranks networks like a mix of known devices is covered, and the
weights of bases that add nothing are exactly zero). Without ``stack``, or when every weight is
zero, the ``blend`` best candidates are averaged in log space, weighted by the inverse of their
error. (Leaving one HW-NAS-Bench device out, shipped devices as bases, K = 20 NAS-Bench-201
networks, three draws: Spearman of held-out networks on the Jetson TX2 rose from 0.68 with the
blend of two to 0.78 with the stack, Raspberry Pi 4 from 0.94 to 0.95.)
With ``correct`` (the default) and at least ``CORRECT_MIN_ROWS`` measurements, what the bases
miss is then learned from the network itself: a ridge map from the standardised ``log1p`` summary
features (:func:`perfcast.predictors.base.domain_features`) to the residual log latency, its penalty
chosen by exact leave-one-out error among ``RIDGE_GRID``, and kept only when that error is below
the residual's mean square (a device whose costs no base shares, such as the Jetson TX2 of
HW-NAS-Bench, gets a per-feature correction; one the bases explain gets none). Leaving each
device of the public data out in turn (``perfcast evaluate --data shared --protocol b``, three
draws, mean over the 49 measured latency settings), the correction moved K = 10 from Spearman
0.928 / MAPE 6.45 % to 0.932 / 6.27 %, K = 20 from MAPE 6.07 % to 5.38 %, and the TX2's Spearman
at K = 20 from 0.43 to 0.72.
With ``own`` (by default :data:`OWN_METHODS`: PALEO and the operation-wise predictor; ``()`` turns
it off) and at least ``OWN_MIN_ROWS`` measurements, single-device methods fitted on the
measurements themselves join the candidates: a device whose costs no base shares may follow its
own per-operator costs. Their column is their out-of-fold prediction of each measured row (from a
fit without the row's fold; leave-one-out up to ``OWN_FOLDS`` rows), so that the map and the stack
see how they predict networks they were not fitted on (stacked generalisation, Wolpert 1992); they
stay only when the stack with them has a lower leave-one-out error than the stack of the bases
alone (:func:`stack_loo_error`). Over the 49 measured latency settings of the public data (``perfcast
evaluate --data shared --protocol b``: leave one device out, three draws), they moved the mean
Spearman at K = 10 from 0.932 to 0.935 and the MAPE from 6.26 % to 5.93 %, at K = 20 from
0.941 / 5.35 % to 0.943 / 5.07 % (the Jetson TX2 at K = 10 from 0.60 to 0.67; the Edge TPU down from
0.91 to 0.89); adding FLOPs or the kernel-level predictor to them changed no mean by more than
0.001 / 0.03 % (leave-one-out columns, point predictions). A fit costs ``OWN_FOLDS + 1`` fits per
method, and the conformal leave-one-out refits repeat that once per row (100 rows: about a minute).
With ``fold`` (the default) and measured graphs that folding changes, each base is also read on the
folded graphs (:func:`perfcast.analysis.liveness.folded_graph`: what a runtime that folds constants
and drops dead code still runs) and on the pruned graphs (:func:`perfcast.analysis.liveness.pruned_graph`:
dead-code elimination alone), and the reading whose map has the lowest leave-one-out error replaces
the plain one when its errors are lower by more than one standard error of the paired difference
(:func:`clearly_better`): a base device that runs every operator can then predict a new device that
folds, where a NAS-Bench-201 cell's dead branches cost nothing. Over the 49 measured latency
settings (same protocol), the mean MAPE moved from 7.72 % to 7.43 % at K = 5 and from 5.07 % to
5.03 % at K = 20, K = 10 from 5.93 % to 5.94 % (Spearman 0.917 / 0.935 / 0.943 to 0.917 / 0.934 /
0.943); only HW-NAS-Bench devices changed (the Raspberry Pi 4 at K = 5 from 45.0 % to 30.6 %, the
Pixel 3's Spearman at K = 10 from 0.945 to 0.920). The pruned reading, of the bases here and of the
own methods (:func:`perfcast.predictors.base.device_reading`), then moved the mean MAPE at K = 20 from
5.03 % to 4.90 % and at K = 10 from 5.94 % to 5.84 % (Spearman 0.934 to 0.936): the Jetson TX2 of
HW-NAS-Bench (TensorRT, which drops unused layers but runs the convolutions of a branch fed by a
zero) at K = 20 from 22.9 % / 0.71 to 15.9 % / 0.83, while HELP's NAS-Bench-201 settings lost a
little at K = 10 (mean MAPE 4.81 % to 5.18 %) and none of FBNet or OFA changed.
Bases are passed to ``fit(graphs, targets, bases=[...])`` as data, not parameters. Without bases
the one candidate is a FLOPs-linear model (:mod:`perfcast.predictors.flops`) fitted on the same
rows, so ``get_predictor("transfer").fit(graphs, targets)`` works like any predictor.

The chosen bases' models are stored inside the transfer model (their registered name, parameters
as JSON text, and learned arrays and texts under ``b<j>:model:<key>``), so a saved transfer
predictor loads with :meth:`Predictor.load` alone. Its domain is the domain of the base chosen for
the first target, extended by the measured networks. Conformal residuals come from leave-one-out
refits (selection included) up to :data:`LOO_MAX_ROWS` rows, k-fold beyond; out of domain, the
widest of its own extrapolation residuals and those of the bases its map reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from perfcast.analysis.liveness import READINGS
from perfcast.errors import UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.base import (
    Predictor,
    changed_readings,
    conformal_quantile,
    domain_features,
    extend_domain,
    get_predictor,
    leave_one_out_residuals,
    nnls,
    reading_stats,
    register_predictor,
    stored_reading,
)
from perfcast.predictors.features import GraphStats, graph_stats
from perfcast.predictors.flops import FlopsLinear

LOO_MAX_ROWS = 100
OWN_CHOICES = ("flops", "paleo", "opwise", "kernel")  # cheap to refit once per fold
OWN_METHODS = ("paleo", "opwise")
OWN_MIN_ROWS = 5
OWN_FOLDS = 10
STACK_RIDGE = 0.01
_TINY = 1e-30
_SEP = ":"


# --- the log-linear map ------------------------------------------------------------------------
def fit_log_map(x: np.ndarray, t: np.ndarray, prior_rows: float) -> tuple[float, float]:
    """``(c, b)`` minimising ``sum (t - c - b x)^2 + lam (b - 1)^2`` with
    ``lam = prior_rows * var(x)``: the prior ``b = 1`` weighs like ``prior_rows`` rows."""
    xm, tm = float(x.mean()), float(t.mean())
    sxx = float(((x - xm) ** 2).sum())
    sxt = float(((x - xm) * (t - tm)).sum())
    lam = prior_rows * sxx / x.size
    b = (sxt + lam) / (sxx + lam) if sxx > 0 else 1.0
    return tm - b * xm, b


def loo_log_errors(x: np.ndarray, t: np.ndarray, prior_rows: float) -> np.ndarray:
    """Squared leave-one-out error of :func:`fit_log_map` on each row."""
    n = x.size
    errors = np.empty(n)
    for i in range(n):
        rest = np.arange(n) != i
        c, b = fit_log_map(x[rest], t[rest], prior_rows)
        errors[i] = t[i] - c - b * x[i]
    return errors ** 2


def loo_log_error(x: np.ndarray, t: np.ndarray, prior_rows: float) -> float:
    """Mean squared leave-one-out error of :func:`fit_log_map`."""
    return float(np.mean(loo_log_errors(x, t, prior_rows)))


def clearly_better(errors: np.ndarray, other: np.ndarray) -> bool:
    """Whether row errors ``errors`` are below ``other`` by more than one standard error of the mean
    paired difference (a few measurements rank two near-equal readings by chance)."""
    d = other - errors
    return d.size > 1 and float(d.mean()) > float(d.std(ddof=1)) / math.sqrt(d.size)


def stack_logs(x: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray] | None:
    """``(c, w)`` with ``w >= 0`` minimising ``|t - c - x w|^2 + STACK_RIDGE n |w|^2 var``, ``x`` the
    candidates' log predictions (one column each) and ``var`` their mean variance; None when every
    weight is zero."""
    mean = x.mean(axis=0)
    centred = x - mean
    n, m = centred.shape
    scale = math.sqrt(STACK_RIDGE * n * max(float(centred.var(axis=0).mean()), _TINY))
    w = nnls(np.vstack([centred, scale * np.eye(m)]), np.r_[t - t.mean(), np.zeros(m)])
    if not (w > 0).any():
        return None
    return float(t.mean() - mean @ w), w


def stack_loo_error(x: np.ndarray, t: np.ndarray) -> float:
    """Mean squared leave-one-out error of :func:`stack_logs` on the columns ``x`` (the mean of
    the other rows where every weight is zero)."""
    n = t.size
    errors = np.empty(n)
    for i in range(n):
        rest = np.arange(n) != i
        fitted = stack_logs(x[rest], t[rest])
        errors[i] = t[i] - (t[rest].mean() if fitted is None else fitted[0] + x[i] @ fitted[1])
    return float(np.mean(errors ** 2))


RIDGE_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # penalties per row, on standardised features
CORRECT_MIN_ROWS = 10


def residual_ridge(z: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A ridge map from the standardised features ``z`` to the residual ``e`` of the log map, with
    the penalty of least leave-one-out error (closed form through the hat matrix); ``(mean, scale,
    coef)``, or None when no penalty beats predicting no correction (mean square of ``e``)."""
    n = z.shape[0]
    mean, scale = z.mean(axis=0), z.std(axis=0)
    keep = scale > 1e-9
    if n < CORRECT_MIN_ROWS or not keep.any():
        return None
    zs = np.zeros_like(z)
    zs[:, keep] = (z[:, keep] - mean[keep]) / scale[keep]
    best, best_err = None, float(np.mean(e ** 2))
    gram = zs @ zs.T
    for lam in RIDGE_GRID:
        inv = np.linalg.inv(gram + lam * n * np.eye(n))
        hat = gram @ inv
        loo = (e - hat @ e) / np.maximum(1.0 - np.diag(hat), 1e-9)
        err = float(np.mean(loo ** 2))
        if err < best_err:
            best, best_err = zs.T @ (inv @ e), err
    if best is None:
        return None
    return mean, np.where(keep, scale, 1.0), np.where(keep, best, 0.0)


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(values, float), _TINY))


# --- embedded base models ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Candidate:
    """One base predictor's model of one target, as stored inside a transfer model."""

    index: int  # position in the bases given to fit; -1 for the internal FLOPs prior
    name: str
    params: dict
    target: str
    model: Mapping
    reading: int = 0  # the base predicts the graphs as given, folded or pruned (index in READINGS)

    def predict(self, stats: list[GraphStats]) -> np.ndarray:
        base = get_predictor(self.name, **self.params)
        return np.maximum(base.predict_model(self.target, self.model, reading_stats(stats, self.reading)), 0.0)

    def store(self, j: int) -> dict:
        out = {f"b{j}{_SEP}name": self.name, f"b{j}{_SEP}params": json.dumps(self.params, sort_keys=True),
               f"b{j}{_SEP}target": self.target, f"b{j}{_SEP}folded": np.array([float(self.reading)])}
        out.update({f"b{j}{_SEP}model{_SEP}{k}": v for k, v in self.model.items()})
        return out

    @staticmethod
    def restore(model: Mapping, j: int, index: int) -> "_Candidate":
        prefix = f"b{j}{_SEP}model{_SEP}"
        sub = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
        return _Candidate(index, str(model[f"b{j}{_SEP}name"]), json.loads(model[f"b{j}{_SEP}params"]),
                          str(model[f"b{j}{_SEP}target"]), sub, _stored_reading(model, j))


def _stored_reading(model: Mapping, j: int) -> int:
    """Which graphs candidate ``j`` of a stored transfer model reads (index in ``READINGS``; models
    saved before the folded readings have no such entry and read the graphs as given)."""
    return stored_reading(model.get(f"b{j}{_SEP}folded", 0.0))


def own_candidate(name: str, target: str, stats: list[GraphStats], y: np.ndarray) -> tuple[_Candidate, np.ndarray]:
    """The single-device method ``name`` fitted on every measured row, and its out-of-fold log
    predictions of those rows (each from a fit without its fold: row ``i`` is in fold
    ``i mod OWN_FOLDS``, so up to ``OWN_FOLDS`` rows this is leave-one-out): the column its map and
    the stack are fitted on, so that a method that fits its own rows closely is not preferred for it.
    Folds bound the cost at ``OWN_FOLDS + 1`` fits, which the conformal refits repeat once per row."""
    method = get_predictor(name)
    folds = np.arange(len(stats)) % OWN_FOLDS
    out = np.empty(len(stats))
    for f in np.unique(folds):
        rest = np.flatnonzero(folds != f)
        model = method.fit_model(target, [stats[k] for k in rest], y[rest])
        held = np.flatnonzero(folds == f)
        out[held] = method.predict_model(target, model, [stats[k] for k in held])
    model = method.fit_model(target, stats, y)
    return _Candidate(-1, name, method.get_params(), target, model), _log(np.maximum(out, 0.0))


def _base_candidates(bases: Sequence[Predictor], target: str) -> list[_Candidate]:
    """Every base's model of ``target`` (of any target where no base has it)."""
    pairs = [(i, b, t) for i, b in enumerate(bases) for t in b.targets_]
    same = [p for p in pairs if p[2] == target]
    return [_Candidate(i, b.name, b.get_params(), t, b.models_[t]) for i, b, t in (same or pairs)]


def check_bases(bases) -> list[Predictor]:
    if bases is None:
        return []
    if isinstance(bases, Predictor) or not isinstance(bases, Sequence):
        raise UsageError("bases", "must be a list of fitted predictors")
    for i, b in enumerate(bases):
        if not isinstance(b, Predictor) or not hasattr(b, "models_"):
            raise UsageError(f"bases[{i}]", f"is a {type(b).__name__}, not a fitted perfcast predictor")
    return list(bases)


# --- the transfer predictor ----------------------------------------------------------------------
@register_predictor("transfer")
class TransferPredictor(Predictor):
    """``y = exp(c) * base(x)^b`` per target from the best base predictor(s) (see module docstring)."""

    def __init__(self, prior_rows: float = 2.0, blend: int = 2, stack: bool = True, correct: bool = True,
                 own: tuple[str, ...] | list[str] = OWN_METHODS, fold: bool = True) -> None:
        self.prior_rows = prior_rows
        self.blend = blend
        self.stack = stack
        self.correct = correct
        self.own = tuple(own) if isinstance(own, (list, tuple)) else own
        self.fold = fold

    def _check_params(self) -> None:
        p = self.prior_rows
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < math.inf:
            raise UsageError("prior_rows", f"must be a number >= 0, not {p!r}")
        if isinstance(self.blend, bool) or not isinstance(self.blend, int) or self.blend < 1:
            raise UsageError("blend", f"must be an integer >= 1, not {self.blend!r}")
        for name in ("stack", "correct", "fold"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(name, f"must be true or false, not {getattr(self, name)!r}")
        if not isinstance(self.own, tuple) or any(m not in OWN_CHOICES for m in self.own):
            raise UsageError("own", f"must be a list of methods among {', '.join(OWN_CHOICES)}, not {self.own!r}")

    def fit(self, graphs: Sequence[Graph], targets: Mapping[str, Sequence[float]],
            kernel_profiles: Sequence[list[dict] | None] | None = None, *,
            bases: Sequence[Predictor] | None = None) -> "TransferPredictor":
        """Learn every labelled target from ``bases`` (fitted predictors of other devices);
        with no bases, from a FLOPs-linear model of the same rows. Kernel profiles are checked
        and not used."""
        checked = check_bases(bases)
        self._bases = checked
        try:
            super().fit(graphs, targets, kernel_profiles)
        finally:
            del self._bases
        first = self.models_[self.targets_[0]]
        index = int(first["base_index"][0])
        if index >= 0:
            self._extend_domain(checked[index], graphs)
        self._inherit_extrapolation(checked)
        return self

    def _inherit_extrapolation(self, bases: Sequence[Predictor]) -> None:
        """Per target, keep as out-of-domain residual set the widest (at 90 %) of its own and those
        of the bases its map reads: a network unlike every measured one is predicted through the
        bases' extrapolation, whose error the few measured networks cannot show."""
        for target, pairs in self.chosen_bases().items():
            sets = [self.ood_residuals_.get(target, np.zeros(0))]
            sets += [bases[i].ood_residuals_.get(t, np.zeros(0)) for i, t in pairs if i >= 0]
            self.ood_residuals_[target] = max(
                sets, key=lambda r: conformal_quantile(np.sort(r), 0.1) if r.size else 0.0)

    def _extend_domain(self, base: Predictor, graphs: Sequence[Graph]) -> None:
        self.domain_ = extend_domain(base.domain_, [graph_stats(g) for g in graphs])

    def _candidates(self, stats: list[GraphStats], y: np.ndarray, target: str) -> list[_Candidate]:
        if self._bases:
            return _base_candidates(self._bases, target)
        prior = FlopsLinear()
        return [_Candidate(-1, prior.name, prior.get_params(), target, prior._fit_target(target, stats, y))]

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        t = _log(y)
        scored = []
        readings = changed_readings(stats) if self._bases and self.fold else []
        for cand in self._candidates(stats, y, target):
            x = _log(cand.predict(stats))
            errors = loo_log_errors(x, t, self.prior_rows)
            read = []
            for reading in readings:
                other = replace(cand, reading=reading)
                x_other = _log(other.predict(stats))
                errors_other = loo_log_errors(x_other, t, self.prior_rows)
                read.append((float(errors_other.mean()), other, x_other, errors_other))
            if read:  # the best other reading of the base instead, where its map predicts clearly better
                _, other, x_other, errors_other = min(read, key=lambda r: r[0])
                if clearly_better(errors_other, errors):
                    cand, x, errors = other, x_other, errors_other
            scored.append((float(errors.mean()), len(scored), cand, x))
        n_bases = len(scored)
        if len(y) >= OWN_MIN_ROWS:
            for name in self.own:
                cand, x = own_candidate(name, target, stats, y)
                scored.append((loo_log_error(x, t, self.prior_rows), len(scored), cand, x))
        if self.stack and len(scored) > n_bases and \
                stack_loo_error(np.column_stack([s[3] for s in scored[:n_bases]]), t) <= \
                stack_loo_error(np.column_stack([s[3] for s in scored]), t):
            scored = scored[:n_bases]  # the other devices' stack alone predicts left-out rows as well
        scored.sort(key=lambda s: (s[0], s[1]))
        stacked = stack_logs(np.column_stack([s[3] for s in scored]), t) if self.stack and len(scored) > 1 else None
        if stacked is not None:
            c, w = stacked
            keep = np.flatnonzero(w > 0)
            chosen = [scored[j] for j in keep]
            # stored in the blend's form, sum_j weight_j (c_j + b_j x_j), with equal weights
            coef = np.array([[c, keep.size * w[j]] for j in keep])
            weight = np.full(keep.size, 1.0 / keep.size)
        else:
            chosen = scored[: self.blend]
            inverse = 1.0 / np.array([max(s[0], 1e-12) for s in chosen])
            coef = np.array([fit_log_map(s[3], t, self.prior_rows) for s in chosen])
            weight = inverse / inverse.sum()
        log_fit = sum(w * (c[0] + c[1] * s[3]) for w, c, s in zip(weight, coef, chosen))
        correction = residual_ridge(domain_features(stats), t - log_fit) if self.correct else None
        model: dict = {"weight": weight, "coef": coef,
                       "base_index": np.array([float(s[2].index) for s in chosen]),
                       "loo_log_mse": np.array([max(s[0], 1e-12) for s in chosen])}
        for j, s in enumerate(chosen):
            model.update(s[2].store(j))
        if correction is not None:
            model.update(zip(("corr_mean", "corr_scale", "corr_coef"), correction))
        return model

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        weights = np.asarray(model["weight"], float)
        coef = np.asarray(model["coef"], float).reshape(-1, 2)
        index = np.asarray(model["base_index"], float)
        log_pred = np.zeros(len(stats))
        for j, w in enumerate(weights):
            cand = _Candidate.restore(model, j, int(index[j]))
            log_pred += w * (coef[j, 0] + coef[j, 1] * _log(cand.predict(stats)))
        if "corr_coef" in model:
            z = (domain_features(stats) - np.asarray(model["corr_mean"])) / np.asarray(model["corr_scale"])
            log_pred += z @ np.asarray(model["corr_coef"], float)
        return np.exp(log_pred)

    def _cross_residuals(self, target: str, stats: list[GraphStats], y: np.ndarray,
                         profiles: list[list[dict] | None] | None = None) -> np.ndarray:
        if len(stats) > LOO_MAX_ROWS:
            return super()._cross_residuals(target, stats, y, profiles)
        return leave_one_out_residuals(self, target, stats, y)

    def chosen_bases(self) -> dict[str, list[tuple[int, str]]]:
        """Per target, the ``(index in bases, base target)`` pairs of the map (index -1: a method
        fitted on the measured rows themselves, see :meth:`chosen`)."""
        return {t: [(i, bt) for i, _, bt in triples] for t, triples in self.chosen().items()}

    def chosen(self) -> dict[str, list[tuple[int, str, str]]]:
        """Per target, the ``(index in bases, method, base target)`` of each candidate of the map;
        index -1 marks a method fitted on the measured rows (the FLOPs prior without bases, or
        one of ``own``)."""
        self._fitted()
        out = {}
        for target, model in self.models_.items():
            index = np.asarray(model["base_index"], float)
            out[target] = [(int(index[j]), str(model[f"b{j}{_SEP}name"]), str(model[f"b{j}{_SEP}target"]))
                           for j in range(index.size)]
        return out

    def chosen_readings(self) -> dict[str, list[str]]:
        """Per target and candidate of :meth:`chosen`, which graphs it predicts: ``"as given"``,
        ``"folded"`` or ``"pruned"`` (:data:`perfcast.analysis.liveness.READINGS`)."""
        self._fitted()
        return {target: [READINGS[_stored_reading(model, j)] for j in range(np.asarray(model["base_index"]).size)]
                for target, model in self.models_.items()}
