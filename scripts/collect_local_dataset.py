"""Measure the local dataset: networks of every space and the zoo, on this machine's
CPU with onnxruntime (1 thread), into a store; resumable (rerun the same command).

    .venv/bin/python scripts/collect_local_dataset.py --db /path/local.db --kernels

Networks of all spaces are interleaved, so an interrupted run still covers every space;
model files are written for each chunk and removed after it.
"""

from __future__ import annotations

import argparse
import itertools

from perfcast import api
from perfcast.spaces.registry import sample_specs

# networks per space; the zoo contributes every entry once
DEFAULT_COUNTS = {"nb201": 300, "fbnet": 250, "ofa": 250, "imgcls": 300, "kws": 250, "sr": 200, "det": 250,
                  "seg": 200, "vit": 250, "bert": 200, "gpt": 200, "rnn": 200}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every per-space count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernels", type=int, default=600, metavar="N",
                   help="record per-kernel profiles for the first N networks (default 600)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--time-budget", type=float, default=0.3)
    p.add_argument("--skip", nargs="*", default=[], metavar="SPACE", help="leave these spaces out of this run")
    args = p.parse_args()
    per_space = []
    for space, count in DEFAULT_COUNTS.items():
        if space in args.skip:
            continue
        per_space.append(sample_specs(space, max(1, int(count * args.scale)), args.seed))
    per_space.append(sample_specs("zoo", 1000, 0))
    specs = [s for s in itertools.chain.from_iterable(itertools.zip_longest(*per_space)) if s is not None]
    settings = dict(db=args.db, chunk=12, workers=args.workers, time_budget_s=args.time_budget, progress=True,
                    memory_processes=2, max_extra_workers=1, cv_threshold=0.05)
    for part, kernels in ((specs[: args.kernels], True), (specs[args.kernels:], False)):
        summary = api.profile(part, kernels=kernels, **settings)
        print(f"measured {len(summary.measured)}, failed {len(summary.failed)}, skipped {len(summary.skipped)}")


if __name__ == "__main__":
    main()
