"""Halide's learned cost model (Adams et al., "Learning to Optimize Halide with Tree Search and
Random Programs", SIGGRAPH 2019): hand-designed cost terms per stage whose coefficients a small
neural network predicts.

Every node is a stage with the terms (:data:`TERMS`)

- ``compute``: FLOPs;
- ``memory``: bytes read + written;
- ``launch``: 1 (per-operator dispatch overhead);
- ``vector_waste``: output elements times the fraction of SIMD lanes left idle when the innermost
  dimension is not a multiple of ``VECTOR_LANES`` (``(ceil(d / 16) 16 - d) / d``);
- ``cache_spill``: bytes times ``log2`` of how far the node's footprint (bytes read + written)
  exceeds ``CACHE_BYTES`` (0 when it fits).

A network's cost is ``sum over nodes sum_k coef_k(node) term_k(node)`` plus non-negative graph
terms (a constant; for ``memory_bytes`` also the activation peak and the weight bytes, which are
not sums over nodes). ``coef_k(node) = s_k softplus(f_k(node))``: ``s_k`` is a per-term scale from
a non-negative least-squares fit of the summed terms (so training starts near the best
constant-coefficient model; a node term that fit gives no weight starts where it adds a tenth of
the median label to the median network, a graph term where it adds at most a tenth of the smallest
label, so a constant cannot swamp the small networks) and ``f`` is a multilayer perceptron (one
hidden layer of ``hidden`` tanh units) of the node's features: a learned embedding (``embed``
numbers) of its kind (op type, ``Conv:dw`` for depthwise; kinds not seen in training share one),
the embedding of the kind of its first producer, and the standardised ``log1p`` of its shape
features (MACs, FLOPs, bytes, elements, kernel size, channels, stride, group, innermost dimension).
The network is trained with Adam on the mean relative error ``|yhat / y - 1|`` (smoothed) plus
``l2`` times the squares of the output weights, of the embeddings (mean) and of the graph terms'
departures from their least-squares start (those the fit gave no weight have no start to keep and
are free), which keeps the coefficients near constant where few labels say otherwise; full batch,
for ``steps`` steps, with torch on one CPU thread in float32 and a fixed seed; predictions are
computed with numpy in float64 from the stored weights, so a saved and reloaded predictor predicts
the same numbers.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np

from perfcast.errors import UsageError
from perfcast.predictors.base import Predictor, fit_relative_nnls, register_predictor
from perfcast.predictors.features import NODE_COLUMNS, GraphStats, graph_stats
from perfcast.predictors.kernel import _check_number, extra_columns

TERMS = ("compute", "memory", "launch", "vector_waste", "cache_spill")
SHAPE_FEATURES = ("macs", "flops", "bytes_read", "bytes_written", "in_elems", "out_elems", "weight_elems", "kernel",
                  "in_channels", "out_channels", "stride", "group", "inner_dim")
VECTOR_LANES = 16
CACHE_BYTES = 1 << 20
UNKNOWN = "<unknown>"
_N = {c: i for i, c in enumerate(NODE_COLUMNS)}
_SHAPE_COLS = [_N[c] for c in SHAPE_FEATURES]
_SMOOTH = 1e-3
_START_SHARE = 0.1  # share of a label that a term without a least-squares weight starts at
_SOFTPLUS_ONE = float(np.log(np.expm1(1.0)))  # softplus of it is 1


def node_terms(values: np.ndarray) -> np.ndarray:
    """The :data:`TERMS` of every node, from a :class:`NodeTable`'s values."""
    moved = values[:, _N["bytes_read"]] + values[:, _N["bytes_written"]]
    inner = np.maximum(values[:, _N["inner_dim"]], 1.0)
    waste = (np.ceil(inner / VECTOR_LANES) * VECTOR_LANES - inner) / inner
    spill = moved * np.log2(np.maximum(moved / CACHE_BYTES, 1.0))
    return np.column_stack([values[:, _N["flops"]], moved, np.ones(len(values)),
                            values[:, _N["out_elems"]] * waste, spill])


