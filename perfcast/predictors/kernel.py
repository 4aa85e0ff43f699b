"""nn-Meter's kernel-level prediction (Zhang et al., "nn-Meter", MobiSys 2021), with the fusion
rules learned from kernel profiles instead of listed by hand.

A network's latency is the sum of the latencies of the kernels the runtime runs. Kernels are found
by :func:`perfcast.predictors.profiles.group_kernels` with rules learned from the profiles given
to ``fit`` (:func:`~perfcast.predictors.profiles.learn_rules`); without profiles the rules of the
``fusion_rules`` parameter (text of :meth:`FusionRules.to_text`, e.g. learned on another dataset)
are used, and without those every node is its own kernel. A kernel's type is its fused op-type
pattern (``Conv+BatchNormalization+Relu``) and its features are
:data:`~perfcast.predictors.profiles.KERNEL_FEATURES` (MACs, FLOPs, external bytes and elements,
weights, kernel size, channels, stride, group, innermost dimension, members).

With kernel profiles (``latency_ms`` only), every timed kernel of the profiles is a labelled
sample of its type, its members as the profile says. A type with ``min_kernels`` samples or more
gets its own LightGBM regressor of ``log(duration)`` on ``log1p`` features; a rarer one a
non-negative linear model ``c_0 + c_1 MACs + c_2 bytes`` (relative least squares) when it has
``MIN_LINEAR_SAMPLES``; any other type the same linear model fitted on all kernels. The network's
latency is then learned as in the end-to-end case below with one more global column: ``S``, the sum
of the predicted kernel times. Profiled kernel times include the profiler's own per-kernel cost
and miss layout reorders, so ``S`` is not the latency itself; the per-type terms, held near zero
by the ridge, correct what it gets wrong systematically.

With end-to-end labels only (and for ``energy_mj`` and ``memory_bytes``), per-kernel costs are
learned from network sums: for every kernel type ``t`` the columns ``n_t``, ``MACs_t``,
``bytes_t`` (summed over the network's kernels of that type), beside global columns (all kernels'
MACs and bytes, a constant; for ``memory_bytes`` also the activation peak and the weight bytes,
which are not sums over kernels); coefficients are non-negative and fitted on relative error with a
ridge penalty on the per-type ones (:func:`perfcast.predictors.lut.fit_ridge_nnls`), so the global
rates explain what they can. A per-type rate is penalised in the units of all kernels' totals (its
count, MACs or bytes summed over every type): a type that few training networks hold cannot take a
large rate cheaply and then multiply it over a new network full of that type.

The learned rules, type names and tree ensembles are stored as JSON text in ``predictor.json``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from perfcast.errors import UsageError
from perfcast.predictors.base import Predictor, fit_relative_nnls, register_predictor
from perfcast.predictors.features import COLUMNS, GraphStats
from perfcast.predictors.gbt import _booster, _booster_params
from perfcast.predictors.lut import fit_ridge_nnls
from perfcast.predictors.profiles import (
    KERNEL_FEATURES,
    FusionRules,
    group_kernels,
    kernel_features,
    kernel_type,
    learn_rules,
    map_profile,
)

CACHE_SIZE = 8192
_MACS = KERNEL_FEATURES.index("macs")
_BYTES = KERNEL_FEATURES.index("bytes")
_PEAK = COLUMNS.index("activation_peak_bytes")
_WEIGHTS = COLUMNS.index("weight_bytes")
_LABEL_FLOOR = 1e-9
MIN_LINEAR_SAMPLES = 3


class Units(NamedTuple):
    """The costed units of one graph (kernels or nodes): a type and a feature row each."""

    types: tuple[str, ...]
    features: np.ndarray  # (units, KERNEL_FEATURES)


def units_of(table, groups: Sequence[Sequence[int]], types: Sequence[str]) -> Units:
    feats = np.vstack([kernel_features(table, g) for g in groups]) if groups else np.zeros((0, len(KERNEL_FEATURES)))
    return Units(tuple(types), feats)


class _Cache:
    """A small LRU of per-graph values keyed by content hash and what else they depend on."""

    def __init__(self) -> None:
        self.data: OrderedDict = OrderedDict()

    def get(self, key, make):
        hit = self.data.get(key)
        if hit is None:
            hit = self.data[key] = make()
            if len(self.data) > CACHE_SIZE:
                self.data.popitem(last=False)
        else:
            self.data.move_to_end(key)
        return hit


_KERNELS = _Cache()
_SAMPLES = _Cache()


def rules_signature(rules: FusionRules) -> str:
    """What grouping depends on: the rules and vanishing op types, not the counts behind them."""
    return json.dumps([rules.rules(), rules.vanishing()])


def graph_kernels(stats: GraphStats, rules: FusionRules, signature: str | None = None) -> Units:
    """The kernels of one graph under ``rules`` as :class:`Units` (cached)."""

    def make() -> Units:
        k = group_kernels(stats.nodes, rules)
        return units_of(stats.nodes, k.groups, k.types)

    return _KERNELS.get((stats.content_hash, signature or rules_signature(rules)), make)


def _fingerprint(rows: Sequence[Mapping]) -> tuple:
    return len(rows), sum(float(r["duration_us"]) for r in rows), tuple(r.get("kernel_name") for r in rows[:3])


def profiled_kernels(stats: GraphStats, rows: Sequence[Mapping]) -> tuple[Units, np.ndarray] | None:
    """The timed kernels of one profile (members as profiled) and their durations in ms (cached);
    None when the profile names none of the graph's nodes."""

    def make():
        mapped = map_profile(stats.nodes, rows)
        if mapped is None:
            return ()
        groups = [k.members for k in mapped.kernels]
        units = units_of(stats.nodes, groups, [kernel_type(stats.nodes, g) for g in groups])
        return units, np.array([k.duration_ms for k in mapped.kernels], float)

    return _SAMPLES.get((stats.content_hash, _fingerprint(rows)), make) or None


