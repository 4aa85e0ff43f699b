"""The baseline everyone quotes: a linear model of MACs and memory traffic.

For every target, ``y ~ a * macs + b * bytes + c`` with ``bytes`` = bytes read + written over all
nodes, fitted by non-negative least squares on relative error (so a 10 ms network and a 0.1 ms
network weigh the same). With ``use_bytes=False`` it is the pure MACs model ``y ~ a * macs + c``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from perfcast.errors import UsageError
from perfcast.predictors.base import Predictor, fit_relative_nnls, register_predictor
from perfcast.predictors.features import COLUMNS, GraphStats

_MACS = COLUMNS.index("macs")
_READ = COLUMNS.index("bytes_read")
_WRITTEN = COLUMNS.index("bytes_written")


@register_predictor("flops")
class FlopsLinear(Predictor):
    """``target = a * MACs + b * bytes + c`` per target, coefficients non-negative."""

    LEARNS_FOLDING = True

    def __init__(self, use_bytes: bool = True) -> None:
        self.use_bytes = use_bytes

    def _check_params(self) -> None:
        if not isinstance(self.use_bytes, bool):
            raise UsageError("use_bytes", f"must be true or false, not {self.use_bytes!r}")

    def _design(self, stats: list[GraphStats]) -> np.ndarray:
        rows = np.vstack([s.row for s in stats])
        columns = [rows[:, _MACS]]
        if self.use_bytes:
            columns.append(rows[:, _READ] + rows[:, _WRITTEN])
        columns.append(np.ones(len(stats)))
        return np.column_stack(columns)

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict[str, np.ndarray]:
        return {"coef": fit_relative_nnls(self._design(stats), y)}

    def _predict_target(self, target: str, model: Mapping[str, np.ndarray], stats: list[GraphStats]) -> np.ndarray:
        return self._design(stats) @ model["coef"]
