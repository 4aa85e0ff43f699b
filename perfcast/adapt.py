"""A predictor for a new device from a few measurements of it.

:func:`adapt` chooses the method by the number of measured networks of the best-labelled target:

- fewer than :data:`FEW_SHOT_ROWS` with fitted ``bases`` (predictors of other devices):
  :class:`perfcast.predictors.transfer.TransferPredictor`, which maps the best base's
  predictions onto the new device by a log-linear fit;
- fewer than :data:`FEW_SHOT_ROWS` and no bases: the FLOPs baseline (:mod:`perfcast.predictors.flops`);
- otherwise a full fit of perfcast's own single-device predictor (:mod:`perfcast.predictors.mix`:
  gradient-boosted trees on networks like the measured ones, a geometric mix of the trees with
  operator-summing models on networks unlike them).

Measurement files (``perfcast adapt --samples S.csv``) are read by :func:`read_samples`.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from perfcast.errors import PerfcastError, UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.base import TARGETS, Predictor, _check_graphs, _check_targets
from perfcast.predictors.flops import FlopsLinear
from perfcast.predictors.mix import Mix
from perfcast.predictors.transfer import TransferPredictor, check_bases

FEW_SHOT_ROWS = 50
MIN_SAMPLES = 3


# --- choosing the method -------------------------------------------------------------------------
def labelled_rows(targets: Mapping[str, np.ndarray]) -> int:
    """The number of labelled rows of the best-labelled target."""
    return max(int((~np.isnan(np.asarray(y, float))).sum()) for y in targets.values())


def adapt(graphs: list[Graph], targets: dict[str, np.ndarray], bases: list[Predictor] | None = None) -> Predictor:
    """A fitted predictor of a new device from measured ``graphs`` with ``targets``
    (``{target: array}``, NaN where missing) and optional fitted ``bases`` of other devices."""
    graphs = _check_graphs(graphs)
    labels = _check_targets(targets, len(graphs))
    bases = check_bases(bases)
    if labelled_rows(labels) >= FEW_SHOT_ROWS:
        return Mix().fit(graphs, labels)
    if bases:
        return TransferPredictor().fit(graphs, labels, bases=bases)
    return FlopsLinear().fit(graphs, labels)


# --- measurement files ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Samples:
    """The measurements of a samples CSV: model references, graphs and targets (NaN where empty)."""

    refs: list[str]
    graphs: list[Graph]
    targets: dict[str, np.ndarray]


def _cell_number(where: str, column: str, cell: str, required: bool) -> float:
    text = cell.strip()
    if not text:
        if required:
            raise UsageError(where, f"{column} is empty")
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise UsageError(where, f"{column} {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(where, f"{column} {cell!r} is not a finite number")
    if value < 0:
        raise UsageError(where, f"{column} {cell!r} is negative")
    if value == 0:
        raise UsageError(where, f"{column} {cell!r} is zero; measurements must be positive")
    return value


def read_samples(path: str | os.PathLike, batch_size: int | None = None) -> Samples:
    """Read ``path`` (columns ``model``, ``latency_ms``, optional ``energy_mj`` and
    ``memory_bytes``); rows are named by their line in the file (the header is row 1).

    ``model`` is a file path (relative to the CSV's folder) or a spec string. Every problem raises
    :class:`UsageError` naming the file and row.
    """
    from perfcast.api import load_in_folder

    p = Path(path)
    name = os.fspath(path)
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [(reader.line_num, row) for row in reader]
    except OSError as exc:
        raise UsageError(name, f"cannot read samples ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(name, f"not a readable CSV ({exc})") from None
    for column in ("model", "latency_ms"):
        if column not in columns:
            raise UsageError(f"{name} row 1", f"missing column {column!r} (columns: {', '.join(columns) or 'none'})")
    present = [t for t in TARGETS if t in columns]
    values: dict[str, list[float]] = {t: [] for t in present}
    refs: list[str] = []
    for line, row in rows:
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        where = f"{name} row {line}"
        ref = row["model"].strip()
        if not ref:
            raise UsageError(where, "model is empty")
        for t in present:
            values[t].append(_cell_number(where, t, row[t], required=t == "latency_ms"))
        refs.append(ref)
    if len(refs) < MIN_SAMPLES:
        raise UsageError(name, f"has {len(refs)} measured row(s); adapt needs at least {MIN_SAMPLES}")
    targets = {t: np.array(v) for t, v in values.items()}
    for t, y in targets.items():
        labelled = int((~np.isnan(y)).sum())
        if 0 < labelled < MIN_SAMPLES:
            raise UsageError(name, f"{t} has {labelled} value(s); give at least {MIN_SAMPLES} or none")
    targets = {t: y for t, y in targets.items() if not np.isnan(y).all()}
    graphs = []
    for (line, _), ref in zip(rows, refs):
        try:
            graphs.append(load_in_folder(ref, p.parent, batch_size=batch_size))
        except PerfcastError as exc:
            raise UsageError(f"{name} row {line}", f"model {ref!r}: {exc.problem}") from None
    return Samples(refs, graphs, targets)