# --- shared fitting blocks (also used by the op-wise predictor) ------------------------------------------
def linear_design(features: np.ndarray) -> np.ndarray:
    """``[1, MACs, bytes]`` per unit."""
    return np.column_stack([np.ones(len(features)), features[:, _MACS], features[:, _BYTES]])


def extra_columns(target: str, stats: Sequence[GraphStats]) -> np.ndarray:
    """Graph-level columns beside the sums over units: a constant, and for ``memory_bytes`` the
    activation peak and the weight bytes."""
    cols = [np.ones(len(stats))]
    if target == "memory_bytes":
        cols += [np.array([s.row[_PEAK] for s in stats]), np.array([s.row[_WEIGHTS] for s in stats])]
    return np.column_stack(cols)


def _type_sums(units: Sequence[Units], types: Sequence[str]) -> np.ndarray:
    """Per graph and type: unit count, MACs, bytes (columns grouped by type)."""
    col = {t: i for i, t in enumerate(types)}
    out = np.zeros((len(units), 3 * len(types)))
    for row, u in enumerate(units):
        lin = linear_design(u.features)
        for t, x in zip(u.types, lin):
            if t in col:
                out[row, 3 * col[t]:3 * col[t] + 3] += x
    return out


def _global_sums(units: Sequence[Units]) -> np.ndarray:
    return np.array([[u.features[:, _MACS].sum(), u.features[:, _BYTES].sum()] for u in units]).reshape(-1, 2)


def fit_aggregate(target: str, stats: Sequence[GraphStats], units: Sequence[Units], y: np.ndarray,
                  ridge: float, prior: np.ndarray | None = None) -> dict:
    """Per-type unit costs from network labels (see the module docstring); ``prior`` holds more
    unpenalised columns (a cost learned from profiles) beside the global ones."""
    types = sorted({t for u in units for t in u.types})
    prior = np.zeros((len(y), 0)) if prior is None else prior.reshape(len(y), -1)
    sums = _type_sums(units, types)
    a = np.column_stack([sums, _global_sums(units), extra_columns(target, stats), prior])
    totals = sums.reshape(len(y), -1, 3).sum(axis=1)  # all kernels' count, MACs and bytes
    coef = fit_ridge_nnls(a, y, 3 * len(types), ridge, np.tile(totals, (1, len(types))))
    return {"types": json.dumps(types), "type_coef": coef[:3 * len(types)].reshape(-1, 3),
            "global_coef": coef[3 * len(types):]}


