"""What the HW-NAS-Bench devices leave to few-shot adaptation and to the features.

Two measurements, printed as a markdown section (``scripts/make_results.sh`` puts it into
docs/results.md):

1. **Few-shot against more samples and against full data.** Protocol b of ``perfcast evaluate``
   (shared data, 1,500 rows per source, seed 0: the same split, bases and draws) on each measured
   HW-NAS-Bench device, with ``k`` of 20, 100 and 400 measurements, next to gbt fitted on every
   training row of the device itself. :func:`perfcast.adapt.adapt` maps the other devices' gbt
   below ``FEW_SHOT_ROWS`` (50) measurements and fits perfcast's own predictor on the measurements
   from there on. Where the adaptation stops improving well above the full-data
   fit, the other devices do not share the device's costs; where both are close, the labels' noise
   bounds both.
2. **The features against an exact architecture encoding.** Protocol a on HW-NAS-Bench's
   NAS-Bench-201 CIFAR-10 networks (4,000 rows, 900 training networks, seed 0: the rows of the
   docs' gbt figures), with gbt's trees and settings on its log features, on the 30 one-hot
   edge-operation columns of the cell alone, and on both. The one-hot columns exist for this one
   space only; they show how much of the in-distribution error is the features' and how much the
   labels'.

    .venv/bin/python scripts/fewshot_ceiling.py [--ks 20,100,400] [--draws 3]

Takes about 5 minutes on one core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfcast.adapt import adapt  # noqa: E402
from perfcast.evaluation import tables  # noqa: E402
from perfcast.evaluation.harness import distinct_draw, fit_method, split_rows, test_keys, usable_targets  # noqa: E402
from perfcast.evaluation.metrics import summarize  # noqa: E402
from perfcast.predictors.base import _log_features  # noqa: E402
from perfcast.predictors.features import graph_stats  # noqa: E402
from perfcast.predictors.gbt import _booster_params  # noqa: E402
from perfcast.spaces import nb201  # noqa: E402

SOURCE = "hwnasbench_nb201"
SEED = 0


def _scores(y: np.ndarray, pred: np.ndarray, rank: list[str]) -> tuple[float, float]:
    keep = ~np.isnan(y)
    m = summarize(y[keep], pred[keep], [r for r, k in zip(rank, keep) if k])
    return m["mape_pct"], m["spearman"]


def fewshot_rows(ks: list[int], draws: int) -> list[str]:
    found = tables.shared_tables(None, [SOURCE], None, 1500, SEED)
    cache = tables.GraphCache()
    held = test_keys((k for t in found for k in cache.split_keys(t)), 0.2, SEED)
    bases = {}
    for t in found:
        train, _ = split_rows(cache.split_keys(t), held)
        graphs = cache.graphs(t)
        bases[t.name] = fit_method("gbt", [graphs[i] for i in train], usable_targets(t.targets, train))
    lines = []
    for t in found:
        if t.kind != "measured":
            continue
        graphs, split, rank = cache.graphs(t), cache.split_keys(t), cache.rank_keys(t)
        train, test = split_rows(split, held)
        test_graphs = [graphs[i] for i in test]
        test_rank = [rank[i] for i in test]
        mine = [bases[o.name] for o in found if o.device != t.device]
        own = bases[t.name].predict(test_graphs)
        for target, labels in t.targets.items():
            y = labels[test]
            cells = []
            for k in ks:
                scores = []
                for draw in range(draws):
                    rows = distinct_draw(split, train, k, np.random.default_rng([SEED, k, draw]))
                    sample = usable_targets({target: labels}, rows)
                    fitted = adapt([graphs[i] for i in rows], sample, mine)
                    scores.append(_scores(y, fitted.predict(test_graphs)[target], test_rank))
                cells.append("%.2f / %.3f" % tuple(np.mean(scores, axis=0)))
            full = "%.2f / %.3f" % _scores(y, own[target], test_rank)
            lines.append(f"| {t.device} | {target} | " + " | ".join(cells) + f" | {full} ({train.size}) |")
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def cell_encoding(specs: list[str]) -> np.ndarray:
    """One-hot edge operations of NAS-Bench-201 cells (6 edges x 5 operations)."""
    out = np.zeros((len(specs), 6 * len(nb201.OPS)))
    for i, spec in enumerate(specs):
        body = spec.split(":", 1)[1].split("?", 1)[0]
        edges = [e.split("~")[0] for node in body.split("+") for e in node.strip("|").split("|") if e]
        for j, op in enumerate(edges):
            out[i, j * len(nb201.OPS) + nb201.OPS.index(op)] = 1.0
    return out


def encoding_rows() -> list[str]:
    import lightgbm

    found = tables.shared_tables(None, [SOURCE], None, 4000, SEED, {"dataset": "cifar10"})
    cache = tables.GraphCache()
    held = test_keys((k for t in found for k in cache.split_keys(t)), 0.2, SEED)
    params = _booster_params(15, 0.05, 3, 0)
    lines = []
    for t in found:
        if t.kind != "measured":
            continue
        stats = [graph_stats(g) for g in cache.graphs(t)]
        train, test = split_rows(cache.split_keys(t), held)
        rows = np.random.default_rng(SEED).permutation(train)[:900]
        rank = cache.rank_keys(t)
        onehot = cell_encoding(list(t.specs))
        for target, labels in t.targets.items():
            cells = []
            for name in ("features", "cell", "both"):
                parts = {"features": [_log_features(stats, target)], "cell": [onehot],
                         "both": [_log_features(stats, target), onehot]}[name]
                x = np.hstack(parts)
                data = lightgbm.Dataset(x[rows], np.log(labels[rows]), params=params)
                booster = lightgbm.train(params, data, num_boost_round=300)
                pred = np.exp(booster.predict(x[test], num_threads=1))
                cells.append("%.2f / %.3f" % _scores(labels[test], pred, [rank[i] for i in test]))
            lines.append(f"| {t.device} | {target} | " + " | ".join(cells) + " |")
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ks", default="20,100,400")
    p.add_argument("--draws", type=int, default=3)
    args = p.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    few = fewshot_rows(ks, args.draws)
    enc = encoding_rows()
    print("## What limits the HW-NAS-Bench goals\n")
    print("Command: `python scripts/fewshot_ceiling.py`. Cells are MAPE % / Spearman on the held-out "
          "networks.\n")
    print("`perfcast adapt` (protocol b, 1,500 rows, mean of %d draws; the transfer from the other "
          "devices below 50 samples, perfcast's own predictor fitted on the samples from 50 on) against "
          "gbt fitted on every training row of the device (their number in brackets):\n" % args.draws)
    print("| device | target | " + " | ".join(f"k {k}" for k in ks) + " | all training rows |")
    print("|---|---|" + "---|" * (len(ks) + 1))
    print("\n".join(few))
    print("\nIn-distribution on the CIFAR-10 networks with 900 training networks (protocol a, 4,000 rows): "
          "gbt's trees on its features, on the cell's 30 one-hot edge operations alone, and on both:\n")
    print("| device | target | features | cell encoding | both |")
    print("|---|---|---|---|---|")
    print("\n".join(enc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
