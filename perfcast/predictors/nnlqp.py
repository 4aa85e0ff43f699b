"""NNLQP (Liu et al., "NNLQP: A Multi-Platform Neural Network Latency Query and Prediction System
with An Evolving Database", ICPP 2022), multi-platform part: one network embedding shared by every
platform, one regression head per platform, pre-trained on many platforms together; a new platform
gets a new head fine-tuned for a few steps on its few measurements.

Here the embedding is a multilayer perceptron of the graph-level features (``log1p`` of FLOPs,
parameters, memory access, batch size, node counts, per-op-family costs and dataflow counts,
standardised; NNLQP's GNN reads the same static features per node). Every labelled (device,
target) is one platform task; labels are ``log y`` standardised per task, so each platform weighs
the same. Adapting: the new head starts at the mean of the source heads of the same target with
its bias moved to the samples' mean log label, then takes ``finetune_steps`` steps of gradient
descent on the samples' squared log error (step ``finetune_rate`` over the largest curvature).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from perfcast.predictors.base import register_predictor
from perfcast.predictors.features import GraphStats
from perfcast.predictors.kernel import _check_number
from perfcast.predictors.multidevice import (
    AdaptedPredictor,
    MultiDeviceModel,
    Task,
    check_perceptron_params,
    gradient_head,
    register_multidevice,
    task_pairs,
    train_trunk_heads,
)


class TrunkHeadsModel(MultiDeviceModel):
    """A shared trunk with one linear head per task (NNLQP's layout), heads kept in raw log units."""

    def __init__(self, hidden: Sequence[int] = (64, 32), steps: int = 400, learning_rate: float = 3e-3,
                 weight_decay: float = 1e-4, seed: int = 0) -> None:
        self.hidden = hidden
        self.steps = steps
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.seed = seed

    def _check_params(self) -> None:
        check_perceptron_params(self)

    def get_params(self) -> dict:
        params = super().get_params()
        params["hidden"] = [int(w) for w in params["hidden"]]
        return params

    def _fit_tasks(self, x: np.ndarray, stats: list[GraphStats], tasks: list[Task]) -> None:
        mu = np.array([t.log_y.mean() for t in tasks])
        sigma = np.array([max(t.log_y.std(), 1e-3) for t in tasks])
        pairs = task_pairs([t.rows for t in tasks], [(t.log_y - m) / s for t, m, s in zip(tasks, mu, sigma)])
        trunk, heads = train_trunk_heads(x, pairs, len(tasks), list(self.hidden), self.steps, self.learning_rate,
                                         self.weight_decay, self.seed)
        heads = heads * sigma[:, None]
        heads[:, -1] += mu
        self.arrays_.update({f"trunk_{k}": v for k, v in trunk.items()})
        self.arrays_["heads"] = heads

    def trunk_arrays(self) -> dict[str, np.ndarray]:
        out = super().trunk_arrays()
        out.update({k[len("trunk_"):]: v for k, v in self.arrays_.items() if k.startswith("trunk_")})
        return out

    def source_heads(self, target: str) -> np.ndarray:
        heads = np.asarray(self.arrays_["heads"], float)
        return heads.reshape(len(self.tasks), -1)[self.source_tasks(target)]

    def _device_trunk(self, target, stats, log_y, device):
        return self.trunk_arrays(), {"heads": self.source_heads(target)}


@register_multidevice("nnlqp")
class NNLQP(TrunkHeadsModel):
    """Shared embedding, one head per platform; a new platform's head fine-tuned for a few steps."""

    predictor_name = "nnlqp"

    def __init__(self, hidden: Sequence[int] = (64, 32), steps: int = 400, learning_rate: float = 3e-3,
                 weight_decay: float = 1e-4, seed: int = 0, finetune_steps: int = 50,
                 finetune_rate: float = 0.5) -> None:
        super().__init__(hidden, steps, learning_rate, weight_decay, seed)
        self.finetune_steps = finetune_steps
        self.finetune_rate = finetune_rate

    def _check_params(self) -> None:
        super()._check_params()
        _check_number("finetune_steps", self.finetune_steps, 0, integer=True)
        _check_number("finetune_rate", self.finetune_rate, 1e-6, high=1.9)

    def _fit_head(self, phi, log_y, prior):
        start = prior["heads"].mean(axis=0)
        start[-1] += float(np.mean(log_y - phi @ start))
        return gradient_head(phi, log_y, start, self.finetune_steps, self.finetune_rate)


@register_predictor("nnlqp")
class NNLQPPredictor(AdaptedPredictor):
    """A new device's NNLQP head on the shared embedding (see :class:`NNLQP`)."""
