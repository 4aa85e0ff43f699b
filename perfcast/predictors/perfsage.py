"""PerfSAGE (Chai et al., "PerfSAGE: Generalized Inference Performance Predictor for Arbitrary
Deep Learning Models on Edge Devices", 2023): GraphSAGE over the operators with node and edge
features, a mean readout and the mean absolute percentage error as loss; one network with a head
per target (latency, energy, memory), trained jointly on every target that has labels.

Nodes carry the features of :mod:`perfcast.predictors.graphdata`, edges the elements and bytes of
the tensors between producer and consumer; ``layers`` GraphSAGE layers pass messages along the
dataflow (:mod:`perfcast.predictors.gnn`), the mean of the final node states and the graph-level
statistics go through a two-layer head with one output per target, the standardised log of that
target. A graph without a label for a target (NaN) is left out of that head's loss only, so
networks labelled for latency alone still shape the shared layers that energy uses.

Conformal residuals come from jointly cross-fitted networks (the graphs cut into
:data:`~perfcast.predictors.base.CONFORMAL_FOLDS` folds, every fold predicted by the network fitted
on the others). The model of each target holds the shared weights and the index of its head.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from perfcast.ir.graph import Graph
from perfcast.predictors.base import (
    TARGETS,
    _check_graphs,
    _check_profiles,
    _check_targets,
    cluster_splits,
    extrapolation_residuals,
    fit_domain,
    random_splits,
    register_predictor,
    relative_residuals,
)
from perfcast.predictors.features import GraphStats, graph_stats
from perfcast.predictors.gnn import GraphNetPredictor, predict, train


@register_predictor("perfsage")
class PerfSage(GraphNetPredictor):
    """GraphSAGE with edge features, mean readout, MAPE loss; one network, a head per target."""

    ARCH = {"conv": "sage", "readout": "mean", "embed": 0, "use_u": True}
    LOSS = "mape"

    def __init__(self, layers: int = 3, hidden: int = 64, steps: int = 300, learning_rate: float = 0.005,
                 patience: int = 40, seed: int = 0) -> None:
        self.layers = layers
        self.hidden = hidden
        self.steps = steps
        self.learning_rate = learning_rate
        self.patience = patience
        self.seed = seed

    def fit(self, graphs: Sequence[Graph], targets: Mapping[str, Sequence[float]],
            kernel_profiles: Sequence[list[dict] | None] | None = None) -> "PerfSage":
        """Learn every target that has labels with one network (NaN marks a missing label);
        ``kernel_profiles`` are checked and not used."""
        self._check_params()
        graphs = _check_graphs(graphs)
        labels = _check_targets(targets, len(graphs))
        _check_profiles(kernel_profiles, len(graphs))
        stats = [graph_stats(g) for g in graphs]
        self.targets_ = [t for t in TARGETS if t in labels]
        y = np.column_stack([labels[t] for t in self.targets_])
        shared = self._train(stats, y)
        self.models_ = {t: {**shared, "head": np.array([float(k)])} for k, t in enumerate(self.targets_)}
        random = self._held_out(stats, y, random_splits(len(stats)))
        splits = cluster_splits(stats)
        clustered = self._held_out(stats, y, [(h, r) for h, r, _ in splits])
        outside = np.zeros(len(stats), bool)
        for h, _, out in splits:
            outside[h] = out
        self.residuals_, self.ood_residuals_ = {}, {}
        for k, target in enumerate(self.targets_):
            labelled = ~np.isnan(y[:, k])
            self.residuals_[target] = np.sort(relative_residuals(y[labelled, k], random[labelled, k]))
            held = labelled & ~np.isnan(clustered[:, k])
            if held.any():
                self.ood_residuals_[target] = extrapolation_residuals(
                    relative_residuals(y[held, k], clustered[held, k]), outside[held])
        self.domain_ = fit_domain(stats)
        self.n_train_ = len(graphs)
        return self

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict[str, np.ndarray]:
        return {**self._train(stats, y[:, None]), "head": np.array([0.0])}

    def _train(self, stats: list[GraphStats], y: np.ndarray) -> dict[str, np.ndarray]:
        return train(self._spec(), self._training(), stats, y)

    def _held_out(self, stats: list[GraphStats], y: np.ndarray,
                  splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Predictions of every target for the held-out rows of each ``(held, rest)`` split by a
        network trained on ``rest`` (NaN for rows never held out)."""
        pred = np.full(y.shape, np.nan)
        for held, rest in splits:
            model = self._train([stats[i] for i in rest], y[rest])
            pred[held] = predict(self._spec(), self.LOSS, model, [stats[i] for i in held])
        return pred

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        return predict(self._spec(), self.LOSS, model, stats)[:, int(np.asarray(model["head"]).reshape(-1)[0])]
