"""A deep multilayer perceptron over the flattened graph, as in Stanford CS230 student projects
that predict latency from a network's layer list: the attributes of the first ``max_nodes``
operators in topological order and the band of the adjacency matrix above its diagonal, flattened
into one vector, zero-padded for smaller networks.

Per node: the op-family one-hot and the ``log1p`` numeric features of
:mod:`perfcast.predictors.graphdata` (kernel, stride, group, channels, elements, MACs, FLOPs,
bytes, arithmetic intensity, flags); per node ``i`` the ``band`` adjacency bits ``i -> i + 1`` ..
``i -> i + band``. The graph-level statistics (``log1p`` of the feature row) are appended, so
operators past ``max_nodes`` still count through the totals. Inputs are standardised by the
training mean and standard deviation (floored, clipped); ``layers`` ReLU layers of ``hidden``
units predict the standardised log of the target (squared error), trained by
:func:`perfcast.predictors.gnn.optimise`. The first layer's weights on the flattened nodes carry
an L2 penalty (``flat_l2``): with thousands of inputs and a few hundred networks an unpenalised
layer interpolates the training labels and generalises no better than a constant (seen on
NAS-Bench-201 with 100 training networks: held-out latency MAPE 16% unpenalised, 3.5% with
``flat_l2=10``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from perfcast.predictors.base import register_predictor
from perfcast.predictors.features import GraphStats
from perfcast.predictors.gnn import (
    LabelScale,
    TorchPredictor,
    load_weights,
    one_thread,
    optimise,
    standardise,
    standardised,
)
from perfcast.predictors.graphdata import KINDS, NODE_FEATURES, stats_data
from perfcast.predictors.kernel import _check_number

_NODE_COLUMNS = slice(len(KINDS), len(NODE_FEATURES))  # family one-hot, numeric features and flags
NODE_WIDTH = len(NODE_FEATURES) - len(KINDS)


def flat_features(stats: Sequence[GraphStats], max_nodes: int, band: int) -> np.ndarray:
    """One row per graph: node attributes and adjacency band of the first ``max_nodes`` nodes,
    then the graph's ``log1p`` feature row."""
    out = np.zeros((len(stats), max_nodes * (NODE_WIDTH + band)), np.float32)
    for g, s in enumerate(stats):
        d = stats_data(s)
        x = d.x.numpy()[:max_nodes, _NODE_COLUMNS]
        out[g, :x.size] = x.reshape(-1)
        src, dst = d.edge_index.numpy()
        gap = dst - src
        keep = (src < max_nodes) & (gap >= 1) & (gap <= band)
        out[g, max_nodes * NODE_WIDTH + src[keep] * band + gap[keep] - 1] = 1.0
    u = np.vstack([stats_data(s).u.numpy() for s in stats])
    return np.hstack([out, u])


def _network(n_flat: int, n_u: int, hidden: int, layers: int, seed: int):
    """First layer ``relu(W_f flat + W_u u + b)``, then ``layers - 1`` ReLU layers and a linear output."""
    import torch

    nn = torch.nn
    torch.manual_seed(seed)

    class FlatMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.flat = nn.Linear(n_flat, hidden, bias=False)
            self.graph = nn.Linear(n_u, hidden)
            blocks = []
            for _ in range(layers - 1):
                blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
            self.rest = nn.Sequential(*blocks, nn.Linear(hidden, 1))

        def forward(self, x):
            return self.rest(torch.relu(self.flat(x[:, :n_flat]) + self.graph(x[:, n_flat:])))

    return FlatMLP()


@register_predictor("cs230")
class FlatGraphMLP(TorchPredictor):
    """Deep MLP over flattened node attributes and adjacency band; one network per target."""

    def __init__(self, max_nodes: int = 128, band: int = 8, layers: int = 4, hidden: int = 64, flat_l2: float = 10.0,
                 steps: int = 300, learning_rate: float = 0.003, patience: int = 40, seed: int = 0) -> None:
        self.max_nodes = max_nodes
        self.band = band
        self.flat_l2 = flat_l2
        self.layers = layers
        self.hidden = hidden
        self.steps = steps
        self.learning_rate = learning_rate
        self.patience = patience
        self.seed = seed

    def _check_params(self) -> None:
        _check_number("max_nodes", self.max_nodes, 1, integer=True, high=4096)
        _check_number("band", self.band, 0, integer=True, high=64)
        _check_number("layers", self.layers, 1, integer=True, high=16)
        _check_number("hidden", self.hidden, 1, integer=True, high=4096)
        _check_number("flat_l2", self.flat_l2, 0.0)
        super()._check_params()

    def _network(self, x: np.ndarray):
        n_flat = self.max_nodes * (NODE_WIDTH + self.band)
        return _network(n_flat, x.shape[1] - n_flat, self.hidden, self.layers, self.seed)

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = flat_features(stats, self.max_nodes, self.band)
        scale = standardise(x)
        labels = LabelScale.of(y[:, None])
        with one_thread():
            net = self._network(x)
            inputs = torch.as_tensor(standardised(x, scale["mean"], scale["std"]))
            weights = optimise(net, inputs, y[:, None], labels, self._training(), {"flat.weight": self.flat_l2})
        return {"x_mean": scale["mean"], "x_std": scale["std"], **labels.arrays(), **weights}

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        import torch

        x = flat_features(stats, self.max_nodes, self.band)
        with one_thread(), torch.no_grad():
            net = load_weights(self._network(x), model)
            out = net(torch.as_tensor(standardised(x, model["x_mean"], model["x_std"]))).double().numpy()
        return LabelScale.from_model(model).decode(out, self.LOSS)[:, 0]
