"""Operation-wise prediction in the manner of Li et al. ("Operation-wise prediction of deep
learning inference latency", ICPE 2023): small per-operation models whose features say what the
operation computes and what the runtime's optimisations do to it, learned from little data.

Every node is one unit, keyed by its kind (op type, ``Conv:dw`` for depthwise) and its role under
the runtime's optimisations, both learned from kernel profiles
(:func:`perfcast.predictors.profiles.learn_rules`): a node the runtime folds into a constant or
eliminates costs nothing; a node that shares a kernel with others (by the learned fusion rules,
:func:`~perfcast.predictors.profiles.group_kernels`) is keyed ``<kind>~fused``, one alone keeps
its kind. A unit's cost is linear and non-negative in its MACs and bytes: ``c_0 + c_1 MACs +
c_2 bytes``.

With kernel profiles (``latency_ms``), per-op labels come from the profiled kernels: a kernel's
time is apportioned to its member nodes by their FLOPs share (bytes share when the members do no
arithmetic, equal shares when they move nothing either), each member keyed by its role in the
profile. Each key with ``min_samples`` labels or more gets its own coefficients (non-negative least
squares on relative error); other keys use those of their kind pooled over roles, else those of all
ops. The network's latency is then learned as in :mod:`perfcast.predictors.kernel`: per-key
aggregates with a ridge, global columns, and the sum ``S`` of the predicted op times.

With end-to-end labels only (and for ``energy_mj`` and ``memory_bytes``), the same unit costs are
learned by non-negative least squares over per-key aggregates of the networks
(:func:`perfcast.predictors.kernel.fit_aggregate`); without profiles the fusion rules are those of
the ``fusion_rules`` parameter, or none.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np

from perfcast.predictors.base import register_predictor
from perfcast.predictors.features import GraphStats
from perfcast.predictors.kernel import (
    ProfileLearner,
    Units,
    _Cache,
    _check_number,
    _stack,
    fit_aggregate,
    fit_linear_by_key,
    linear_design,
    predict_aggregate,
    rules_signature,
    units_of,
)
from perfcast.predictors.profiles import FusionRules, group_kernels, map_profile

FUSED = "~fused"
_FLOPS = 1
_BYTES = 2
_UNITS = _Cache()
_SAMPLES = _Cache()


def _role_keys(table, groups: Sequence[Sequence[int]]) -> tuple[list[int], list[str]]:
    nodes, keys = [], []
    for g in groups:
        for i in g:
            nodes.append(i)
            keys.append(table.kinds[i] + (FUSED if len(g) > 1 else ""))
    return nodes, keys


def graph_ops(stats: GraphStats, rules: FusionRules, signature: str) -> Units:
    """The running nodes of one graph as units keyed by kind and role (cached)."""

    def make() -> Units:
        k = group_kernels(stats.nodes, rules)
        nodes, keys = _role_keys(stats.nodes, k.groups)
        return units_of(stats.nodes, [[i] for i in nodes], keys)

    return _UNITS.get((stats.content_hash, signature), make)


def apportion(features: np.ndarray, duration: float) -> np.ndarray:
    """A kernel's time split over its members by FLOPs share, else bytes share, else equally."""
    for col in (_FLOPS, _BYTES):
        total = features[:, col].sum()
        if total > 0:
            return duration * features[:, col] / total
    return np.full(len(features), duration / len(features))


def profiled_ops(stats: GraphStats, rows: Sequence[Mapping]) -> tuple[Units, np.ndarray] | None:
    """The nodes of a profile's timed kernels, keyed by their role there, with apportioned times."""

    def make():
        mapped = map_profile(stats.nodes, rows)
        if mapped is None:
            return ()
        groups = [k.members for k in mapped.kernels]
        nodes, keys = _role_keys(stats.nodes, groups)
        units = units_of(stats.nodes, [[i] for i in nodes], keys)
        start = np.cumsum([0] + [len(g) for g in groups])
        times = np.concatenate([apportion(units.features[a:b], k.duration_ms)
                                for a, b, k in zip(start[:-1], start[1:], mapped.kernels)]) if groups else np.zeros(0)
        return units, times

    key = (stats.content_hash, len(rows), sum(float(r["duration_us"]) for r in rows))
    return _SAMPLES.get(key, make) or None


def _kind(key: str) -> str:
    return key[:-len(FUSED)] if key.endswith(FUSED) else key


@register_predictor("opwise")
class OperationWise(ProfileLearner):
    """Per-(op kind, role) linear costs, zero for folded or eliminated nodes, summed and calibrated."""

    def __init__(self, min_samples: int = 5, ridge: float = 1e-3, min_support: int = 5, min_share: float = 0.5,
                 fusion_rules: str | None = None) -> None:
        self.min_samples = min_samples
        self.ridge = ridge
        self.min_support = min_support
        self.min_share = min_share
        self.fusion_rules = fusion_rules

    def _check_params(self) -> None:
        _check_number("min_samples", self.min_samples, 1, integer=True)
        _check_number("ridge", self.ridge, 0.0)
        self._check_rule_params()

    def _units(self, stats: Sequence[GraphStats], rules: FusionRules) -> list[Units]:
        signature = rules_signature(rules)
        return [graph_ops(s, rules, signature) for s in stats]

    # -- hooks ---------------------------------------------------------------------------------------
    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        return self._fit_target_profiled(target, stats, y, None)

    def _fit_target_profiled(self, target: str, stats: list[GraphStats], y: np.ndarray, profiles) -> dict:
        rules = self._rules(stats, profiles)
        units = self._units(stats, rules)
        samples = [profiled_ops(s, p) for s, p in zip(stats, profiles or ()) if p]
        samples = [s for s in samples if s is not None]
        if target != "latency_ms" or not samples:
            return {"mode": "aggregate", "rules": rules.to_text(),
                    **fit_aggregate(target, stats, units, y, float(self.ridge))}
        keys, feats, _ = _stack([u for u, _ in samples])
        times = np.concatenate([t for _, t in samples])
        op_keys, op_coef, fallback = fit_linear_by_key(keys, feats, times, self.min_samples)
        kind_keys, kind_coef, _ = fit_linear_by_key([_kind(k) for k in keys], feats, times, self.min_samples)
        model = {"mode": "ops", "rules": rules.to_text(), "op_keys": json.dumps(op_keys), "op_coef": op_coef,
                 "kind_keys": json.dumps(kind_keys), "kind_coef": kind_coef, "fallback_coef": fallback}
        return {**model, **fit_aggregate(target, stats, units, y, float(self.ridge), self._op_sums(model, units))}

    @staticmethod
    def _op_sums(model: Mapping, units: Sequence[Units]) -> np.ndarray:
        keys, feats, owner = _stack(units)
        x = linear_design(feats)
        cost = x @ np.asarray(model["fallback_coef"])
        for table, names, name_of in ((model["kind_coef"], json.loads(model["kind_keys"]), _kind),
                                      (model["op_coef"], json.loads(model["op_keys"]), str)):
            coef = np.asarray(table).reshape(-1, 3)
            index = {k: i for i, k in enumerate(names)}
            for key in set(keys.tolist()):
                if name_of(key) in index:
                    rows = keys == key
                    cost[rows] = x[rows] @ coef[index[name_of(key)]]
        return np.bincount(owner, weights=cost, minlength=len(units))

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        units = self._units(stats, FusionRules.from_text(model["rules"]))
        prior = self._op_sums(model, units) if model["mode"] == "ops" else None
        return predict_aggregate(target, model, stats, units, prior)