def _graph_arrays(stats: Sequence[GraphStats], vocab: Mapping[str, int]):
    """Per node of all graphs: kind index, first producer's kind index, log shape features, terms,
    owning graph."""
    kinds, producers, shapes, terms, owner = [], [], [], [], []
    for g, s in enumerate(stats):
        t = s.nodes
        index = [vocab.get(k, 0) for k in t.kinds]
        kinds.extend(index)
        producers.extend(index[p[0]] if p else 0 for p in t.producers)
        shapes.append(np.log1p(np.maximum(t.values[:, _SHAPE_COLS], 0.0)))
        terms.append(node_terms(t.values))
        owner.extend([g] * len(t))
    width = len(SHAPE_FEATURES)
    return (np.array(kinds, int), np.array(producers, int), np.vstack(shapes) if shapes else np.zeros((0, width)),
            np.vstack(terms) if terms else np.zeros((0, len(TERMS))), np.array(owner, int))


def _typical_scale(columns: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per node-term column, the scale at which the column adds ``_START_SHARE`` of the median
    label to the median network (the start of a node term that the least-squares fit gives no weight; a
    column whose median is zero takes :func:`_modest_scale`, 0 when the column is)."""
    median = np.median(columns, axis=0)
    typical = _START_SHARE * np.median(y) / np.where(median > 0, median, 1.0)
    return np.where(median > 0, typical, _modest_scale(columns, y))


def _modest_scale(columns: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column, the scale at which the column adds at most ``_START_SHARE`` of any training
    label (0 for a column that is zero everywhere): the start of a graph term that the
    least-squares fit gives no weight. A start relative to the median label would put a constant
    worth a tenth of a median network into networks a hundred times smaller."""
    ratio = np.where(columns > 0, y[:, None] / np.maximum(columns, 1e-300), np.inf)
    least = ratio.min(axis=0)
    return _START_SHARE * np.where(np.isfinite(least), least, 0.0)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


@register_predictor("halide")
class HalideCostModel(Predictor):
    """Per-node cost terms with coefficients from a small MLP over op-type embeddings and shapes."""

    LEARNS_FOLDING = True

    def __init__(self, hidden: int = 16, embed: int = 4, steps: int = 250, learning_rate: float = 0.02,
                 l2: float = 0.01, seed: int = 0) -> None:
        self.hidden = hidden
        self.embed = embed
        self.steps = steps
        self.learning_rate = learning_rate
        self.l2 = l2
        self.seed = seed

    def _check_params(self) -> None:
        _check_number("hidden", self.hidden, 1, integer=True, high=256)
        _check_number("embed", self.embed, 1, integer=True, high=64)
        _check_number("steps", self.steps, 1, integer=True)
        _check_number("seed", self.seed, 0, integer=True)
        _check_number("learning_rate", self.learning_rate, 1e-6, high=1.0)
        _check_number("l2", self.l2, 0.0)

    # -- hooks ---------------------------------------------------------------------------------------
    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        import torch

        vocab_list = [UNKNOWN] + sorted({k for s in stats for k in s.nodes.kinds})
        vocab = {k: i for i, k in enumerate(vocab_list)}
        kinds, producers, shapes, terms, owner = _graph_arrays(stats, vocab)
        extra = extra_columns(target, stats)
        summed = np.zeros((len(stats), len(TERMS)))
        np.add.at(summed, owner, terms)
        init = fit_relative_nnls(np.column_stack([summed, extra]), y)
        scale = np.where(init[:len(TERMS)] > 0, init[:len(TERMS)], _typical_scale(summed, y))
        extra_scale = np.where(init[len(TERMS):] > 0, init[len(TERMS):], _modest_scale(extra, y))
        mean, std = shapes.mean(axis=0), np.maximum(shapes.std(axis=0), 1e-6)

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            # identical nodes (same kinds, shapes and terms) share one row of the network
            rows = np.column_stack([kinds, producers, shapes, terms])
            unique, inverse = np.unique(rows, axis=0, return_inverse=True)
            weights = self._train(unique[:, 0].astype(int), unique[:, 1].astype(int), (unique[:, 2:2 + mean.size] - mean) / std,
                                  unique[:, 2 + mean.size:] * scale, inverse.reshape(-1), owner, extra * extra_scale,
                                  init[len(TERMS):] > 0, y, len(vocab_list))
        finally:
            torch.set_num_threads(previous)
        weights["extra_coef"] = weights.pop("extra_multiplier") * extra_scale
        return {"kinds": json.dumps(vocab_list), "mean": mean, "std": std, "scale": scale, **weights}

    def _train(self, kinds, producers, z, scaled_terms, inverse, owner, scaled_extra, anchored, y, n_kinds) -> dict:
        """Fit the network on distinct node rows; ``inverse`` maps each node to its row and ``owner``
        to its graph; the graph terms marked ``anchored`` (those with a least-squares start) are
        penalised for leaving it."""
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        h, e, width = self.hidden, self.embed, z.shape[1]

        def param(*shape, std):
            return torch.nn.Parameter(torch.randn(*shape, generator=gen) * std)

        emb = param(n_kinds, e, std=0.1)
        w1 = param(2 * e + width, h, std=(2 * e + width) ** -0.5)
        b1 = torch.nn.Parameter(torch.zeros(h))
        w2 = param(h, len(TERMS), std=0.01)
        b2 = torch.nn.Parameter(torch.full((len(TERMS),), _SOFTPLUS_ONE))
        raw_extra = torch.nn.Parameter(torch.full((scaled_extra.shape[1],), _SOFTPLUS_ONE))
        kinds_t, prod_t = torch.as_tensor(kinds), torch.as_tensor(producers)
        z_t = torch.as_tensor(z, dtype=torch.float32)
        terms_t = torch.as_tensor(scaled_terms, dtype=torch.float32)
        owner_t, inverse_t = torch.as_tensor(owner), torch.as_tensor(inverse)
        extra_t = torch.as_tensor(scaled_extra, dtype=torch.float32)
        y_t = torch.as_tensor(y, dtype=torch.float32)
        anchored_t = torch.as_tensor(np.asarray(anchored, dtype=np.float32))
        params = [emb, w1, b1, w2, b2, raw_extra]
        opt = torch.optim.Adam(params, lr=float(self.learning_rate))
        for _ in range(self.steps):
            opt.zero_grad()
            x = torch.cat([emb[kinds_t], emb[prod_t], z_t], dim=1)
            coef = torch.nn.functional.softplus(torch.tanh(x @ w1 + b1) @ w2 + b2)
            per_node = (coef * terms_t).sum(dim=1)
            pred = torch.zeros(len(y), dtype=per_node.dtype).index_add(0, owner_t, per_node[inverse_t])
            pred = pred + extra_t @ torch.nn.functional.softplus(raw_extra)
            loss = torch.sqrt((pred / y_t - 1.0) ** 2 + _SMOOTH ** 2).mean() + self.l2 * (
                (w2 ** 2).sum() + (emb ** 2).mean() + (anchored_t * (raw_extra - _SOFTPLUS_ONE).pow(2)).sum())
            loss.backward()
            opt.step()
        out = {name: v.detach().double().numpy() for name, v in (("emb", emb), ("w1", w1), ("b1", b1), ("w2", w2),
                                                                 ("b2", b2))}
        out["extra_multiplier"] = torch.nn.functional.softplus(raw_extra).detach().double().numpy()
        return out

    def _coefficients(self, model: Mapping, stats: Sequence[GraphStats]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per node of ``stats``: coefficients (scales included), terms and owning graph."""
        vocab = {k: i for i, k in enumerate(json.loads(model["kinds"]))}
        kinds, producers, shapes, terms, owner = _graph_arrays(stats, vocab)
        emb = np.asarray(model["emb"]).reshape(len(vocab), -1)
        x = np.column_stack([emb[kinds], emb[producers], (shapes - model["mean"]) / model["std"]])
        hidden = np.tanh(x @ np.asarray(model["w1"]).reshape(x.shape[1], -1) + model["b1"])
        coef = _softplus(hidden @ np.asarray(model["w2"]).reshape(hidden.shape[1], -1) + model["b2"]) * model["scale"]
        return coef, terms, owner

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        coef, terms, owner = self._coefficients(model, stats)
        per_node = (coef * terms).sum(axis=1)
        return np.bincount(owner, weights=per_node, minlength=len(stats)) + extra_columns(target, stats) @ model["extra_coef"]

    def coefficients(self, graph, target: str = "latency_ms") -> dict[str, np.ndarray]:
        """``{term: coefficient of each node}`` that the fitted network gives ``graph``'s nodes."""
        self._fitted()
        if target not in self.models_:
            raise UsageError("target", f"no model fitted for {target!r}")
        coef, _, _ = self._coefficients(self.models_[target], [graph_stats(graph)])
        return {t: coef[:, k] for k, t in enumerate(TERMS)}
