"""perfcast's own single-device predictor: the trees where a network is like the training networks,
and a weighted geometric mean of the trees and the operator-summing models where it is not.

Gradient-boosted trees (:mod:`perfcast.predictors.gbt`) are the most accurate method on networks
like their training networks, and they cannot extrapolate: on a network of a new family their
leaves hold the costs of other families. Methods that price operators one by one and add them up
(the kernel-level model of nn-Meter, the operation-wise model, PALEO's roofline) are less accurate
in distribution, and their errors on a new family are different ones. So each member is fitted,
and per target two sets of weights combine the members' log predictions (non-negative, summing to
one: a weighted geometric mean), each fitted to least absolute log error on predictions of
networks the member was not fitted on (:func:`simplex_weights`):

- ``in``: the members' cross-fitted predictions over ``CONFORMAL_FOLDS`` random folds;
- ``out``: their predictions of whole families left out in turn (the groups of
  :func:`perfcast.predictors.base.cluster_splits`: spaces, else k-means clusters), on the held-out
  networks that the others' domain check calls out of domain.

A network takes the ``in`` weights when it is inside the domain of the training networks and the
``out`` weights when it is not. That check is made by a gate stored inside the model
(:func:`gate_domain`: the domain check of :mod:`perfcast.predictors.base` over at most
``gate_rows`` training networks drawn with a fixed seed, its threshold set on the others, and
every training family), so a model copied into another predictor (a transfer device's base) gates
alike. Conformal residuals are those of the same cross-fitted predictions: the combined ``in``
predictions for in-domain intervals, the combined ``out`` predictions for out-of-domain ones.
A member whose weight would be under ``min_weight`` gets none (the weights are fitted again
without it), and a member with zero weight in a set is not evaluated for the networks that set
predicts: on the local dataset the kernel-level member took 6 % of the in-domain weight, which
changed little and made each prediction about twenty times slower.

On the local dataset (onnxruntime CPU, one thread; ``perfcast evaluate --data local --protocol
a,c``), on held-out networks of the training spaces the mix predicts as gbt does with all 2,632
training networks (latency MAPE 6.78 % for both, memory 4.65 % for both); with 100 training
networks the operator-summing members join (latency 15.6 % -> 10.9 %, memory 11.7 % for both). On
a space left out of training (mean over the 13 spaces), the latency MAPE fell from 16.5 % to 13.1 %
and the share within +-10 % rose from 50.9 % to 53.7 % (a keyword-spotting space from 32.7 % to
16.9 % MAPE, GPT from 13.3 % to 7.2 %, the recurrent space from 22.1 % to 12.8 %); the memory MAPE
fell from 13.4 % to 12.9 %, its share within +-10 % from 50.2 % to 47.8 %.

Each member's model is stored inside the mix's model under ``m<j>:<key>``, the weights as
``w_in`` / ``w_out`` and the gate as ``gate:<key>``; no pickle.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from perfcast.errors import UsageError
from perfcast.predictors.base import (
    DOMAIN_K,
    DOMAIN_PERCENTILE,
    OOD_MIN_RESIDUALS,
    _neighbour_distances,
    Predictor,
    cluster_splits,
    domain_features,
    extrapolation_residuals,
    family_codes,
    fit_domain,
    get_predictor,
    in_domain_mask,
    predictor_class,
    random_splits,
    register_predictor,
    relative_residuals,
)
from perfcast.predictors.features import GraphStats

MEMBERS = ("gbt", "kernel", "opwise", "paleo")
GATE_ROWS = 512
MIN_WEIGHT = 0.1
_FLOOR = 1e-12
_SEP = ":"


def simplex_weights(logs: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Weights ``w >= 0`` with ``sum(w) = 1`` minimising the mean absolute log error
    ``mean |logs w - t|`` (a linear programme; because the weights sum to one,
    ``logs w - t = (logs - t) w``). Absolute rather than squared error: a few networks that every
    member misses by a factor would otherwise choose the weights for all the others."""
    from scipy import sparse  # imported on first fit, not when predicting
    from scipy.optimize import linprog

    errors = np.asarray(logs, float) - np.asarray(t, float)[:, None]
    n, m = errors.shape
    # variables: w (m), then over- and under-prediction of each row (n each), all >= 0
    cost = np.r_[np.zeros(m), np.ones(2 * n)]
    eye = sparse.identity(n, format="csr")
    rows = sparse.hstack([sparse.csr_matrix(errors), -eye, eye])
    total = sparse.csr_matrix(np.r_[np.ones(m), np.zeros(2 * n)][None, :])
    fit = linprog(cost, A_eq=sparse.vstack([rows, total], format="csr"), b_eq=np.r_[np.zeros(n), 1.0],
                  bounds=(0, None), method="highs")
    w = np.maximum(fit.x[:m], 0.0) if fit.success else np.zeros(m)
    if not w.sum() > 0:
        w = np.eye(m)[int(np.argmin(np.abs(errors).mean(axis=0)))]
    return w / w.sum()


