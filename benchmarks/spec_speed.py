"""Speed of the spec-string fast path: spec -> IR graph -> analysis, no framework.

Times 1,000 distinct NAS-Bench-201 specs (a fixed sample of the 15,625 cells; goal: all
1,000 graphs built in under 5 s), then 1,000 FBNet and 1,000 OFA specs drawn the same
way. For each space it prints the best of ``--repeat`` runs of:

- build: every spec to a graph, each graph dropped after use (a streaming pass);
- build+analyze: the same, plus :func:`analyze_graph` on each graph;
- build, keep all: the graphs kept in a list; the difference to ``build`` is the time
  Python's cyclic garbage collector spends walking the graphs already held.

    python benchmarks/spec_speed.py [--count 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from typing import Callable

from perfcast.analysis import analyze_graph
from perfcast.spaces import build_spec, fbnet, nb201, ofa

GOAL_S = 5.0


def nb201_specs(count: int, rng: random.Random) -> list[str]:
    archs = [
        "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
        for ops in itertools.product(nb201.OPS, repeat=6)
    ]
    return [nb201.spec_from_arch(a) for a in rng.sample(archs, count)]


def fbnet_specs(count: int, rng: random.Random) -> list[str]:
    names = list(fbnet.BLOCKS)
    return ["fbnet:" + " ".join(rng.choice(names) for _ in range(fbnet.N_BLOCKS)) for _ in range(count)]


def ofa_specs(count: int, rng: random.Random) -> list[str]:
    def config() -> dict:
        n = ofa.N_STAGES * ofa.MAX_DEPTH
        return {"ks": [rng.choice(ofa.KERNELS) for _ in range(n)], "e": [rng.choice(ofa.EXPANDS) for _ in range(n)],
                "d": [rng.choice(ofa.DEPTHS) for _ in range(ofa.N_STAGES)], "r": rng.choice(ofa.RESOLUTIONS)}

    return ["ofa:" + json.dumps(config(), separators=(",", ":")) for _ in range(count)]


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def build_each(specs: list[str]) -> None:
    for s in specs:
        build_spec(s)


def analyze_each(specs: list[str]) -> None:
    for s in specs:
        analyze_graph(build_spec(s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    for space, specs in (("nb201", nb201_specs(args.count, rng)), ("fbnet", fbnet_specs(args.count, rng)),
                         ("ofa", ofa_specs(args.count, rng))):
        assert len(set(specs)) == len(specs), "specs must be distinct"
        n = len(specs)
        nodes = sum(len(build_spec(s).nodes) for s in specs) / n
        build_s = best_time(lambda: build_each(specs), args.repeat)
        analyze_s = best_time(lambda: analyze_each(specs), args.repeat)
        keep_s = best_time(lambda: [build_spec(s) for s in specs], args.repeat)
        goal = f" (goal < {GOAL_S:.0f} s: {'met' if build_s < GOAL_S else 'MISSED'})" if space == "nb201" else ""
        print(f"{space:6s} {n} distinct specs, {nodes:.0f} nodes/graph: build {build_s:.2f} s "
              f"({1e3 * build_s / n:.2f} ms/graph){goal}; build+analyze {analyze_s:.2f} s "
              f"({1e3 * analyze_s / n:.2f} ms/graph); build, keep all {keep_s:.2f} s")


if __name__ == "__main__":
    main()
