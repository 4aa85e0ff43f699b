"""Repeatability of the profiler: the same networks measured twice, some minutes apart.

Networks are drawn from every space registered at run time (the zoo at a small
resolution where the entry takes ``res``, NAS spaces, task spaces), round-robin over
the spaces, skipping networks above 1 GMAC or 30 M parameters so that one run stays
within minutes. Each is written as ONNX with random weights, then

    run 1: perfcast.profiling.profile(...)         (baselines B1 = its references' medians)
    wait --gap-minutes
    run 2: the same, with the reference baselines fixed to B1

so that the drift-corrected latencies of both runs are on the same scale. For each
label, the relative difference of a network is |a - b| / ((a + b) / 2); the script
prints its median and 90th percentile over the networks that succeeded in both runs,
and the throughput of a run (timing and peak memory) in networks per hour.

    .venv/bin/python benchmarks/profiler_repeatability.py               # 100 networks, 10 minutes apart
    .venv/bin/python benchmarks/profiler_repeatability.py --count 10 --gap-minutes 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from perfcast import api
from perfcast.analysis import analyze_graph
from perfcast.errors import PerfcastError
from perfcast.frontends.onnx_writer import to_onnx
from perfcast.profiling import profile
from perfcast.profiling import stats
from perfcast.profiling.stats import percentile
from perfcast.spaces import spaces
from perfcast.spaces.registry import sample_specs

MAX_MACS = 1_000_000_000
MAX_PARAMS = 30_000_000
SMALL_RES = 64


def candidate_specs(prefix: str, count: int, seed: int) -> list[str]:
    """Spec strings of one space; zoo entries at a small resolution when they take one."""
    try:
        specs = sample_specs(prefix, count, seed)
    except PerfcastError:
        return []
    if prefix == "zoo":
        return [s for spec in specs for s in (f"{spec}?res={SMALL_RES}", spec)]
    return specs


def build(spec: str):
    """The graph of a spec if it builds and is small enough, else None."""
    try:
        graph = api.load(spec)
    except PerfcastError:
        return None
    a = analyze_graph(graph)
    return graph if a.macs <= MAX_MACS and a.params <= MAX_PARAMS else None


def mixed_networks(count: int, seed: int) -> list[tuple[str, object]]:
    """``count`` (spec, graph) pairs, round-robin over the registered spaces."""
    pools = {p: iter(candidate_specs(p, count, seed)) for p in spaces()}
    chosen: list[tuple[str, object]] = []
    seen_zoo: set[str] = set()
    for prefix in itertools.cycle(list(pools)):
        if len(chosen) >= count or not pools:
            break
        if prefix not in pools:
            continue
        for spec in pools[prefix]:
            entry = spec.split("?")[0]
            if prefix == "zoo" and entry in seen_zoo:
                continue
            graph = build(spec)
            if graph is not None:
                seen_zoo.add(entry)
                chosen.append((spec, graph))
                break
        else:
            del pools[prefix]
    return chosen


def relative_differences(first: list[float | None], second: list[float | None]) -> list[float]:
    return [abs(a - b) / ((a + b) / 2) for a, b in zip(first, second)
            if a is not None and b is not None and a + b > 0]


def describe(label: str, diffs: list[float]) -> str:
    if not diffs:
        return f"{label:44s}   (no pairs)"
    return (f"{label:44s} median {100 * statistics.median(diffs):6.2f} %   "
            f"p90 {100 * percentile(diffs, 90):6.2f} %   ({len(diffs)} networks)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--gap-minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--time-budget", type=float, default=0.6, help="timed seconds per network per worker")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json-out", type=Path, help="write every measurement of both runs here")
    args = ap.parse_args(argv)

    networks = mixed_networks(args.count, args.seed)
    by_space: dict[str, int] = {}
    for spec, _ in networks:
        by_space[spec.split(":")[0]] = by_space.get(spec.split(":")[0], 0) + 1
    print(f"{len(networks)} networks: " + ", ".join(f"{k} {v}" for k, v in sorted(by_space.items())))
    with tempfile.TemporaryDirectory(prefix="perfcast-repeat-") as tmp:
        paths = []
        for k, (spec, graph) in enumerate(networks):
            path = Path(tmp) / f"net{k:03d}.onnx"
            path.write_bytes(to_onnx(graph, seed=0).SerializeToString())
            paths.append(path)

        def run(label: str, baselines: tuple[float | None, float | None]):
            start = time.monotonic()
            res = profile(paths, threads=args.threads, workers=args.workers, time_budget_s=args.time_budget,
                          reference_baseline_ms=baselines[0], memory_reference_baseline_ms=baselines[1],
                          progress=lambda d, t, n: print(f"\r{label}: {d}/{t}", end="", file=sys.stderr))
            elapsed = time.monotonic() - start
            print(file=sys.stderr)
            failed = [(networks[i][0], r.error_kind, r.error_message) for i, r in enumerate(res) if not r.ok]
            env = res[0].environment
            print(f"{label}: {elapsed:7.1f} s, {3600 * len(paths) / elapsed:6.0f} networks/hour, "
                  f"reference baselines {env['reference_baseline_ms']:.4f} / "
                  f"{env['memory_reference_baseline_ms']:.4f} ms, failed {len(failed)}, "
                  f"load average {env['load_average_before'][0]:.2f} -> {env['load_average_after'][0]:.2f}")
            for f in failed:
                print(f"   failed: {f}")
            return res, elapsed

        first, t1 = run("run 1", (None, None))
        if args.gap_minutes > 0:
            print(f"waiting {args.gap_minutes:g} minutes", file=sys.stderr)
            time.sleep(60 * args.gap_minutes)
        env = first[0].environment
        second, t2 = run("run 2", (env["reference_baseline_ms"], env["memory_reference_baseline_ms"]))

    def label(res, key):
        return [key(r) if r.ok else None for r in res]

    print(describe("latency, drift-corrected (run-1 baselines)",
                   relative_differences(label(first, lambda r: r.latency_ms["median"]),
                                        label(second, lambda r: r.latency_ms["median"]))))
    def compute_reference_only(r):
        blocks = stats.rebuild_blocks(r.raw_samples_ms, r.block_references_ms)
        return stats.latency_stats(blocks, r.reference_baseline_ms).latency_ms["median"]

    print(describe("latency, compute reference alone",
                   relative_differences(label(first, compute_reference_only), label(second, compute_reference_only))))
    print(describe("latency, raw median",
                   relative_differences(label(first, lambda r: r.latency_ms_raw_median),
                                        label(second, lambda r: r.latency_ms_raw_median))))
    print(describe("peak memory",
                   relative_differences(label(first, lambda r: r.peak_memory_bytes),
                                        label(second, lambda r: r.peak_memory_bytes))))
    weights = [r.reference_weight for r in first + second if r.ok]
    if weights:
        print(f"{'compute weight of the adjacent reference':44s} median {statistics.median(weights):6.2f}     "
              f"p10 {percentile(weights, 10):6.2f}     p90 {percentile(weights, 90):6.2f}")
    cvs = [r.repeat_cv for r in first + second if r.ok and r.repeat_cv is not None]
    if cvs:
        print(f"{'repeat CV across workers':44s} median {100 * statistics.median(cvs):6.2f} %   "
              f"p90 {100 * percentile(cvs, 90):6.2f} %")
    print(f"throughput: {3600 * 2 * len(networks) / (t1 + t2):.0f} networks/hour "
          f"({args.workers} workers, {args.time_budget:g} s per network per worker, peak memory included)")
    if args.json_out:
        rows = [{"spec": networks[i][0], "run": run_no, **r.to_dict()}
                for run_no, res in ((1, first), (2, second)) for i, r in enumerate(res)]
        args.json_out.write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
