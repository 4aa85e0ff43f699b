"""TVM's cost model (Chen et al., "Learning to Optimize Tensor Programs", NeurIPS 2018): gradient-
boosted trees on hand-made features, retrained as measurements arrive.

Features are the graph-level totals and per-op-family aggregates of
:mod:`perfcast.predictors.features`, mapped by ``log1p``. The trees (LightGBM, least squares)
learn ``log(target)``, so every network's relative error weighs the same. Training is deterministic
(fixed seed, one thread, LightGBM's deterministic mode).

:meth:`GradientBoostedTrees.update` adds measurements and refits on all labels seen so far (the
training rows are part of the model), as TVM does after each batch of measured candidates; the new
graphs join the domain-check reference set.

The ensemble is stored as LightGBM's text format inside ``predictor.json`` (no pickle) and parsed
back with ``Booster(model_str=...)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from perfcast.errors import UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.base import (
    TARGETS,
    Predictor,
    _check_graphs,
    _check_targets,
    _log_features,
    extend_domain,
    register_predictor,
)
from perfcast.predictors.features import GraphStats, graph_stats

_LABEL_FLOOR = 1e-12


def _booster_params(num_leaves: int, learning_rate: float, min_data_in_leaf: int, seed: int) -> dict:
    return {
        "objective": "regression", "num_leaves": num_leaves, "learning_rate": learning_rate,
        "min_data_in_leaf": min_data_in_leaf, "min_data_in_bin": 1, "feature_pre_filter": False,
        "seed": seed, "num_threads": 1, "deterministic": True, "force_row_wise": True, "verbosity": -1,
    }


@lru_cache(maxsize=32)
def _booster(model_str: str):
    import lightgbm

    return lightgbm.Booster(model_str=model_str)


def _stats_of_rows(rows: np.ndarray) -> list[GraphStats]:
    empty = np.zeros(0)
    return [GraphStats("", row, empty, empty) for row in rows]


@register_predictor("gbt")
class GradientBoostedTrees(Predictor):
    """LightGBM on log features, predicting log(target); :meth:`update` retrains with new labels."""

    def __init__(self, n_estimators: int = 300, learning_rate: float = 0.05, num_leaves: int = 15,
                 min_data_in_leaf: int = 3, seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.seed = seed

    def _check_params(self) -> None:
        for name, low in (("n_estimators", 1), ("num_leaves", 2), ("min_data_in_leaf", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(name, f"must be an integer >= {low}, not {value!r}")
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise UsageError("learning_rate", f"must be in (0, 1], not {rate!r}")

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        import lightgbm

        rows = np.vstack([s.row for s in stats])
        params = _booster_params(self.num_leaves, self.learning_rate, self.min_data_in_leaf, self.seed)
        data = lightgbm.Dataset(_log_features(stats), np.log(np.maximum(y, _LABEL_FLOOR)), params=params)
        booster = lightgbm.train(params, data, num_boost_round=self.n_estimators)
        return {"booster": booster.model_to_string(), "train_rows": rows, "train_y": np.asarray(y, float)}

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        return np.exp(_booster(model["booster"]).predict(_log_features(stats), num_threads=1))

    def update(self, graphs: Sequence[Graph], targets: Mapping[str, Sequence[float]]) -> "GradientBoostedTrees":
        """Add measured ``graphs`` with their ``targets`` (NaN where missing) and retrain every
        target that got new labels on all its labels so far; a new target is learned from these."""
        self._fitted()
        self._check_params()
        graphs = _check_graphs(graphs)
        labels = _check_targets(targets, len(graphs))
        rows = np.vstack([graph_stats(g).row for g in graphs])
        for target, y in labels.items():
            keep = ~np.isnan(y)
            old = self.models_.get(target, {"train_rows": np.zeros((0, rows.shape[1])), "train_y": np.zeros(0)})
            all_rows = np.vstack([np.asarray(old["train_rows"]).reshape(-1, rows.shape[1]), rows[keep]])
            all_y = np.r_[old["train_y"], y[keep]]
            stats = _stats_of_rows(all_rows)
            self.models_[target] = self._fit_target(target, stats, all_y)
            self.residuals_[target] = self._cross_residuals(target, stats, all_y)
            self.ood_residuals_[target] = self._cluster_residuals(target, stats, all_y)
        self.targets_ = [t for t in TARGETS if t in self.models_]
        self.domain_ = extend_domain(self.domain_, _stats_of_rows(rows))
        self.n_train_ += len(graphs)
        return self