def sparse_simplex_weights(logs: np.ndarray, t: np.ndarray, min_weight: float) -> np.ndarray:
    """:func:`simplex_weights` refitted without the members whose weight is below ``min_weight``
    (the smallest first, one at a time), so that a member that adds little costs no prediction time."""
    keep = np.arange(logs.shape[1])
    while True:
        w = simplex_weights(logs[:, keep], t)
        small = np.flatnonzero((w > 0) & (w < min_weight))
        if not small.size:
            out = np.zeros(logs.shape[1])
            out[keep] = w
            return out
        keep = np.delete(keep, small[np.argmin(w[small])])


def gate_domain(stats: Sequence[GraphStats], rows: int, seed: int) -> dict[str, np.ndarray]:
    """The domain check of ``stats`` (:func:`perfcast.predictors.base.fit_domain`) over at most
    ``rows`` of them drawn with ``seed``, and every family of them. Its distance threshold is the
    ``DOMAIN_PERCENTILE``-th percentile of the mean distance from each graph left out of the draw
    to its nearest drawn graphs, so that the gate admits the training graphs as the full check does
    (the leave-one-out distances within the draw alone are those of a sparser set)."""
    n = len(stats)
    drawn = np.sort(np.random.default_rng(seed).permutation(n)[:rows])
    gate = fit_domain([stats[i] for i in drawn])
    left = np.setdiff1d(np.arange(n), drawn)
    if left.size:
        z = (domain_features([stats[i] for i in left]) - gate["mean"]) / gate["scale"]
        near = _neighbour_distances(z, gate["train"], DOMAIN_K, False).mean(axis=1)
        gate["threshold"] = np.array([np.percentile(near, DOMAIN_PERCENTILE)])
    gate["families"] = family_codes(stats)
    return gate


