"""Statistics of latency samples and the drift correction (pure functions).

Definitions (all latencies in milliseconds; a *sample* is one inference timed on the
timing clock, see :mod:`perfcast.profiling.protocol`):

- ``median``, ``mean``, ``min`` of the samples; ``p10`` and ``p90`` are percentiles with
  linear interpolation between closest ranks (numpy's default ``linear`` method).
- A *block* is a run of consecutive timed inferences of one model inside one worker
  process. The two reference networks (compute and memory, see
  :mod:`perfcast.profiling.reference`) are timed in a block just before and just after
  it; the block's *adjacent reference medians* ``a_b`` and ``m_b`` are the medians of
  those two reference blocks' samples pooled, one per reference.
- The *reference baselines* ``A`` and ``M`` are the medians of every sample of each
  reference in the whole profiling run (all workers), unless the caller fixes them.
- A model waits partly on compute and partly on memory. Its block's *adjacent
  reference*, in compute-reference milliseconds, is ``r_b = A * (a_b / A)**w * (m_b / M)**(1 - w)``
  with the model's *memory weight* ``1 - w`` (:func:`reference_weight` estimates ``w`` from
  the blocks); ``w = 1`` is the compute reference alone.
- A drift-corrected sample is ``s * A / r_b``: a model's corrected median equals
  ``reference_ratio * A`` where ``reference_ratio`` is the median over its samples of
  ``s / r_b``. A slowdown shared by the model and the adjacent reference blocks divides out.
- ``standard_error`` is ``repeat_cv / sqrt(workers)``.
- ``repeat_cv`` is the coefficient of variation (sample standard deviation, ddof=1,
  over the mean) of the per-worker medians of the corrected samples; None with fewer
  than two workers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Sequence


WEIGHT_PRIOR = (0.5, 0.25)  # mean and sd of a model's compute weight before its blocks are seen


@dataclass(frozen=True)
class Block:
    """Samples of one model block with the medians of its adjacent reference blocks
    (``ref_median_ms``: the compute reference, or the combined one after
    :func:`combine_references`; ``memory_ref_median_ms``: the memory reference)."""

    samples_ms: tuple[float, ...]
    ref_median_ms: float
    worker: int
    energy_uj: float | None = None
    wall_ms: tuple[float, ...] = ()
    memory_ref_median_ms: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """``{median, mean, min, p10, p90}`` of a non-empty list of samples."""
    return {
        "median": statistics.median(samples),
        "mean": statistics.fmean(samples),
        "min": min(samples),
        "p10": percentile(samples, 10),
        "p90": percentile(samples, 90),
    }


def cv(values: Sequence[float]) -> float | None:
    """Sample standard deviation over mean; None for fewer than two values or a zero mean."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


def reference_weight(blocks: Sequence[Block], baseline_ms: float, memory_baseline_ms: float) -> float:
    """The compute weight ``w`` (0..1) of a model's adjacent reference.

    A model's log block median is its level plus ``w`` times the compute reference's log
    slowdown plus ``1 - w`` times the memory reference's: ``w_hat`` is the least-squares slope
    of ``log(median / m_b * M)`` against ``log(a_b / A) - log(m_b / M)`` over the blocks, with
    variance ``v`` (residual variance over the spread of the regressor). A few blocks fit a
    slope loosely, so the weight is the posterior mean under the prior ``WEIGHT_PRIOR``
    (mean 0.5, sd 0.25: most networks wait on both): ``(0.5 / 0.25**2 + w_hat / v) /
    (1 / 0.25**2 + 1 / v)``, clipped to 0..1. 1.0 without memory reference medians; the
    prior mean when fewer than three blocks or references that moved together leave no slope
    to fit."""
    if any(b.memory_ref_median_ms is None for b in blocks):
        return 1.0
    prior_mean, prior_sd = WEIGHT_PRIOR
    if len(blocks) < 3:
        return prior_mean
    xs, ys = [], []
    for b in blocks:
        memory = math.log(b.memory_ref_median_ms / memory_baseline_ms)
        xs.append(math.log(b.ref_median_ms / baseline_ms) - memory)
        ys.append(math.log(statistics.median(b.samples_ms)) - memory)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx < len(xs) * 1e-8:
        return prior_mean
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys)) / (len(xs) - 2)
    variance = residual / sxx
    if variance > 0:
        slope = (prior_mean / prior_sd**2 + slope / variance) / (1 / prior_sd**2 + 1 / variance)
    return min(1.0, max(0.0, slope))


