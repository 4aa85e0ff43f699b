"""Predictors of latency, energy and memory: one module per method behind one interface.

``get_predictor("flops")`` / ``get_predictor("paleo", mode="max")`` build one by name;
``Predictor.load(path)`` reads a saved one back. See :mod:`perfcast.predictors.base`.
"""

from perfcast.predictors import flops, gbt, halide, kernel, lut, mix, opwise, paleo, spore, transfer  # noqa: F401  (registers the predictors)
from perfcast.predictors import brpnas, cs230, lstm_gbm, perfsage, tpu_cost  # noqa: F401  (graph-learning predictors)
from perfcast.predictors import fewshot, help, hwfeat, nnlqp  # noqa: F401  (the multi-device methods)
from perfcast.predictors.base import (
    TARGETS,
    Predictor,
    get_predictor,
    predictor_class,
    predictor_names,
    register_predictor,
)

__all__ = ["TARGETS", "Predictor", "get_predictor", "predictor_class", "predictor_names", "register_predictor"]