@register_predictor("mix")
class Mix(Predictor):
    """Members' log predictions combined with one set of weights in domain and another out of it."""

    def __init__(self, members: Sequence[str] = MEMBERS, member_params: Mapping[str, Mapping] | None = None,
                 gate_rows: int = GATE_ROWS, min_weight: float = MIN_WEIGHT, seed: int = 0) -> None:
        self.members = tuple(members) if isinstance(members, (list, tuple)) else members
        self.member_params = member_params
        self.min_weight = min_weight
        self.gate_rows = gate_rows
        self.seed = seed

    def _check_params(self) -> None:
        members = self.members
        if not isinstance(members, tuple) or not members or not all(isinstance(m, str) for m in members):
            raise UsageError("members", f"must be a non-empty list of predictor names, not {members!r}")
        if len(set(members)) != len(members):
            raise UsageError("members", f"names a predictor twice: {list(members)}")
        for name in members:
            if name == self.name or predictor_class(name) is type(self):
                raise UsageError("members", "a mix cannot hold a mix")
        params = self.member_params or {}
        if not isinstance(params, Mapping) or not all(k in members and isinstance(v, Mapping) for k, v in params.items()):
            raise UsageError("member_params", "must map member names to parameter objects")
        for name, low in (("gate_rows", 2), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(name, f"must be an integer >= {low}, not {value!r}")
        w = self.min_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 0.5:
            raise UsageError("min_weight", f"must be a number in [0, 0.5], not {w!r}")
        for member in self._members():
            member._check_params()

    def _members(self) -> list[Predictor]:
        params = self.member_params or {}
        return [get_predictor(name, **dict(params.get(name, {}))) for name in self.members]

    # -- fitting ------------------------------------------------------------------------------
    def _learn_target(self, target: str, stats: list[GraphStats], y: np.ndarray, profiles=None) -> None:
        members = self._members()
        t = np.log(np.maximum(y, _FLOOR))

        def fitted(member: Predictor, rows: np.ndarray) -> dict:
            return member.fit_model(target, [stats[i] for i in rows], y[rows],
                                    None if profiles is None else [profiles[i] for i in rows])

        def logs(rest: np.ndarray, held: np.ndarray) -> np.ndarray:
            held_stats = [stats[i] for i in held]
            return np.column_stack([np.log(np.maximum(m.predict_model(target, fitted(m, rest), held_stats), _FLOOR))
                                    for m in members])

        inside = np.empty((len(stats), len(members)))
        for held, rest in random_splits(len(stats)):
            inside[held] = logs(rest, held)
        w_in = sparse_simplex_weights(inside, t, self.min_weight)
        splits = cluster_splits(stats)
        if splits:
            rows = np.concatenate([held for held, _, _ in splits])
            outside = np.concatenate([out for _, _, out in splits])
            away = np.vstack([logs(rest, held) for held, rest, _ in splits])
            use = outside if int(outside.sum()) >= OOD_MIN_RESIDUALS else np.ones(rows.size, bool)
            w_out = sparse_simplex_weights(away[use], t[rows][use], self.min_weight)
            self.ood_residuals_[target] = extrapolation_residuals(
                relative_residuals(y[rows], np.exp(away @ w_out)), outside)
        else:
            w_out = w_in
            self.ood_residuals_[target] = np.zeros(0)
        self.residuals_[target] = np.sort(relative_residuals(y, np.exp(inside @ w_in)))
        everything = np.arange(len(stats))
        model: dict = {"w_in": w_in, "w_out": w_out}
        for j, member in enumerate(members):
            if w_in[j] > 0 or w_out[j] > 0:
                model.update({f"m{j}{_SEP}{k}": v for k, v in fitted(member, everything).items()})
        model.update({f"gate{_SEP}{k}": v for k, v in gate_domain(stats, self.gate_rows, self.seed).items()})
        self.models_[target] = model

    # -- predicting ---------------------------------------------------------------------------
    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        w_in, w_out = (np.asarray(model[k], float).reshape(-1) for k in ("w_in", "w_out"))
        gate = {k.split(_SEP, 1)[1]: np.asarray(v) for k, v in model.items() if k.startswith(f"gate{_SEP}")}
        inside = in_domain_mask(gate, stats)
        out = np.zeros(len(stats))
        for j, member in enumerate(self._members()):
            weight = np.where(inside, w_in[j], w_out[j])
            rows = np.flatnonzero(weight > 0)
            if not rows.size:
                continue
            prefix = f"m{j}{_SEP}"
            sub = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
            pred = member.predict_model(target, sub, [stats[i] for i in rows])
            out[rows] += weight[rows] * np.log(np.maximum(pred, _FLOOR))
        return np.exp(out)

    def weights(self, target: str = "latency_ms") -> dict[str, dict[str, float]]:
        """The fitted weights of ``target`` per member: ``{"in": {...}, "out": {...}}``."""
        self._fitted()
        if target not in self.models_:
            raise UsageError("target", f"no model fitted for {target!r}")
        model = self.models_[target]
        return {side: {name: float(w) for name, w in zip(self.members, np.asarray(model[f"w_{side}"]).reshape(-1))}
                for side in ("in", "out")}
