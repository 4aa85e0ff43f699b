"""Evaluation of predictors: accuracy metrics (pure functions) in :mod:`perfcast.evaluation.metrics`."""

from perfcast.evaluation.metrics import (
    accuracy_within,
    collapse_by_hash,
    coverage,
    kendall,
    mape,
    rmse,
    spearman,
    summarize,
)

__all__ = ["accuracy_within", "collapse_by_hash", "coverage", "kendall", "mape", "rmse", "spearman", "summarize"]