def predict_aggregate(target: str, model: Mapping, stats: Sequence[GraphStats], units: Sequence[Units],
                      prior: np.ndarray | None = None) -> np.ndarray:
    types = json.loads(model["types"])
    coef = np.r_[np.asarray(model["type_coef"]).reshape(-1), model["global_coef"]]
    prior = np.zeros((len(units), 0)) if prior is None else prior.reshape(len(units), -1)
    a = np.column_stack([_type_sums(units, types), _global_sums(units), extra_columns(target, stats), prior])
    return a @ coef


def fit_linear_by_key(keys: Sequence[str], features: np.ndarray, y: np.ndarray, min_samples: int
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per key with ``min_samples`` or more samples: non-negative ``[1, MACs, bytes]`` coefficients
    on relative error; plus the same fitted on all samples (the fallback)."""
    keys = np.asarray(keys, dtype=object)
    x = linear_design(features)
    kept, coefs = [], []
    for key in sorted(set(keys.tolist())):
        rows = keys == key
        if rows.sum() >= min_samples:
            kept.append(key)
            coefs.append(fit_relative_nnls(x[rows], y[rows]))
    return kept, np.array(coefs).reshape(-1, 3), fit_relative_nnls(x, y)


def _stack(units: Sequence[Units]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All units of several graphs: types, features, graph index."""
    types = np.array([t for u in units for t in u.types], dtype=object)
    feats = np.vstack([u.features for u in units]) if units else np.zeros((0, len(KERNEL_FEATURES)))
    owner = np.repeat(np.arange(len(units)), [len(u.types) for u in units])
    return types, feats, owner


def _check_number(name: str, value, low: float, integer: bool = False, high: float | None = None) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float)) and value >= low
    if not ok or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise UsageError(name, f"must be {'an integer' if integer else 'a number'} {bound}, not {value!r}")


class ProfileLearner(Predictor):
    """What the kernel-level and op-wise predictors share: rule parameters, learning the rules from
    the profiles given to ``fit`` (else the ``fusion_rules`` parameter, else none)."""

    LEARNS_FOLDING = True

    min_support: int
    min_share: float
    fusion_rules: str | None

    def _check_rule_params(self) -> None:
        _check_number("min_support", self.min_support, 1, integer=True)
        _check_number("min_share", self.min_share, 0.0, high=1.0)
        if self.fusion_rules is not None:
            if not isinstance(self.fusion_rules, str):
                raise UsageError("fusion_rules", "must be the text of FusionRules.to_text() or None")
            FusionRules.from_text(self.fusion_rules, "fusion_rules")

    def _rules(self, stats: Sequence[GraphStats], profiles) -> FusionRules:
        if profiles is not None and any(p for p in profiles):
            return learn_rules([s.nodes for s in stats], profiles, self.min_support, self.min_share)
        if self.fusion_rules is not None:
            return FusionRules.from_text(self.fusion_rules, "fusion_rules")
        return FusionRules(min_support=self.min_support, min_share=self.min_share)

    def rules(self, target: str = "latency_ms") -> FusionRules:
        """The fusion rules the fitted ``target`` groups kernels with."""
        self._fitted()
        if target not in self.models_:
            raise UsageError("target", f"no model fitted for {target!r}")
        return FusionRules.from_text(self.models_[target]["rules"])


