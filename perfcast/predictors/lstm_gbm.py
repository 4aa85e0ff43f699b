"""An LSTM encoder with gradient-boosted trees, after the energy-aware NAS predictor of the
Sustainable Cities and Society 2021 paper: a recurrent network reads the architecture as a
sequence and its final state, an embedding of the network, joins hand-made features in a LightGBM
regressor.

The sequence is the network's operators in topological order (at most ``max_len``, the first
ones), each the node features of :mod:`perfcast.predictors.graphdata` (op-kind and family
one-hots, ``log1p`` sizes, standardised by the training mean and standard deviation). A one-layer
LSTM of ``hidden`` units reads it ``chunk`` operators per step (their rows concatenated, the last
step zero-padded), which keeps training to about a second per hundred networks on one core; its
last state goes through a linear regression head to the standardised log of the target, and the
LSTM and head are trained together on squared error (:func:`perfcast.predictors.gnn.optimise`).
Then LightGBM (``n_estimators`` trees of ``num_leaves`` leaves, the settings of
:mod:`perfcast.predictors.gbt`) learns the log of the target from the embedding (the LSTM's last
state) beside the ``log1p`` graph-level features. The trees are stored as LightGBM's model text in
``predictor.json``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from perfcast.predictors.base import _log_features, register_predictor
from perfcast.predictors.features import GraphStats
from perfcast.predictors.gbt import _booster, _booster_params, known_features
from perfcast.predictors.gnn import (
    LabelScale,
    TorchPredictor,
    load_weights,
    one_thread,
    optimise,
    standardise,
    standardised,
)
from perfcast.predictors.graphdata import NODE_FEATURES, NUMERIC_START, stats_data
from perfcast.predictors.kernel import _check_number

_LABEL_FLOOR = 1e-12


def _sequences(stats: Sequence[GraphStats], max_len: int) -> list[np.ndarray]:
    return [stats_data(s).x.numpy()[:max_len] for s in stats]


def _steps(sequences: list[np.ndarray], mean: np.ndarray, std: np.ndarray, chunk: int) -> list[np.ndarray]:
    """Standardised node rows, ``chunk`` consecutive nodes concatenated per step (zero-padded)."""
    out = []
    for x in sequences:
        steps = -(-x.shape[0] // chunk)
        padded = np.zeros((steps * chunk, x.shape[1]), np.float32)
        padded[:x.shape[0]] = x
        padded[:x.shape[0], NUMERIC_START:] = standardised(x[:, NUMERIC_START:], mean, std)
        out.append(padded.reshape(steps, chunk * x.shape[1]))
    return out


def _network(hidden: int, chunk: int, seed: int):
    """An LSTM over node sequences; ``embed(packed)`` gives each sequence's last state and the
    module's output the regression head of it."""
    import torch

    nn = torch.nn
    torch.manual_seed(seed)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(chunk * len(NODE_FEATURES), hidden, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def embed(self, packed):
            _, (h, _) = self.lstm(packed)
            return h[-1]

        def forward(self, packed):
            return self.head(self.embed(packed))

    return Encoder()


def _pack(sequences: list[np.ndarray]):
    import torch

    return torch.nn.utils.rnn.pack_sequence([torch.as_tensor(x) for x in sequences], enforce_sorted=False)


@register_predictor("lstm_gbm")
class LstmGbm(TorchPredictor):
    """LSTM embedding of the operator sequence plus graph features, into LightGBM; per target."""

    def __init__(self, hidden: int = 16, max_len: int = 512, chunk: int = 8, steps: int = 60,
                 learning_rate: float = 0.02, patience: int = 20, n_estimators: int = 300,
                 gbm_learning_rate: float = 0.05, num_leaves: int = 15, min_data_in_leaf: int = 3,
                 seed: int = 0) -> None:
        self.hidden = hidden
        self.max_len = max_len
        self.chunk = chunk
        self.steps = steps
        self.learning_rate = learning_rate
        self.patience = patience
        self.n_estimators = n_estimators
        self.gbm_learning_rate = gbm_learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.seed = seed

    def _check_params(self) -> None:
        _check_number("hidden", self.hidden, 1, integer=True, high=1024)
        _check_number("max_len", self.max_len, 1, integer=True)
        _check_number("chunk", self.chunk, 1, integer=True, high=64)
        _check_number("n_estimators", self.n_estimators, 1, integer=True)
        _check_number("gbm_learning_rate", self.gbm_learning_rate, 1e-6, high=1.0)
        _check_number("num_leaves", self.num_leaves, 2, integer=True)
        _check_number("min_data_in_leaf", self.min_data_in_leaf, 1, integer=True)
        super()._check_params()

    def _embeddings(self, model: Mapping, stats: Sequence[GraphStats]) -> np.ndarray:
        import torch

        sequences = _steps(_sequences(stats, self.max_len), model["x_mean"], model["x_std"], self.chunk)
        with one_thread(), torch.no_grad():
            net = load_weights(_network(self.hidden, self.chunk, self.seed), model)
            return net.embed(_pack(sequences)).double().numpy()

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        import lightgbm

        sequences = _sequences(stats, self.max_len)
        scale = standardise(np.vstack(sequences)[:, NUMERIC_START:])
        labels = LabelScale.of(y[:, None])
        with one_thread():
            packed = _pack(_steps(sequences, scale["mean"], scale["std"], self.chunk))
            weights = optimise(_network(self.hidden, self.chunk, self.seed), packed, y[:, None], labels,
                               self._training())
        model = {"x_mean": scale["mean"], "x_std": scale["std"], **labels.arrays(), **weights}
        features = np.hstack([self._embeddings(model, stats), _log_features(stats, target)])
        params = _booster_params(self.num_leaves, self.gbm_learning_rate, self.min_data_in_leaf, self.seed)
        data = lightgbm.Dataset(features, np.log(np.maximum(y, _LABEL_FLOOR)), params=params)
        model["booster"] = lightgbm.train(params, data, num_boost_round=self.n_estimators).model_to_string()
        return model

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        features = np.hstack([self._embeddings(model, stats), _log_features(stats, target)])
        return np.exp(_booster(model["booster"]).predict(known_features(model["booster"], features), num_threads=1))
