"""HELP (Lee et al., "HELP: Hardware-Adaptive Efficient Latency Prediction for NAS via
Meta-Learning", NeurIPS 2021): a device is described by the latencies of a fixed set of reference
networks measured on it (the hardware embedding), and one latency model conditioned on that
embedding serves every device.

Reference networks: ``n_refs`` networks of the training data, those labelled on the most source
tasks, spread evenly over the range of their mean standardised log label. A task's embedding is
``v - mean(v)``, ``v`` its log labels of the references (the shape of the device's profile; its
overall speed is left to the head). The model is a perceptron of ``[network features, embedding]``
predicting ``log y - mean(v)`` (over the training spread).

A new device measures arbitrary networks, rarely the references. Where a reference is not among
its samples, its log label is imputed by ridge regression (``IMPUTE_RIDGE``) of the samples' log
labels on three probe features (``log1p`` of live FLOPs, live bytes moved and live nodes,
standardised); samples that are references are used as measured. To make the model expect such
embeddings, each source task also gets ``variants`` embeddings imputed from random subsets of
5 to 20 of its rows, drawn uniformly with the measured one during training.

Meta-learning: HELP trains with MAML (an inner loop fine-tunes on a device's few samples, the
outer loop learns an initialisation that fine-tunes well). Here the first-order simplification
is used: episodic joint training over the source devices, each step a random mix of (network,
device, embedding variant) pairs, so the model learns to use an embedding estimated from few
samples; adaptation is then the embedding plus a fine-tuned log-linear output map
``log y = b f + c`` (``b`` shrunk towards 1 by ``prior_rows`` rows), fitted in closed form on the
samples, which is where the inner loop of MAML would move an affine output layer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from perfcast.predictors.base import register_predictor
from perfcast.predictors.features import COLUMNS
from perfcast.predictors.kernel import _check_number
from perfcast.predictors.multidevice import (
    AdaptedPredictor,
    ConditionedModel,
    Task,
    log_rows,
    register_multidevice,
)

PROBES = ("live_flops", "live_bytes", "live_nodes")
IMPUTE_RIDGE = 1.0
SUBSET_SIZES = (5, 20)
_PROBE_INDEX = [COLUMNS.index(c) for c in PROBES]


def impute(probe_rows: np.ndarray, log_y: np.ndarray, probe_refs: np.ndarray) -> np.ndarray:
    """Log labels of the references from the samples: ridge regression on the probes (intercept
    free)."""
    a = np.column_stack([probe_rows, np.ones(len(log_y))])
    penalty = IMPUTE_RIDGE * np.diag(np.r_[np.ones(probe_rows.shape[1]), 0.0])
    coef = np.linalg.solve(a.T @ a + penalty, a.T @ log_y)
    return np.column_stack([probe_refs, np.ones(len(probe_refs))]) @ coef


def choose_references(tasks: list[Task], n_networks: int, n_refs: int) -> np.ndarray:
    """Network indices of the references (see the module docstring)."""
    counts = np.zeros(n_networks, int)
    total = np.zeros(n_networks)
    for t in tasks:
        counts[t.rows] += 1
        total[t.rows] += (t.log_y - t.log_y.mean()) / max(t.log_y.std(), 1e-9)
    best = np.flatnonzero(counts == counts.max())
    order = best[np.argsort(total[best] / counts[best], kind="stable")]
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, min(n_refs, len(order)))).astype(int))
    return order[picks]


@register_multidevice("help")
class HELP(ConditionedModel):
    """Latency model conditioned on reference-network latencies (module docstring)."""

    predictor_name = "help"

    def __init__(self, n_refs: int = 10, variants: int = 8, hidden: Sequence[int] = (64, 32), steps: int = 800,
                 learning_rate: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
                 prior_rows: float = 2.0) -> None:
        super().__init__(hidden, steps, learning_rate, weight_decay, seed, prior_rows)
        self.n_refs = n_refs
        self.variants = variants

    def _check_params(self) -> None:
        super()._check_params()
        _check_number("n_refs", self.n_refs, 2, integer=True, high=100)
        _check_number("variants", self.variants, 0, integer=True, high=100)

    def _probes(self, z: np.ndarray) -> np.ndarray:
        return (z[:, _PROBE_INDEX] - self.arrays_["x_mean"][_PROBE_INDEX]) / self.arrays_["x_scale"][_PROBE_INDEX]

    def _reference_labels(self, measured: np.ndarray, known: np.ndarray, probe_rows: np.ndarray,
                          log_y: np.ndarray) -> np.ndarray:
        """Reference log labels: ``measured`` where ``known``, else imputed from the samples."""
        if known.all():
            return measured
        return np.where(known, measured, impute(probe_rows, log_y, self._probes(self.arrays_["ref_rows"])))

    def _conditions(self, x, stats, tasks):
        refs = choose_references(tasks, len(stats), int(self.n_refs))
        z = log_rows(stats)
        self.arrays_["ref_rows"] = z[refs]
        self.state_["ref_hashes"] = [stats[i].content_hash for i in refs]
        probes = self._probes(z)
        rng = np.random.default_rng(self.seed)
        n_var = int(self.variants) + 1
        cond, labels = [], []
        for t in tasks:
            measured = np.full(len(refs), np.nan)
            where = {r: i for i, r in enumerate(t.rows)}
            for j, r in enumerate(refs):
                if r in where:
                    measured[j] = t.log_y[where[r]]
            known = ~np.isnan(measured)
            v = self._reference_labels(np.nan_to_num(measured), known, probes[t.rows], t.log_y)
            cond.append(v - v.mean())
            for _ in range(n_var - 1):
                size = int(rng.integers(SUBSET_SIZES[0], SUBSET_SIZES[1] + 1))
                pick = rng.choice(len(t.rows), size=min(size, len(t.rows)), replace=False)
                guess = self._reference_labels(np.zeros(len(refs)), np.zeros(len(refs), bool), probes[t.rows[pick]],
                                               t.log_y[pick])
                cond.append(guess - guess.mean())
            labels.append(t.log_y - v.mean())
        spread = max(float(np.concatenate(labels).std()), 1e-3)
        labels = [lab / spread for lab in labels]
        rows_per_task = [len(t.rows) for t in tasks]
        base = np.repeat(np.arange(len(tasks)) * n_var, rows_per_task)
        cond_index = base[:, None] + np.arange(n_var)[None, :]
        return np.vstack(cond), cond_index, labels

    def _new_condition(self, target, stats, log_y, device):
        hashes = {s.content_hash: i for i, s in enumerate(stats)}
        refs = self.state_["ref_hashes"]
        known = np.array([h in hashes for h in refs])
        measured = np.array([log_y[hashes[h]] if h in hashes else 0.0 for h in refs])
        v = self._reference_labels(measured, known, self._probes(log_rows(stats)), log_y)
        return v - v.mean()


@register_predictor("help")
class HELPPredictor(AdaptedPredictor):
    """A new device's HELP model: its embedding folded in and a fitted output map (see :class:`HELP`)."""
