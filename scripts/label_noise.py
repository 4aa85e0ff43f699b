"""How noisy the public labels are, and what that leaves a perfect predictor.

HW-NAS-Bench measured every NAS-Bench-201 cell twice on each device: once in the CIFAR-10
network and once in the CIFAR-100 network. The two networks are the same up to the classifier
(64 x 10 against 64 x 100 weights: 5,760 MACs, 0.07 % of the smallest network's), so the two
measurements of one cell differ by the device's measurement noise alone. From each device's
pairs this prints:

- the mean relative difference of the pair, ``|a - b| / a`` (a: CIFAR-10);
- their Spearman rank correlation (the test-retest reliability of the ranking);
- the estimated floor of MAPE for a predictor that knew each network's true cost:
  ``difference / sqrt(2)`` (independent errors of equal size: ``E|e1 - e2| = sqrt(2) E|e|``
  for normal errors);
- the estimated ceiling of Spearman against one measurement: ``sqrt(reliability)`` (the
  correction for attenuation: the correlation of the truth with one noisy measurement is the
  square root of the correlation of two).

The output is a markdown section (``scripts/make_results.sh`` puts it into docs/results.md).

    python scripts/label_noise.py [SHARED_DATA_FOLDER]
"""

from __future__ import annotations

import csv
import gzip
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from perfcast.datasets.shared import shared_folder

FILE = "hwnasbench_nb201.csv.gz"
MEASURED = ("edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency", "pixel3_latency")
PAIR = ("cifar10", "cifar100")


def paired_values(path: Path, columns: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per column, its values in both networks of :data:`PAIR` for every cell measured in both."""
    by_key: dict[tuple[str, str], dict[str, str]] = {}
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            if row["dataset"] in PAIR:
                by_key[(row["arch_str"], row["dataset"])] = row
    pairs = {}
    for column in columns:
        arches = sorted(a for (a, d), row in by_key.items()
                        if d == PAIR[0] and row[column] and by_key.get((a, PAIR[1]), {}).get(column))
        pairs[column] = tuple(np.array([float(by_key[(a, d)][column]) for a in arches]) for d in PAIR)
    return pairs


def noise_row(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Pair statistics of one device column (see the module text)."""
    difference = float(np.mean(np.abs(a - b) / a))
    reliability = float(spearmanr(a, b)[0])
    return {"pairs": a.size, "difference_pct": 100 * difference, "spearman": reliability,
            "mape_floor_pct": 100 * difference / math.sqrt(2), "spearman_ceiling": math.sqrt(max(reliability, 0.0))}


def main(folder: str | None = None) -> None:
    path = shared_folder(folder) / FILE
    lines = ["## How noisy the labels are", "",
             "HW-NAS-Bench measured each NAS-Bench-201 cell in its CIFAR-10 and its CIFAR-100 network, which",
             "differ only in the classifier (under 0.1 % of the MACs): the two measurements of a cell differ by",
             "the device's noise. 'MAPE floor' (difference / sqrt 2) and 'Spearman ceiling' (sqrt of the",
             "pair's Spearman) estimate what a predictor that knew every network's true cost would score",
             "against one measurement. Command: `python scripts/label_noise.py`.", "",
             "| column | cell pairs | mean difference % | pair Spearman | MAPE floor % | Spearman ceiling |",
             "|---|---|---|---|---|---|"]
    for column, (a, b) in paired_values(path, MEASURED).items():
        r = noise_row(a, b)
        lines.append(f"| {column} | {r['pairs']} | {r['difference_pct']:.2f} | {r['spearman']:.4f} | "
                     f"{r['mape_floor_pct']:.2f} | {r['spearman_ceiling']:.4f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
