"""PALEO (Qi et al., ICLR 2017): per-layer roofline time with device constants calibrated from
end-to-end measurements.

Time of one node with ``f`` FLOPs moving ``b`` bytes on a device of peak throughput ``P`` FLOP/s and
bandwidth ``B`` bytes/s, plus a fixed per-node overhead ``o``:

- ``mode="sum"``: ``f / P + b / B + o`` (compute and memory do not overlap, PALEO's own form); the
  network time is linear in the per-graph sums of FLOPs, bytes and node counts, so ``1/P``, ``1/B``
  and ``o`` come from one non-negative least-squares fit;
- ``mode="max"``: ``max(f / P, b / B) + o`` (perfect overlap, the roofline); for a fixed machine
  balance ``r = P / B`` the time is ``sum(max(f, r b)) / P + o n``, linear again, so ``r`` is
  searched on a log grid (1e-3 to 1e4 FLOP/byte, then refined between the best neighbours);
- ``mode="auto"`` (default): both are fitted and the one with the lower relative error on the
  training labels is kept (per target; see ``model["mode"]``: 0 sum, 1 max).

Nodes are those with a cost rule (per-node FLOPs and bytes from the op registry). Energy uses the
same form (mJ per FLOP, per byte and per node). Memory is ``a * activation_peak_bytes +
b * weight_bytes + c``. All fits minimise relative error with non-negative coefficients.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from perfcast.errors import UsageError
from perfcast.predictors.base import Predictor, fit_relative_nnls, register_predictor
from perfcast.predictors.features import COLUMNS, GraphStats

MODES = ("auto", "sum", "max")
_PEAK = COLUMNS.index("activation_peak_bytes")
_WEIGHTS = COLUMNS.index("weight_bytes")
_COARSE_RATIOS = np.logspace(-3, 4, 57)


def _relative_error(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(((pred - y) / np.maximum(y, 1e-30)) ** 2))


def _sum_design(stats: list[GraphStats]) -> np.ndarray:
    return np.array([[s.node_flops.sum(), s.node_bytes.sum(), s.node_flops.size] for s in stats], float)


class _NodeCosts:
    """Every node's FLOPs and bytes of several graphs, concatenated, with each node's graph."""

    def __init__(self, stats: list[GraphStats]) -> None:
        counts = np.array([s.node_flops.size for s in stats])
        self.n = len(stats)
        self.counts = counts.astype(float)
        self.owner = np.repeat(np.arange(self.n), counts)
        self.flops = np.concatenate([s.node_flops for s in stats]) if self.n else np.zeros(0)
        self.bytes = np.concatenate([s.node_bytes for s in stats]) if self.n else np.zeros(0)


def _max_design(costs: _NodeCosts, ratio: float) -> np.ndarray:
    per_graph = np.bincount(costs.owner, weights=np.maximum(costs.flops, ratio * costs.bytes), minlength=costs.n)
    return np.column_stack([per_graph, costs.counts])


def _fit_sum(stats: list[GraphStats], y: np.ndarray) -> tuple[np.ndarray, float]:
    a = _sum_design(stats)
    coef = fit_relative_nnls(a, y)
    return np.array([coef[0], coef[1], coef[2], 0.0, 0.0]), _relative_error(a @ coef, y)


def _fit_max_at(costs: _NodeCosts, y: np.ndarray, ratio: float) -> tuple[np.ndarray, float]:
    a = _max_design(costs, ratio)
    coef = fit_relative_nnls(a, y)
    return np.array([coef[0], coef[0] * ratio, coef[1], 1.0, ratio]), _relative_error(a @ coef, y)


def _fit_max(stats: list[GraphStats], y: np.ndarray) -> tuple[np.ndarray, float]:
    costs = _NodeCosts(stats)
    errors = [_fit_max_at(costs, y, r)[1] for r in _COARSE_RATIOS]
    best = int(np.argmin(errors))
    lo, hi = _COARSE_RATIOS[max(best - 1, 0)], _COARSE_RATIOS[min(best + 1, _COARSE_RATIOS.size - 1)]
    fits = [_fit_max_at(costs, y, r) for r in np.geomspace(lo, hi, 41)]
    return min(fits, key=lambda f: f[1])


@register_predictor("paleo")
class Paleo(Predictor):
    """Roofline per node (``mode`` sum, max or auto) with calibrated device constants."""

    LEARNS_FOLDING = True

    def __init__(self, mode: str = "auto") -> None:
        self.mode = mode

    def _check_params(self) -> None:
        if self.mode not in MODES:
            raise UsageError("mode", f"must be one of {', '.join(MODES)}, not {self.mode!r}")

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict[str, np.ndarray]:
        if target == "memory_bytes":
            return {"coef": fit_relative_nnls(_memory_design(stats), y)}
        fits = []
        if self.mode in ("auto", "sum"):
            fits.append(_fit_sum(stats, y))
        if self.mode in ("auto", "max"):
            fits.append(_fit_max(stats, y))
        params, _ = min(fits, key=lambda f: f[1])
        # target units per FLOP, per byte and per node; mode (0 sum, 1 max); machine balance r
        return {"coef": params[:3], "mode": params[3:4], "ratio": params[4:5]}

    def _predict_target(self, target: str, model: Mapping[str, np.ndarray], stats: list[GraphStats]) -> np.ndarray:
        coef = model["coef"]
        if target == "memory_bytes":
            return _memory_design(stats) @ coef
        if model["mode"][0] == 0:
            return _sum_design(stats) @ coef
        return _max_design(_NodeCosts(stats), float(model["ratio"][0])) @ np.array([coef[0], coef[2]])

    def device_constants(self, target: str = "latency_ms") -> dict:
        """The calibrated constants of a roofline target and the mode kept. For ``latency_ms``:
        ``peak_flops_per_s``, ``bandwidth_bytes_per_s`` and ``overhead_per_node`` in ms; for
        ``energy_mj`` the first two are FLOPs and bytes per mJ and the overhead is in mJ."""
        self._fitted()
        if target not in self.models_ or target == "memory_bytes":
            raise UsageError("target", f"no roofline fitted for {target!r}")
        per_flop, per_byte, overhead = (float(v) for v in self.models_[target]["coef"])
        scale = 1e3 if target == "latency_ms" else 1.0  # ms -> s
        return {
            "mode": "max" if self.models_[target]["mode"][0] else "sum",
            "peak_flops_per_s": scale / per_flop if per_flop > 0 else float("inf"),
            "bandwidth_bytes_per_s": scale / per_byte if per_byte > 0 else float("inf"),
            "overhead_per_node": overhead,
        }


def _memory_design(stats: list[GraphStats]) -> np.ndarray:
    rows = np.vstack([s.row for s in stats])
    return np.column_stack([rows[:, _PEAK], rows[:, _WEIGHTS], np.ones(len(stats))])
