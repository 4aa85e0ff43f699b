"""How repeatable the local dataset's peak memory is, and where gbt's memory error lies.

Peak memory (``perfcast.profiling.memory``) is deterministic in principle: the same network in
the same runtime allocates the same buffers. This measures how far that holds. It draws
``--networks`` distinct networks from protocol a's held-out networks of the local dataset (the
split ``perfcast evaluate --data local`` uses), measures each once more with the profiler's own
memory probe (fresh processes, as the dataset's measurements were taken), and compares the new
reading with the stored one. gbt (default settings, fitted on the training networks) predicts the
same networks, so its error stands beside the measurement's on the same rows.

Per band of stored peak memory it prints:

- ``re-measured``: the mean, median and 90th percentile of ``|new - stored| / stored``;
- ``MAPE floor``: the mean difference over sqrt 2, the error a predictor that knew each
  network's true peak would still have against one measurement (as in ``label_noise.py``);
- ``gbt MAPE``: the held-out error of gbt on the same networks;
- ``loading``: the share of networks whose peak came while the session loaded (the file's
  weights and their re-laid-out copies) rather than while it ran, and gbt's MAPE on each group.

The output is a markdown section (``scripts/make_results.sh`` puts it into docs/results.md).

    python scripts/memory_repeat.py [--data data/local-ort-cpu] [--networks 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from perfcast.evaluation import harness
from perfcast.evaluation.metrics import mape
from perfcast.evaluation.tables import GraphCache, local_tables
from perfcast.predictors.gbt import GradientBoostedTrees
from perfcast.profiling.memory import MemoryProbe
from perfcast.profiling.reference import write_onnx, write_trivial

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
BANDS = ((0, 3), (3, 10), (10, 50), (50, math.inf))  # MiB of stored peak memory
SAME_PEAK = 64 * 1024  # readings this close count as one peak: the layout's repeatability


def band_name(low: float, high: float) -> str:
    return f"{low:g} MiB and more" if math.isinf(high) else f"{low:g} to {high:g} MiB"


def band_rows(stored: np.ndarray, new: np.ndarray, pred: np.ndarray, loading: np.ndarray) -> list[list[str]]:
    """Table rows per band of ``stored`` (bytes) and one for all: networks, re-measured mean /
    median / p90 difference %, MAPE floor %, gbt MAPE %, share peaking while loading, gbt MAPE of
    the loading and the running networks."""
    diff = np.abs(new - stored) / stored * 100

    def gbt(m: np.ndarray) -> str:
        return f"{mape(stored[m], pred[m]):.2f}" if m.any() else "-"

    rows = []
    for name, m in [(band_name(lo, hi), (stored >= lo * MIB) & (stored < hi * MIB)) for lo, hi in BANDS] + \
                   [("all", np.ones(len(stored), bool))]:
        if not m.any():
            continue
        d = diff[m]
        rows.append([name, str(int(m.sum())), f"{d.mean():.2f}", f"{np.median(d):.2f}", f"{np.percentile(d, 90):.2f}",
                     f"{d.mean() / math.sqrt(2):.2f}", gbt(m), f"{loading[m].mean() * 100:.0f}%",
                     gbt(m & loading), gbt(m & ~loading)])
    return rows


def markdown(rows: list[list[str]], command: str, note: str) -> str:
    head = ["stored peak", "networks", "re-measured: mean diff %", "median %", "p90 %", "MAPE floor %",
            "gbt MAPE %", "peak while loading", "gbt MAPE %, loading", "gbt MAPE %, running"]
    lines = ["## How repeatable peak memory is", "",
             f"Command: `{command}`. {note}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "local-ort-cpu"))
    ap.add_argument("--networks", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    start = time.monotonic()
    table = local_tables(args.data)[0]
    cache = GraphCache()
    keys = cache.split_keys(table)
    defaults = harness.Settings()  # the split of perfcast evaluate's defaults
    train, test = harness.split_rows(keys, harness.test_keys(keys, defaults.test_fraction, defaults.seed))
    graphs = cache.graphs(table)
    stored = table.targets["memory_bytes"]
    fitted = GradientBoostedTrees().fit([graphs[i] for i in train], {"memory_bytes": stored[train]})
    firsts = {}
    for i in test:
        firsts.setdefault(keys[i], int(i))
    rows = np.random.default_rng(args.seed).permutation(sorted(firsts.values()))[:args.networks]
    new, loading, kept = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        probe = MemoryProbe("ort-cpu", 1, write_trivial(Path(tmp)), timeout_s=300)
        base = probe.baseline_bytes
        for n, i in enumerate(rows):
            path = write_onnx(graphs[i], Path(tmp) / "model.onnx")
            events, error = probe.readings(int(i), str(path))
            if error:
                print(f"{table.specs[i]}: {error}", file=sys.stderr)
                continue
            peak = statistics.median(e["vm_hwm_bytes"] - e["vm_rss_before_bytes"] for e in events)
            at_load = statistics.median(e["vm_hwm_loaded_bytes"] - e["vm_rss_before_bytes"] for e in events)
            new.append(max(0.0, peak - base))
            loading.append(peak - at_load <= SAME_PEAK)
            kept.append(int(i))
            print(f"\r{n + 1}/{len(rows)} networks", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    kept_rows = np.array(kept, dtype=int)
    pred = fitted.predict([graphs[i] for i in kept_rows])["memory_bytes"]
    note = (f"{len(kept)} distinct held-out networks of {Path(args.data).name}, seed {args.seed}; gbt fitted on "
            f"{train.size} training measurements; {time.monotonic() - start:.0f} s on "
            f"{time.strftime('%Y-%m-%d', time.gmtime())}.")
    print(markdown(band_rows(stored[kept_rows], np.array(new), pred, np.array(loading)),
                   "python scripts/memory_repeat.py", note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
