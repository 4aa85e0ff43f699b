"""Generalised latency prediction from hardware features (the once-for-all follow-up: Dudziak et
al. / Cai et al., 2021, "one predictor for many devices" fed a description of the hardware): a
hardware feature vector joined to the graph features, one model across devices, then fine-tuned
on a new device's few samples.

The hardware vector of a device (:data:`HARDWARE`, keyed by the device part of a
:data:`perfcast.datasets.shared.DEVICES` name, ``help:titanx`` -> ``titanx``) is: its class
(one-hot over :data:`CLASSES`), ``log10`` of its peak arithmetic rate (GFLOP/s, fp32; int8 TOPS for
the Edge TPU, 16-bit for Eyeriss and the FPGA), of its memory bandwidth (GB/s), of its parallel
units (CUDA cores, CPU cores, processing elements or DSP slices) and of the ridge point (peak over
bandwidth, FLOP per byte); each number column standardised over the table. The batch size is
part of the graph features. A target indicator (latency, energy, memory) is appended, so one
model serves every target. The model is a perceptron of ``[graph features, hardware vector]``
predicting standardised ``log y``; adapting folds the new device's vector in (the mean vector when
the device is not in the table) and fits ``log y = b f + c`` on the samples (``b`` shrunk towards 1).

The numbers are vendors' published peak figures (approximate; mobile SoCs: all CPU cores, big
and little, at their top clocks; DRAM bandwidth from bus width and transfer rate). The Titan X
is taken as the Pascal one (2016).
"""

from __future__ import annotations

import numpy as np

from perfcast.predictors.base import TARGETS, register_predictor
from perfcast.predictors.multidevice import (
    AdaptedPredictor,
    ConditionedModel,
    device_key,
    register_multidevice,
)

CLASSES = ("gpu", "cpu", "mobile", "tpu", "asic", "fpga")

# device -> (class, peak GFLOP/s, memory bandwidth GB/s, parallel units)
HARDWARE: dict[str, tuple[str, float, float, float]] = {
    "edgegpu": ("gpu", 665.0, 59.7, 256),  # Jetson TX2: 256 Pascal cores at 1.3 GHz, 128-bit LPDDR4
    "raspi4": ("mobile", 48.0, 12.8, 4),  # 4x Cortex-A72 1.5 GHz, 32-bit LPDDR4-3200
    "pixel3": ("mobile", 236.0, 29.9, 8),  # Snapdragon 845: 4x 2.8 GHz + 4x 1.77 GHz Kryo 385
    "edgetpu": ("tpu", 4000.0, 0.6, 4096),  # Coral Edge TPU: 4 TOPS int8, USB 3.0 host link
    "eyeriss": ("asic", 67.2, 1.0, 168),  # 168 PEs at 200 MHz, 16-bit MACs
    "fpga": ("fpga", 360.0, 12.8, 900),  # Zynq ZC706: 900 DSP slices at 200 MHz, 64-bit DDR3-1600
    "1080ti": ("gpu", 11340.0, 484.0, 3584),
    "2080ti": ("gpu", 13450.0, 616.0, 4352),
    "titanx": ("gpu", 10970.0, 480.0, 3584),
    "titanxp": ("gpu", 12150.0, 547.7, 3840),
    "v100": ("gpu", 15700.0, 900.0, 5120),
    "silver_4114": ("cpu", 704.0, 115.2, 10),  # 10 cores 2.2 GHz, one AVX-512 FMA unit, 6x DDR4-2400
    "silver_4210r": ("cpu", 768.0, 115.2, 10),  # 10 cores 2.4 GHz, one AVX-512 FMA unit, 6x DDR4-2400
    "gold_6240": ("cpu", 2995.0, 140.8, 18),  # 18 cores 2.6 GHz, two AVX-512 FMA units, 6x DDR4-2933
    "samsung_a50": ("mobile", 125.0, 14.9, 8),  # Exynos 9610: 4x A73 2.3 GHz + 4x A53 1.6 GHz
    "samsung_s7": ("mobile", 125.0, 28.7, 8),  # Exynos 8890: 4x Mongoose 2.3 GHz + 4x A53 1.6 GHz
    "essential_ph_1": ("mobile", 139.0, 29.8, 8),  # Snapdragon 835: 4x 2.45 GHz + 4x 1.9 GHz Kryo 280
}


def _numbers(entry: tuple[str, float, float, float]) -> np.ndarray:
    _, peak, bandwidth, units = entry
    return np.log10([peak, bandwidth, units, peak / bandwidth])


_TABLE = np.vstack([_numbers(e) for e in HARDWARE.values()])
_MEAN, _SCALE = _TABLE.mean(axis=0), _TABLE.std(axis=0)


def hardware_vector(device: str | None) -> np.ndarray:
    """The standardised hardware vector of a device name (zeros: the mean device, when unknown)."""
    key = device_key(device) if device else ""
    entry = HARDWARE.get(key.partition(":")[2] or key)
    if entry is None:
        return np.r_[np.full(len(CLASSES), 1.0 / len(CLASSES)), np.zeros(_TABLE.shape[1])]
    return np.r_[np.array([c == entry[0] for c in CLASSES], float), (_numbers(entry) - _MEAN) / _SCALE]


def condition(device: str | None, target: str) -> np.ndarray:
    return np.r_[hardware_vector(device), np.array([t == target for t in TARGETS], float)]


@register_multidevice("hwfeat")
class HardwareFeatures(ConditionedModel):
    """One perceptron of graph and hardware features across devices (module docstring)."""

    predictor_name = "hwfeat"

    def _conditions(self, x, stats, tasks):
        cond = np.vstack([condition(t.device, t.target) for t in tasks])
        all_y = np.concatenate([t.log_y for t in tasks])
        mu, sigma = float(all_y.mean()), max(float(all_y.std()), 1e-3)
        index = np.repeat(np.arange(len(tasks)), [len(t.rows) for t in tasks])
        return cond, index[:, None], [(t.log_y - mu) / sigma for t in tasks]

    def _new_condition(self, target, stats, log_y, device):
        return condition(device, target)


@register_predictor("hwfeat")
class HardwareFeaturesPredictor(AdaptedPredictor):
    """A new device's hardware-feature model with a fitted output map (see :class:`HardwareFeatures`)."""
