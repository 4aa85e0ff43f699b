"""Bulk prediction speed: 10,000 distinct NAS-Bench-201 networks, end to end.

Each spec string goes spec -> graph -> features -> prediction (point, conformal interval, domain
check) on the default device, through :func:`perfcast.api.predict_many`, which keeps one chunk of
graphs alive at a time. The networks are distinct: arch strings are grouped by NAS-Bench-201's
isomorphism key and one string per key is taken, on each of the three datasets (CIFAR-10,
CIFAR-100, ImageNet16-120; 6,466 keys x 3 datasets), in an order drawn with a fixed seed.

    .venv/bin/python benchmarks/predict_speed.py [--count 10000] [--device NAME] [--chunk 128]

Prints the time of each stage on a small sample, then the end-to-end seconds and specs/s.
"""

from __future__ import annotations

import argparse
import os
import itertools
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfcast import api  # noqa: E402
from perfcast.spaces import nb201  # noqa: E402

SEED = 0


def distinct_specs(count: int, seed: int = SEED) -> list[str]:
    """``count`` spec strings of distinct networks (one arch string per isomorphism key and dataset)."""
    strings = [f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"
               for a, b, c, d, e, f in itertools.product(nb201.OPS, repeat=6)]
    first: dict[str, str] = {}
    for s in strings:
        first.setdefault(nb201.distinct_key(s), s)
    pairs = [(arch, ds) for ds in nb201.DATASETS for arch in sorted(first.values())]
    order = np.random.default_rng(seed).permutation(len(pairs))[:count]
    if len(order) < count:
        raise SystemExit(f"only {len(pairs)} distinct networks exist")
    return [nb201.spec_from_arch(*pairs[i]) for i in order]


def stage_times(specs: list[str], device: str | None) -> dict[str, float]:
    """Seconds per network of each stage, on ``specs``."""
    from perfcast.devices import resolve_device
    from perfcast.predictors.features import graph_stats

    predictor = resolve_device(device).predictor()
    t0 = time.perf_counter()
    graphs = [api.load(s) for s in specs]
    t1 = time.perf_counter()
    for g in graphs:
        graph_stats(g)
    t2 = time.perf_counter()
    predictor.predict_full(graphs)
    t3 = time.perf_counter()
    n = len(specs)
    return {"graph": (t1 - t0) / n, "features": (t2 - t1) / n, "predict": (t3 - t2) / n}


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--device", default=None, help="default: the default device")
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes (default: 2, the cores of the reference machine)")
    args = parser.parse_args(argv)
    specs = distinct_specs(args.count)
    probe = distinct_specs(200, seed=SEED + 1)
    stages = stage_times(probe, args.device)
    print("per network (200-network probe): " + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in stages.items()))
    start, cpu = time.perf_counter(), _cpu_seconds()
    n = sum(1 for _ in api.predict_many(specs, device=args.device, chunk=args.chunk,
                                                workers=args.workers))
    wall, used = time.perf_counter() - start, _cpu_seconds() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} specs in {wall:.1f} s with {args.workers} worker(s) ({n / wall:.0f} specs/s; CPU {used:.1f} s), peak memory {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
