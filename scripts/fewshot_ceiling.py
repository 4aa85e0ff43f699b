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
from perfcast.evaluation.harness import (  # noqa: E402
    Evaluation,
    Settings,
    distinct_draw,
    fit_bases,
    split_rows,
    test_keys,
    usable_targets,
)
from perfcast.evaluation.metrics import summarize  # noqa: E402
from perfcast.predictors.base import _log_features  # noqa: E402
from perfcast.predictors.features import graph_stats  # noqa: E402
from perfcast.predictors.gbt import GradientBoostedTrees, _booster_params  # noqa: E402
from perfcast.spaces import nb201  # noqa: E402
from perfcast.spaces.registry import split_spec  # noqa: E402

SOURCE = "hwnasbench_nb201"
SEED = 0


def _scores(y: np.ndarray, pred: np.ndarray, rank: list[str]) -> tuple[float, float]:
    keep = ~np.isnan(y)
    m = summarize(y[keep], pred[keep], [r for r, k in zip(rank, keep) if k])
    return m["mape_pct"], m["spearman"]


def _source(max_rows: int, where: dict[str, str] | None = None):
    """The source's tables, their graph cache and the split keys held out for testing, as
    ``perfcast evaluate`` draws them."""
    found = tables.shared_tables(None, [SOURCE], None, max_rows, SEED, where)
    cache = tables.GraphCache()
    held = test_keys((k for t in found for k in cache.split_keys(t)), Settings().test_fraction, SEED)
    return found, cache, held


def fewshot_rows(ks: list[int], draws: int) -> list[str]:
    found, cache, held = _source(1500)
    bases = fit_bases(Evaluation(), found, cache, held, Settings(seed=SEED))
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
        edges = [op for node in nb201.parse_arch(split_spec(spec)[1]) for op, _ in node]
        for j, op in enumerate(edges):
            out[i, j * len(nb201.OPS) + nb201.OPS.index(op)] = 1.0
    return out


def encoding_rows() -> list[str]:
    import lightgbm

    found, cache, held = _source(4000, {"dataset": "cifar10"})
    gbt = GradientBoostedTrees()  # its default settings, as the docs' gbt rows use
    params = _booster_params(gbt.num_leaves, gbt.learning_rate, gbt.min_data_in_leaf, gbt.seed)
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
            features = _log_features(stats, target)
            cells = []
            for x in (features, onehot, np.hstack([features, onehot])):
                data = lightgbm.Dataset(x[rows], np.log(labels[rows]), params=params)
                booster = lightgbm.train(params, data, num_boost_round=gbt.n_estimators)
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