@register_predictor("kernel")
class KernelLevel(ProfileLearner):
    """Sum of per-kernel-type predictions over the kernels found with learned fusion rules."""

    def __init__(self, min_kernels: int = 20, n_estimators: int = 100, learning_rate: float = 0.1,
                 num_leaves: int = 15, ridge: float = 1e-3, min_support: int = 5, min_share: float = 0.5,
                 fusion_rules: str | None = None, seed: int = 0) -> None:
        self.min_kernels = min_kernels
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.ridge = ridge
        self.min_support = min_support
        self.min_share = min_share
        self.fusion_rules = fusion_rules
        self.seed = seed

    def _check_params(self) -> None:
        _check_number("min_kernels", self.min_kernels, 2, integer=True)
        _check_number("n_estimators", self.n_estimators, 1, integer=True)
        _check_number("num_leaves", self.num_leaves, 2, integer=True)
        _check_number("seed", self.seed, 0, integer=True)
        _check_number("learning_rate", self.learning_rate, 1e-6, high=1.0)
        _check_number("ridge", self.ridge, 0.0)
        self._check_rule_params()

    # -- hooks ---------------------------------------------------------------------------------------
    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        return self._fit_target_profiled(target, stats, y, None)

    def _fit_target_profiled(self, target: str, stats: list[GraphStats], y: np.ndarray, profiles) -> dict:
        rules = self._rules(stats, profiles)
        signature = rules_signature(rules)
        units = [graph_kernels(s, rules, signature) for s in stats]
        samples = [profiled_kernels(s, p) for s, p in zip(stats, profiles or ()) if p]
        samples = [s for s in samples if s is not None]
        if target != "latency_ms" or not samples:
            return {"mode": "aggregate", "rules": rules.to_text(),
                    **fit_aggregate(target, stats, units, y, float(self.ridge))}
        model = {"mode": "kernels", "rules": rules.to_text(), **self._fit_kernels(samples)}
        return {**model, **fit_aggregate(target, stats, units, y, float(self.ridge), self._kernel_sums(model, units))}

    def _fit_kernels(self, samples: Sequence[tuple[Units, np.ndarray]]) -> dict:
        import lightgbm

        types, feats, _ = _stack([u for u, _ in samples])
        durations = np.concatenate([d for _, d in samples])
        params = _booster_params(self.num_leaves, float(self.learning_rate), 3, self.seed)
        boosters = {}
        for t in sorted(set(types.tolist())):
            rows = types == t
            if rows.sum() >= self.min_kernels:
                data = lightgbm.Dataset(np.log1p(feats[rows]), np.log(np.maximum(durations[rows], _LABEL_FLOOR)),
                                        params=params)
                boosters[t] = lightgbm.train(params, data, num_boost_round=self.n_estimators).model_to_string()
        linear_types, coefs, fallback = fit_linear_by_key(types, feats, durations, MIN_LINEAR_SAMPLES)
        keep = [i for i, t in enumerate(linear_types) if t not in boosters]
        return {"boosters": json.dumps(boosters, sort_keys=True),
                "linear_types": json.dumps([linear_types[i] for i in keep]),
                "linear_coef": coefs[keep].reshape(-1, 3), "fallback_coef": fallback}

    @staticmethod
    def _kernel_sums(model: Mapping, units: Sequence[Units]) -> np.ndarray:
        types, feats, owner = _stack(units)
        boosters = json.loads(model["boosters"])
        linear_types = json.loads(model["linear_types"])
        coefs = np.asarray(model["linear_coef"]).reshape(-1, 3)
        cost = linear_design(feats) @ np.asarray(model["fallback_coef"])
        for t in set(types.tolist()):
            rows = types == t
            if t in boosters:
                cost[rows] = np.exp(_booster(boosters[t]).predict(np.log1p(feats[rows]), num_threads=1))
            elif t in linear_types:
                cost[rows] = linear_design(feats[rows]) @ coefs[linear_types.index(t)]
        return np.bincount(owner, weights=cost, minlength=len(units))

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        rules = FusionRules.from_text(model["rules"])
        signature = rules_signature(rules)
        units = [graph_kernels(s, rules, signature) for s in stats]
        prior = self._kernel_sums(model, units) if model["mode"] == "kernels" else None
        return predict_aggregate(target, model, stats, units, prior)
