"""Figures for a dataset card: counts per space, status, repeat CV, load, time span.

    .venv/bin/python scripts/dataset_stats.py --db /path/local.db
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter

from perfcast.store import open_store


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    args = p.parse_args()
    with open_store(args.db) as store:
        rows = store.measurement_rows(status=None, source="profiler", with_samples=True)
        kernels = sum(1 for r in rows if store.count_kernel_profiles(r["id"]) > 0)
    spaces = Counter(r["model"].split(":")[0] for r in rows)
    status = Counter(r["status"] for r in rows)
    ok = [r for r in rows if r["status"] == "ok"]
    cvs = [r["repeat_cv"] for r in ok if r["repeat_cv"] is not None]
    loads = [r["environment"].get("load_average_before", [None])[0] for r in ok]
    loads = [x for x in loads if x is not None]
    workers = Counter(r["environment"].get("workers") for r in ok)
    lat = [r["latency_ms_median"] for r in ok]
    mem = [r["peak_memory_bytes"] for r in ok if r["peak_memory_bytes"] is not None]
    macs = [r["macs"] for r in ok]
    print(f"measurements {len(rows)}  status {dict(status)}  with kernel profiles {kernels}")
    print("per space:", dict(sorted(spaces.items())))
    print(f"time span {min(r['created_at'] for r in rows)} .. {max(r['created_at'] for r in rows)}")
    print(f"repeat CV: median {statistics.median(cvs):.4f}  p90 {pct(cvs, 0.9):.4f}  max {max(cvs):.4f}")
    print(f"workers per network: {dict(sorted(workers.items()))}")
    if loads:
        print(f"1-min load average at batch start: median {statistics.median(loads):.2f}  max {max(loads):.2f}")
    print(f"latency ms: min {min(lat):.3f}  median {statistics.median(lat):.3f}  max {max(lat):.1f}")
    print(f"peak memory MiB: min {min(mem) / 2**20:.1f}  median {statistics.median(mem) / 2**20:.1f}  max {max(mem) / 2**20:.1f}")
    print(f"MACs: min {min(macs):.3g}  median {statistics.median(macs):.3g}  max {max(macs):.3g}")


if __name__ == "__main__":
    main()