def combine_references(blocks: Sequence[Block], baseline_ms: float, memory_baseline_ms: float | None,
                       weight: float) -> list[Block]:
    """The blocks with ``ref_median_ms`` replaced by the combined adjacent reference
    ``A * (a_b / A)**w * (m_b / M)**(1 - w)``; unchanged for ``w == 1`` or without a memory
    reference."""
    if weight >= 1.0 or memory_baseline_ms is None:
        return list(blocks)
    return [replace(b, ref_median_ms=baseline_ms * (b.ref_median_ms / baseline_ms) ** weight
                    * (b.memory_ref_median_ms / memory_baseline_ms) ** (1.0 - weight)) for b in blocks]


def rebuild_blocks(raw_samples_ms: Sequence[float], block_references_ms: Sequence[Sequence]) -> list[Block]:
    """A measurement's blocks from its raw samples and its ``block_references_ms`` rows
    ``[worker, samples, compute reference median, memory reference median]``."""
    blocks, start = [], 0
    for worker, n, compute, memory in block_references_ms:
        blocks.append(Block(tuple(raw_samples_ms[start:start + int(n)]), compute, int(worker),
                            memory_ref_median_ms=memory))
        start += int(n)
    if start != len(raw_samples_ms):
        raise ValueError(f"block_references_ms covers {start} samples, not {len(raw_samples_ms)}")
    return blocks


def corrected_samples(block: Block, baseline_ms: float) -> list[float]:
    scale = baseline_ms / block.ref_median_ms
    return [s * scale for s in block.samples_ms]


def worker_medians(blocks: Sequence[Block], baseline_ms: float = 1.0) -> list[float]:
    """The median of each worker's corrected samples, in worker order."""
    by_worker: dict[int, list[float]] = {}
    for b in blocks:
        by_worker.setdefault(b.worker, []).extend(corrected_samples(b, baseline_ms))
    return [statistics.median(v) for _, v in sorted(by_worker.items())]


def repeat_cv(blocks: Sequence[Block]) -> float | None:
    """CV of the per-worker corrected medians (independent of the baseline's value)."""
    return cv(worker_medians(blocks))


def standard_error(blocks: Sequence[Block]) -> float:
    """``repeat_cv / sqrt(workers)``: the relative standard error of a label averaged over the
    workers; 0.0 with fewer than two workers."""
    medians = worker_medians(blocks)
    spread = cv(medians)
    return spread / math.sqrt(len(medians)) if spread is not None else 0.0


@dataclass(frozen=True)
class LatencyStats:
    latency_ms: dict[str, float]
    raw_median_ms: float
    reference_ratio: float
    repeat_cv: float | None
    worker_medians_ms: list[float]
    raw_samples_ms: list[float]
    wall_median_ms: float | None


def latency_stats(blocks: Sequence[Block], baseline_ms: float) -> LatencyStats:
    """Corrected statistics, raw median, reference ratio and spread of a model's blocks."""
    corrected = [c for b in blocks for c in corrected_samples(b, baseline_ms)]
    raw = [s for b in blocks for s in b.samples_ms]
    wall = [s for b in blocks for s in b.wall_ms]
    return LatencyStats(
        latency_ms=summarize(corrected),
        raw_median_ms=statistics.median(raw),
        reference_ratio=statistics.median(corrected) / baseline_ms,
        repeat_cv=repeat_cv(blocks),
        worker_medians_ms=worker_medians(blocks, baseline_ms),
        raw_samples_ms=raw,
        wall_median_ms=statistics.median(wall) if wall else None,
    )


def energy_per_run_mj(blocks: Sequence[Block]) -> float | None:
    """Energy of all metered blocks over their runs, in mJ per inference; None without a counter."""
    metered = [b for b in blocks if b.energy_uj is not None]
    if not metered:
        return None
    runs = sum(len(b.samples_ms) for b in metered)
    return sum(b.energy_uj for b in metered) / runs / 1000.0
