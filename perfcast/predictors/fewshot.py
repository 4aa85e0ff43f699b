"""perfcast's own few-shot model: a multi-device, multi-target backbone whose new-device head is
inferred by Bayesian linear regression with a prior learned from the source devices.

Backbone: NNLQP's layout (:class:`perfcast.predictors.nnlqp.TrunkHeadsModel`): a shared perceptron
of the graph features and one linear head per (device, target) task, latency and energy tasks
trained together. The source heads ``w_d`` (raw ``log y`` units, bias included) are samples of
what a device looks like in that embedding; a new device's head has the prior
``w ~ N(mean w_d, cov w_d + jitter)`` over the source tasks of the same target, widened along the
bias (devices differ most in overall speed) and along the mean head (a device that is uniformly
more sensitive to cost). Given K samples, the head is the posterior mean of
``log y = [h(x), 1] w + e``, the noise variance of ``e`` chosen from a small grid by marginal
likelihood: with few samples the head stays near the span of known devices (a GP whose kernel is
learned from the other devices), with more it moves to fit them.

Conformal intervals come from leave-one-out residuals on the K samples
(:class:`perfcast.predictors.multidevice.AdaptedPredictor`).

:func:`fit_fewshot_from_bases` serves :func:`perfcast.adapt.adapt`, which has fitted predictors
of other devices rather than their data: each base's predictions on a pool of networks are that
device's labels; the backbone is fitted on them and adapted to the samples.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from perfcast.errors import UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.base import Predictor, register_predictor
from perfcast.predictors.kernel import _check_number
from perfcast.predictors.multidevice import (
    AdaptedPredictor,
    check_samples,
    gaussian_head,
    register_multidevice,
)
from perfcast.predictors.nnlqp import TrunkHeadsModel
from perfcast.predictors.transfer import check_bases

BIAS_SD = 3.0  # prior deviation of the head's bias beyond the source spread (log units: a factor of 20)
SCALE_SD = 0.3  # prior deviation of a uniform scaling of the mean head
NOISE_SD = (0.01, 0.03, 0.1, 0.3)  # candidate noise deviations of log labels
MIN_POOL = 50


@register_multidevice("fewshot")
class FewShot(TrunkHeadsModel):
    """Multi-device, multi-target backbone with a Bayesian new-device head (module docstring)."""

    predictor_name = "fewshot"

    def __init__(self, hidden: Sequence[int] = (64, 32), steps: int = 400, learning_rate: float = 3e-3,
                 weight_decay: float = 1e-4, seed: int = 0, jitter: float = 0.05) -> None:
        super().__init__(hidden, steps, learning_rate, weight_decay, seed)
        self.jitter = jitter

    def _check_params(self) -> None:
        super()._check_params()
        _check_number("jitter", self.jitter, 0.0, high=10.0)

    def head_prior(self, heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of a new device's head given the source heads."""
        mean = heads.mean(axis=0)
        centred = heads - mean
        cov = centred.T @ centred / max(len(heads) - 1, 1)
        spread = float(np.mean(np.diag(cov)[:-1])) if heads.shape[1] > 1 else 0.0
        cov += np.eye(len(mean)) * self.jitter * max(spread, 1e-6)
        cov += SCALE_SD ** 2 * np.outer(np.r_[mean[:-1], 0.0], np.r_[mean[:-1], 0.0])
        cov[-1, -1] += BIAS_SD ** 2
        return mean, cov

    def _fit_head(self, phi, log_y, prior):
        mean, cov = self.head_prior(prior["heads"])
        return gaussian_head(phi, log_y, mean, cov, [s * s for s in NOISE_SD])


@register_predictor("fewshot")
class FewShotPredictor(AdaptedPredictor):
    """A new device's head on the few-shot backbone (see :class:`FewShot`)."""


def fit_fewshot_from_bases(graphs: Sequence[Graph], targets: Mapping[str, Sequence[float]],
                           bases: Sequence[Predictor], pool: Sequence[Graph] | None = None,
                           device: str | None = None, **params) -> Predictor:
    """A few-shot predictor of a new device from its samples and fitted ``bases`` of other devices.

    Each base is one source device whose labels are its own predictions on ``pool`` (unlabelled
    networks like those the device will be asked about) plus the sample graphs; at least
    :data:`MIN_POOL` distinct networks are needed, else :class:`UsageError`. ``params`` go to
    :class:`FewShot`."""
    graphs, labels = check_samples(graphs, targets)
    bases = check_bases(bases)
    if not bases:
        raise UsageError("bases", "needs at least one fitted predictor of another device")
    networks = list(graphs) + list(pool or [])
    if len({g.content_hash for g in networks}) < MIN_POOL:
        raise UsageError("pool", f"needs at least {MIN_POOL} distinct networks (samples included) to learn from bases")
    data = {f"base{i}": (networks, b.predict(networks)) for i, b in enumerate(bases)}
    return FewShot(**params).fit_devices(data).adapt(graphs, labels, device=device)
