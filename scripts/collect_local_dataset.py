"""Measure the local dataset: networks of every space and the zoo, on this machine's
CPU with onnxruntime (1 thread), into a store; resumable (rerun the same command).

    .venv/bin/python scripts/collect_local_dataset.py --db /path/local.db --work /tmp/perfcast-data

Networks of all spaces are interleaved, so an interrupted run still covers every space.
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

from perfcast import api

# networks per space; the zoo contributes every entry once
DEFAULT_COUNTS = {"nb201": 300, "fbnet": 250, "ofa": 250, "imgcls": 300, "kws": 250, "sr": 200, "det": 250,
                  "seg": 200, "vit": 250, "bert": 200, "gpt": 200, "rnn": 200}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--work", required=True, help="folder for the generated ONNX files")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every per-space count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernels", action="store_true", help="record per-kernel profiles too")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--time-budget", type=float, default=0.4)
    args = p.parse_args()
    work = Path(args.work)
    per_space: list[list[tuple[str, str]]] = []
    plan = dict(DEFAULT_COUNTS, zoo=len(api.generate("zoo", 1000, 0, work / "zoo", progress=False)))
    for space, count in plan.items():
        n = count if space == "zoo" else max(1, int(count * args.scale))
        rows = api.generate(space, n, args.seed, work / space, progress=False)
        per_space.append([(r["model"], str(Path(space) / r["path"])) for r in rows])
    manifest = work / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "path"])
        for row in itertools.chain.from_iterable(itertools.zip_longest(*per_space)):
            if row is not None:
                writer.writerow(row)
    summary = api.profile([], manifest=str(manifest), db=args.db, kernels=args.kernels, chunk=12,
                          workers=args.workers, time_budget_s=args.time_budget, progress=True)
    print(f"measured {len(summary.measured)}, failed {len(summary.failed)}, skipped {len(summary.skipped)}")


if __name__ == "__main__":
    main()
