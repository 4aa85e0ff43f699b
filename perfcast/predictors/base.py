"""The predictor interface, a registry by name, error bars and the on-disk format.

The contract follows scikit-learn's: ``__init__`` stores its arguments and nothing else;
``fit(graphs, targets)`` validates, learns state into attributes ending in ``_`` and returns
``self``; ``predict(graphs)`` returns ``{target: array}`` in the units of DESIGN.md
(``latency_ms`` per batch, ``energy_mj`` per batch, ``memory_bytes``).

A subclass implements two hooks that see only its parameters, never learned state:
``_fit_target(target, stats, y) -> {key: array}`` and ``_predict_target(target, model, stats)``,
where ``stats`` is a list of :class:`perfcast.predictors.features.GraphStats`.

``fit`` optionally takes ``kernel_profiles``: per graph, a list of kernel rows in the store's
shape (:func:`perfcast.profiling.session.kernel_row`: ``kernel_name``, ``op_type``, ``provider``,
``node_names``, ``duration_us``, ``sample_count``) or None where the graph has no profile. They
reach the hook ``_fit_target_profiled(target, stats, y, profiles)``, whose default ignores them
and calls ``_fit_target``; a method that learns from kernels overrides it.

Folding: some runtimes evaluate constant subgraphs at build time and drop operators whose result
cannot reach an output (TFLite's converter removes a NAS-Bench-201 cell whose every path multiplies
by zero, and the network that reads it costs microseconds); some only drop the operators whose
result is not used (a branch read through a multiplication by zero), and still run those that read
the zero; others run every operator. A method that sums per-operator costs sets
``LEARNS_FOLDING`` and learns per target which kind its device is (:func:`device_reading`): it is
fitted on, and predicts, the graphs as given, folded or pruned
(:func:`perfcast.analysis.liveness.read_graph`), and its model stores the index of that reading
in :data:`~perfcast.analysis.liveness.READINGS` as ``folded`` (0, 1 or 2). Targets learned from
kernel profiles take what folds from the profiles instead.

Error bars are split-conformal with cross-fitting (CV+ simplified to one quantile): the labelled
graphs of a target are cut into ``CONFORMAL_FOLDS`` folds; each fold is predicted by a model fitted
on the others, giving out-of-sample RELATIVE residuals ``|y - yhat| / yhat``. For a miscoverage
``alpha`` the interval of a new prediction ``p`` is ``[p (1 - q), p (1 + q)]`` (lower end clipped at
0), with ``q`` the ``ceil((n + 1)(1 - alpha))``-th smallest residual (the largest one when that rank
exceeds ``n``). Relative residuals make the width scale with the prediction, as latency errors do.
With fewer residuals than the rank needs (``n < 1 / alpha - 1``: under 9 at 90 %), no finite order
statistic covers at the nominal level (the largest of ``n`` covers ``n / (n + 1)``), so ``q`` is the
larger of the largest residual and the Student-t prediction bound ``t(1 - alpha / 2; n) * s``, ``s``
the root mean square of the residuals (exact when relative errors are normal around zero).
``q`` is at least ``MIN_RELATIVE_WIDTH`` (1e-9): a method that reproduces the labels exactly (a
lookup table of a simulator's per-operator costs) leaves residuals of floating-point rounding,
and an interval narrower than that rounding would miss labels it predicts exactly.

Domain check: the summary features (every column before the hashed structure counts,
:data:`~perfcast.predictors.features.N_SUMMARY`) are mapped to ``log1p`` space and standardised by the training mean and
standard deviation (floored at ``DOMAIN_MIN_SCALE``, so a column constant in training, such as the
input resolution, still separates a graph that differs in it by more than about 10%). A graph is
out of domain when its mean distance to its ``DOMAIN_K`` nearest training graphs exceeds the 99th
percentile of the same distance among training graphs (leave-one-out), unless its features equal
those of a training graph (an architecture already seen is in domain). A graph built from a spec
string of a space (its family) that none of the training graphs came from is out of domain
whatever its distance, when the training graphs had families at all: a new space is a new family.

Out-of-domain intervals are calibrated on extrapolation: the training graphs are cut into at most
``CONFORMAL_FOLDS`` groups, each group is predicted by a model fitted on the others, and the
residuals of the held-out graphs that the others' domain check calls out of domain form a second
residual set (all held-out residuals when fewer than ``OOD_MIN_RESIDUALS`` are out of domain; none
below ``OOD_MIN_ROWS`` labelled graphs). The groups are whole families (the space of each graph's
spec string) when the training graphs come from two or more, so the set measures the error on a
family the model has never seen; otherwise k-means clusters of the standardised domain features
(seeded), which imitate a network unlike the rest, as random folds never do. An out-of-domain
prediction gets the larger of that set's conformal quantile and the in-domain ``q``, or of
``OOD_WIDENING`` times the in-domain ``q`` when the training graphs came from fewer than two
families: clusters of one space are nearer each other than a new family is to them, so their
set alone would understate the error there. With no such set (too few graphs), ``OOD_WIDENING``
times the in-domain ``q``.

A predictor trained on one family cannot measure its error on another, and there that error is
large: leaving one space out of the local dataset, the 90th percentile of relative residuals on
the left-out space is 0.35-0.9 for the trees, kernel, operation-wise and PALEO models trained on
the twelve others (3.6 for the FLOPs line on memory), and a model trained on one space does worse.
So an out-of-domain graph of another family (or of none: a file), given to a predictor whose
training graphs all came from one family, gets at least ``UNSEEN_FAMILY_WIDTH``
(1.0: an interval from 0 to twice the prediction at 90 %; at another level scaled as the in-domain
quantile scales).

On disk a predictor is a directory: ``predictor.json`` (format, version, name, parameters,
targets) and ``arrays.safetensors`` (every learned array). A model may also hold text values
(``str``: a lookup table's keys, a serialised tree ensemble); those are kept in ``predictor.json``
under ``model_text`` (``{target: {key: text}}``). No pickle.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import zlib
from pathlib import Path
from typing import Callable, ClassVar, Mapping, Sequence

import numpy as np

from perfcast.analysis.liveness import READINGS, read_graph
from perfcast.errors import ModelLoadError, UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.features import COLUMNS, N_BUFFERS, N_STORAGE, N_SUMMARY, GraphStats, graph_stats

TARGETS = ("latency_ms", "energy_mj", "memory_bytes")
FORMAT = "perfcast-predictor"
FORMAT_VERSION = 1
MIN_LABELS = 3
CONFORMAL_FOLDS = 5
DOMAIN_K = 5
DOMAIN_MIN_SCALE = 0.1
DOMAIN_PERCENTILE = 99.0
OOD_WIDENING = 2.0
UNSEEN_FAMILY_WIDTH = 1.0  # relative half-width (at 90 %) for a new family, trained on one family
MIN_RELATIVE_WIDTH = 1e-9
OOD_MIN_ROWS = 30
OOD_MIN_RESIDUALS = 20
KMEANS_ITERATIONS = 50
SAME_FEATURES = 1e-6  # standardised distance below which two graphs count as the same features
_DISTANCE_BLOCK = 512

_REGISTRY: dict[str, type["Predictor"]] = {}


# --- registry ----------------------------------------------------------------------------------
def registering(registry: dict[str, type], kind: str, name: str) -> Callable[[type], type]:
    """Class decorator that sets the class's ``name`` and adds it to ``registry``; ``kind`` names
    the registry in the error of a name registered twice."""

    def deco(cls: type) -> type:
        if name in registry:
            raise ValueError(f"{kind} {name!r} registered twice")
        cls.name = name
        registry[name] = cls
        return cls

    return deco


def register_predictor(name: str) -> Callable[[type["Predictor"]], type["Predictor"]]:
    """Class decorator: make a predictor available by ``name``."""
    return registering(_REGISTRY, "predictor", name)


def predictor_names() -> list[str]:
    return sorted(_REGISTRY)


def predictor_class(name: str) -> type["Predictor"]:
    if name not in _REGISTRY:
        raise UsageError("predictor", f"unknown name {name!r}; known: {', '.join(predictor_names())}")
    return _REGISTRY[name]


def get_predictor(name: str, **params) -> "Predictor":
    """A new, unfitted predictor of the registered ``name`` with ``params``."""
    cls = predictor_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise UsageError(f"predictor {name}", f"bad parameters {sorted(params)}: {exc}") from None


# --- non-negative least squares ----------------------------------------------------------------
def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``argmin ||a x - b||`` subject to ``x >= 0`` (SciPy's compiled Lawson-Hanson solver; the
    iteration limit is ten times the column count, beyond the few passes it needs in practice)."""
    from scipy.optimize import nnls as scipy_nnls  # imported on first fit, not when predicting

    a = np.asarray(a, float)
    return scipy_nnls(a, np.asarray(b, float), maxiter=10 * a.shape[1] + 100)[0]


def fit_relative_nnls(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising the squared RELATIVE error ``(a x - y) / y``.

    Columns are scaled to unit norm before solving, so coefficients of very different
    magnitudes (seconds per FLOP next to a constant) are found equally well.
    """
    weight = 1.0 / np.maximum(y, max(float(np.median(y)), 1e-30) * 1e-3)
    aw = a * weight[:, None]
    norms = np.linalg.norm(aw, axis=0)
    norms[norms == 0] = 1.0
    return nnls(aw / norms, y * weight) / norms


# --- folding ---------------------------------------------------------------------------------------
FOLDING_GAIN = 0.8  # the folded fit's log error must be below this share of the plain fit's
_FLOPS_COL, _READ_COL, _WRITTEN_COL, _NODES_COL = (COLUMNS.index(c) for c in
                                                   ("flops", "bytes_read", "bytes_written", "nodes"))


def reading_stats(stats: Sequence[GraphStats], reading: int) -> list[GraphStats]:
    """The stats of each graph as given (reading 0), folded (1) or pruned (2), the index in
    :data:`~perfcast.analysis.liveness.READINGS` (the graphs must still be in memory)."""
    if reading == 0:
        return list(stats)
    out = []
    for s in stats:
        graph = s.graph
        if graph is None:
            raise UsageError("graph", "is no longer in memory: fold graphs while they are alive")
        kept = read_graph(graph, reading)
        out.append(s if kept is graph else graph_stats(kept))
    return out


def changed_readings(stats: Sequence[GraphStats]) -> list[int]:
    """The readings (folded, pruned) that change some of the graphs of ``stats``: only those can
    labels tell from the graphs as given."""
    return [r for r in range(1, len(READINGS))
            if any(k is not s for k, s in zip(reading_stats(stats, r), stats))]


def stored_reading(value) -> int:
    """The reading index a model stores (models saved before pruning was a reading store 0 or 1)."""
    code = int(round(float(np.asarray(value).reshape(-1)[0])))
    if not 0 <= code < len(READINGS):
        raise UsageError("model", f"stores reading {code}, not one of 0 to {len(READINGS) - 1}")
    return code


def model_reading(model: Mapping[str, np.ndarray]) -> int:
    """Which graphs a fitted model learned that its device runs (index in ``READINGS``)."""
    return stored_reading(model.get("folded", 0.0))


def _log_fit_error(stats: Sequence[GraphStats], y: np.ndarray) -> float:
    """Mean ``|log(p / y)|`` of ``y ~ a FLOPs + b bytes + c nodes + d`` (non-negative, relative
    least squares, in sample), predictions floored at a thousandth of the median label."""
    rows = np.vstack([s.row for s in stats])
    a = np.column_stack([rows[:, _FLOPS_COL], rows[:, _READ_COL] + rows[:, _WRITTEN_COL], rows[:, _NODES_COL],
                         np.ones(len(stats))])
    floor = 1e-3 * max(float(np.median(y)), 1e-30)
    p = a @ fit_relative_nnls(a, y)
    return float(np.mean(np.abs(np.log(np.maximum(p, floor) / np.maximum(y, floor)))))


def device_reading(stats: Sequence[GraphStats], y: np.ndarray) -> tuple[int, list[GraphStats]]:
    """Which graphs labels ``y`` say the device runs, and their stats: of the readings that change
    some graph (folded, pruned), the one where a linear model of FLOPs, bytes and operator count
    (:func:`_log_fit_error`) has the least log error, when that error is under ``FOLDING_GAIN``
    times the error on the graphs as given; else the graphs as given (reading 0)."""
    best, best_stats = 0, list(stats)
    if len(stats) < MIN_LABELS:
        return best, best_stats
    limit = FOLDING_GAIN * _log_fit_error(stats, y)
    for reading in changed_readings(stats):
        kept = reading_stats(stats, reading)
        error = _log_fit_error(kept, y)
        if error < limit:
            best, best_stats, limit = reading, kept, error
    return best, best_stats


# --- validation --------------------------------------------------------------------------------
def _check_graphs(graphs) -> list[Graph]:
    if isinstance(graphs, Graph) or not isinstance(graphs, Sequence):
        raise UsageError("graphs", "must be a list of perfcast Graphs")
    if len(graphs) == 0:
        raise UsageError("graphs", "is empty: need at least one graph")
    for i, g in enumerate(graphs):
        if not isinstance(g, Graph):
            raise UsageError(f"graphs[{i}]", f"is a {type(g).__name__}, not a perfcast Graph")
    return list(graphs)


def _check_targets(targets, n: int) -> dict[str, np.ndarray]:
    if not isinstance(targets, Mapping) or not targets:
        raise UsageError("targets", f"must be a non-empty dict with keys among {', '.join(TARGETS)}")
    out = {}
    for name, values in targets.items():
        if name not in TARGETS:
            raise UsageError(f"targets[{name!r}]", f"unknown target; known: {', '.join(TARGETS)}")
        try:
            y = np.asarray(values, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise UsageError(f"targets[{name!r}]", "labels must be numbers (NaN where missing)") from None
        if y.size != n:
            raise UsageError(f"targets[{name!r}]", f"has {y.size} labels for {n} graphs")
        if np.isinf(y).any():
            raise UsageError(f"targets[{name!r}]", "has infinite labels (use NaN for a missing label)")
        if (y[~np.isnan(y)] < 0).any():
            raise UsageError(f"targets[{name!r}]", "has negative labels")
        labelled = int((~np.isnan(y)).sum())
        if 0 < labelled < MIN_LABELS:
            raise UsageError(f"targets[{name!r}]", f"has {labelled} labels; need at least {MIN_LABELS}")
        if labelled:
            out[name] = y
    if not out:
        raise UsageError("targets", "no target has any label")
    return out


def _check_profiles(profiles, n: int) -> list[list[dict] | None] | None:
    if profiles is None:
        return None
    if isinstance(profiles, (str, bytes, Mapping)) or not isinstance(profiles, Sequence) or len(profiles) != n:
        raise UsageError("kernel_profiles", f"must be a list of {n} kernel-row lists (None where a graph has none)")
    for i, rows in enumerate(profiles):
        if rows is None:
            continue
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
            raise UsageError(f"kernel_profiles[{i}]", "must be a list of kernel rows or None")
        for j, row in enumerate(rows):
            names = row.get("node_names") if isinstance(row, Mapping) else None
            duration = row.get("duration_us") if isinstance(row, Mapping) else None
            if not isinstance(names, Sequence) or isinstance(names, str) or not all(isinstance(x, str) for x in names):
                raise UsageError(f"kernel_profiles[{i}][{j}]", "needs node_names, a list of node names")
            if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration >= 0:
                raise UsageError(f"kernel_profiles[{i}][{j}]", f"duration_us must be a number >= 0, not {duration!r}")
    return list(profiles)


# --- conformal and domain helpers ----------------------------------------------------------------
def relative_residuals(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.abs(y - pred) / np.maximum(pred, 1e-12 * max(float(np.max(np.abs(y))), 1e-300))


def conformal_quantile(sorted_residuals: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile of sorted residuals at miscoverage ``alpha``, at least
    ``MIN_RELATIVE_WIDTH``."""
    n = sorted_residuals.size
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if rank <= n:
        return max(float(sorted_residuals[max(rank, 1) - 1]), MIN_RELATIVE_WIDTH)
    from scipy.stats import t as student_t  # only for very small residual sets

    spread = math.sqrt(float(np.mean(np.square(sorted_residuals))))
    return max(float(sorted_residuals[-1]), float(student_t.ppf(1.0 - alpha / 2.0, n)) * spread, MIN_RELATIVE_WIDTH)


def _log_features(stats: Sequence[GraphStats], target: str | None = None) -> np.ndarray:
    """``log1p`` feature rows for learning ``target``: the storage columns only for memory."""
    end = len(COLUMNS) if target == "memory_bytes" else N_STORAGE
    return np.log1p(np.maximum(np.vstack([s.row[:end] for s in stats]), 0.0))


def domain_features(stats: Sequence[GraphStats]) -> np.ndarray:
    """The ``log1p`` summary columns that the domain check measures distances in."""
    return np.log1p(np.maximum(np.vstack([s.row[:N_SUMMARY] for s in stats]), 0.0))


def _neighbour_distances(z: np.ndarray, reference: np.ndarray, k: int, leave_one_out: bool) -> np.ndarray:
    """Sorted distances from each row of ``z`` to its ``k`` nearest rows of ``reference``
    (``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``, in row blocks so memory stays bounded)."""
    k = max(1, min(k, reference.shape[0] - (1 if leave_one_out else 0)))
    ref_sq = (reference ** 2).sum(axis=1)
    out = np.empty((z.shape[0], k))
    for start in range(0, z.shape[0], _DISTANCE_BLOCK):
        block = z[start: start + _DISTANCE_BLOCK]
        d2 = (block ** 2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * block @ reference.T
        d = np.sqrt(np.maximum(d2, 0.0))
        if leave_one_out:
            rows = np.arange(block.shape[0])
            d[rows, start + rows] = np.inf
        nearest = np.partition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else d
        out[start: start + block.shape[0]] = np.sort(nearest, axis=1)
    return out


def fit_domain(stats: Sequence[GraphStats]) -> dict[str, np.ndarray]:
    z = domain_features(stats)
    mean = z.mean(axis=0)
    scale = np.maximum(z.std(axis=0), DOMAIN_MIN_SCALE)
    zs = (z - mean) / scale
    if len(stats) > 1:
        threshold = np.percentile(_neighbour_distances(zs, zs, DOMAIN_K, True).mean(axis=1), DOMAIN_PERCENTILE)
    else:
        threshold = 0.0
    return {"mean": mean, "scale": scale, "train": zs, "threshold": np.array([threshold]),
            "families": family_codes(stats)}


def random_splits(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(held, rest)`` index pairs of the ``CONFORMAL_FOLDS`` seeded random folds of ``n`` rows."""
    folds = np.random.default_rng(0).permutation(n) % min(CONFORMAL_FOLDS, n)
    return [(np.flatnonzero(folds == k), np.flatnonzero(folds != k)) for k in np.unique(folds)]


def cluster_labels(z: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means labels of the rows of ``z`` (k-means++ seeding from ``seed``, Lloyd iterations
    until no label changes, at most ``KMEANS_ITERATIONS``)."""
    n = z.shape[0]
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centres = [z[rng.integers(n)]]
    d2 = ((z - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = float(d2.sum())
        pick = rng.choice(n, p=d2 / total) if total > 0 else int(rng.integers(n))
        centres.append(z[pick])
        d2 = np.minimum(d2, ((z - z[pick]) ** 2).sum(axis=1))
    centres = np.array(centres)
    labels = np.full(n, -1)
    for _ in range(KMEANS_ITERATIONS):
        dist = (z ** 2).sum(axis=1)[:, None] + (centres ** 2).sum(axis=1)[None, :] - 2.0 * z @ centres.T
        new = np.argmin(dist, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            if (labels == j).any():
                centres[j] = z[labels == j].mean(axis=0)
    return labels


def graph_family(stats: GraphStats) -> str | None:
    """A graph's family: the space of the spec string it was built from (the prefix before
    ``:``), or None when it was not built from a spec (an ONNX file, a module) or is no longer in
    memory."""
    graph = stats.graph
    if graph is None or graph.source_format != "spec" or ":" not in graph.name:
        return None
    return graph.name.split(":", 1)[0]


def graph_families(stats: Sequence[GraphStats]) -> np.ndarray | None:
    """Every graph's family, or None when any graph has none (:func:`graph_family`)."""
    families = [graph_family(s) for s in stats]
    return None if any(f is None for f in families) else np.array(families)


def family_code(family: str) -> int:
    """The CRC-32 code of a family name (how a domain stores its families among its arrays)."""
    return zlib.crc32(family.encode())


def family_codes(stats: Sequence[GraphStats]) -> np.ndarray:
    """The sorted distinct codes of the graphs' known families."""
    return np.unique(np.array([family_code(f) for f in map(graph_family, stats) if f is not None], dtype=np.int64))


def family_folds(families: np.ndarray, k: int) -> np.ndarray:
    """Fold labels that keep every family whole: families by decreasing size, each into the
    fold with the fewest graphs so far, at most ``k`` folds (ties by name, so the cut is fixed)."""
    names, counts = np.unique(families, return_counts=True)
    sizes = np.zeros(min(k, names.size), int)
    fold_of = {}
    for i in sorted(range(names.size), key=lambda i: (-counts[i], names[i])):
        f = int(np.argmin(sizes))
        fold_of[names[i]] = f
        sizes[f] += counts[i]
    return np.array([fold_of[f] for f in families])


def extrapolation_labels(stats: Sequence[GraphStats]) -> np.ndarray:
    """The groups that are left out in turn to calibrate out-of-domain intervals: whole families
    (:func:`family_folds`) when the graphs come from at least two, else k-means clusters of the
    standardised domain features."""
    families = graph_families(stats)
    if families is not None and np.unique(families).size > 1:
        return family_folds(families, CONFORMAL_FOLDS)
    z = domain_features(stats)
    return cluster_labels((z - z.mean(axis=0)) / np.maximum(z.std(axis=0), DOMAIN_MIN_SCALE), CONFORMAL_FOLDS)


def cluster_splits(stats: Sequence[GraphStats]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(held, rest, outside)`` per group of :func:`extrapolation_labels` (see the module text):
    the held-out indices, the others, and per held-out graph whether the others' domain check
    calls it out of domain. Empty below ``OOD_MIN_ROWS`` graphs or with one group."""
    n = len(stats)
    if n < OOD_MIN_ROWS:
        return []
    labels = extrapolation_labels(stats)
    groups = np.unique(labels)
    splits = []
    for g in groups if groups.size > 1 else []:
        held, rest = np.flatnonzero(labels == g), np.flatnonzero(labels != g)
        if rest.size < MIN_LABELS:
            continue
        outside = ~in_domain_mask(fit_domain([stats[i] for i in rest]), [stats[i] for i in held])
        splits.append((held, rest, outside))
    return splits


def extrapolation_residuals(residuals: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """The sorted out-of-domain residual set from the held-out residuals of every cluster split
    (``outside`` flags those the others' domain check rejected)."""
    use = residuals[outside] if int(outside.sum()) >= OOD_MIN_RESIDUALS else residuals
    return np.sort(use)


def extend_domain(domain: Mapping[str, np.ndarray], stats: Sequence[GraphStats]) -> dict[str, np.ndarray]:
    """A copy of ``domain`` with ``stats`` added to its reference set (same standardisation)."""
    out = {k: np.array(v, copy=True) for k, v in domain.items()}
    out["train"] = np.vstack([out["train"], (domain_features(stats) - out["mean"]) / out["scale"]])
    out["families"] = np.union1d(domain.get("families", np.zeros(0, np.int64)), family_codes(stats)).astype(np.int64)
    return out


def in_domain_mask(domain: Mapping[str, np.ndarray], stats: Sequence[GraphStats]) -> np.ndarray:
    """True where a graph is near the training graphs (the distance check of the module text)
    and is not of a family that the training graphs, which know theirs, never included."""
    zs = (domain_features(stats) - domain["mean"]) / domain["scale"]
    near = _neighbour_distances(zs, domain["train"], DOMAIN_K, False)
    inside = (near.mean(axis=1) <= float(domain["threshold"][0])) | (near[:, 0] <= SAME_FEATURES)
    known = domain.get("families")
    if known is not None and known.size:
        families = [graph_family(s) for s in stats]
        unseen = np.array([f is not None and family_code(f) not in known for f in families], dtype=bool)
        inside &= ~unseen
    return inside


# --- the interface -----------------------------------------------------------------------------
class Parameters:
    """Parameters read back from ``__init__``'s arguments, which a subclass stores as attributes
    of the same names."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class Predictor(Parameters):
    """Base class of every predictor (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    LEARNS_FOLDING: ClassVar[bool] = False  # sums operator costs: learn whether the device folds

    # -- hooks --------------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Raise UsageError for a bad parameter value (called by fit)."""

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _predict_target(self, target: str, model: Mapping[str, np.ndarray], stats: list[GraphStats]) -> np.ndarray:
        raise NotImplementedError

    def _fit_target_profiled(self, target: str, stats: list[GraphStats], y: np.ndarray,
                             profiles: list[list[dict] | None] | None) -> dict[str, np.ndarray]:
        """``_fit_target`` given the kernel profiles of the same graphs (None when fit got none)."""
        return self._fit_target(target, stats, y)

    def _select_target(self, target: str, stats: list[GraphStats], y: np.ndarray,
                       profiles: list[list[dict] | None] | None) -> np.ndarray | None:
        """Choose among a predictor's variants for one target before it is fitted; returns the
        chosen variant's sorted cross-fitted residuals, or None (nothing to choose)."""
        return None

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, graphs: Sequence[Graph], targets: Mapping[str, Sequence[float]],
            kernel_profiles: Sequence[list[dict] | None] | None = None) -> "Predictor":
        """Learn every target that has labels; NaN marks a missing label. ``kernel_profiles``
        (optional) holds each graph's kernel rows, for methods that learn from kernels."""
        self._check_params()
        graphs = _check_graphs(graphs)
        labels = _check_targets(targets, len(graphs))
        profiles = _check_profiles(kernel_profiles, len(graphs))
        stats = [graph_stats(g) for g in graphs]
        self.models_: dict[str, dict[str, np.ndarray]] = {}
        self.residuals_: dict[str, np.ndarray] = {}
        self.ood_residuals_: dict[str, np.ndarray] = {}
        for target, y in labels.items():
            keep = np.flatnonzero(~np.isnan(y))
            sub = [stats[i] for i in keep]
            sub_profiles = None if profiles is None else [profiles[i] for i in keep]
            self._learn_target(target, sub, y[keep], sub_profiles)
        self.targets_ = [t for t in TARGETS if t in labels]
        self.domain_ = fit_domain(stats)
        self.n_train_ = len(graphs)
        return self

    def _learn_target(self, target: str, stats: list[GraphStats], y: np.ndarray,
                      profiles: list[list[dict] | None] | None = None) -> None:
        """Fit one target: whether the device folds (for methods that sum operators), its model,
        its cross-fitted residuals and its out-of-domain residuals."""
        reading, stats = self._folding(stats, y, profiles)
        chosen = self._select_target(target, stats, y, profiles)
        self.models_[target] = self._stamp_folding(self._fit_target_profiled(target, stats, y, profiles), reading)
        self.residuals_[target] = chosen if chosen is not None else self._cross_residuals(target, stats, y, profiles)
        self.ood_residuals_[target] = self._cluster_residuals(target, stats, y, profiles)

    def _folding(self, stats: list[GraphStats], y: np.ndarray,
                 profiles: list[list[dict] | None] | None = None) -> tuple[int, list[GraphStats]]:
        """Which graphs this method's device runs (:func:`device_reading`, by the labels ``y``; the
        graphs as given for a method that does not sum operators, or with kernel profiles), and the
        stats to fit on accordingly."""
        if not self.LEARNS_FOLDING or any(profiles or ()):
            return 0, stats
        return device_reading(stats, y)

    def _stamp_folding(self, model: dict[str, np.ndarray], reading: int) -> dict[str, np.ndarray]:
        if self.LEARNS_FOLDING:
            model["folded"] = np.array([float(reading)])
        return model

    def fit_model(self, target: str, stats: list[GraphStats], y: np.ndarray,
                  profiles: list[list[dict] | None] | None = None) -> dict[str, np.ndarray]:
        """One target's model alone (no residuals), its folding learned from ``y``: what
        :meth:`predict_model` takes (``profiles``: the graphs' kernel profiles, as ``fit`` takes them)."""
        reading, stats = self._folding(stats, y, profiles)
        return self._stamp_folding(self._fit_target_profiled(target, stats, y, profiles), reading)

    def _cross_residuals(self, target: str, stats: list[GraphStats], y: np.ndarray,
                         profiles: list[list[dict] | None] | None = None) -> np.ndarray:
        residuals = np.empty(len(stats))
        for held, rest in random_splits(len(stats)):
            rest_profiles = None if profiles is None else [profiles[i] for i in rest]
            model = self._fit_target_profiled(target, [stats[i] for i in rest], y[rest], rest_profiles)
            pred = self._predict_target(target, model, [stats[i] for i in held])
            residuals[held] = relative_residuals(y[held], pred)
        return np.sort(residuals)

    def _cluster_residuals(self, target: str, stats: list[GraphStats], y: np.ndarray,
                           profiles: list[list[dict] | None] | None = None) -> np.ndarray:
        """The out-of-domain residual set of one target (:func:`cluster_splits`)."""
        residuals, outside = [], []
        for held, rest, out in cluster_splits(stats):
            rest_profiles = None if profiles is None else [profiles[i] for i in rest]
            model = self._fit_target_profiled(target, [stats[i] for i in rest], y[rest], rest_profiles)
            residuals.append(relative_residuals(y[held], self._predict_target(target, model, [stats[i] for i in held])))
            outside.append(out)
        if not residuals:
            return np.zeros(0)
        return extrapolation_residuals(np.concatenate(residuals), np.concatenate(outside))

    # -- predict ------------------------------------------------------------------------------
    def _fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise UsageError(f"predictor {self.name}", "is not fitted: call fit or load first")

    def predict(self, graphs: Sequence[Graph]) -> dict[str, np.ndarray]:
        """Point predictions ``{target: array}`` for every fitted target."""
        self._fitted()
        stats = [graph_stats(g) for g in _check_graphs(graphs)]
        return {t: np.maximum(self.predict_model(t, self.models_[t], stats), 0.0) for t in self.targets_}

    def predict_model(self, target: str, model: Mapping[str, np.ndarray], stats: list[GraphStats]) -> np.ndarray:
        """``_predict_target`` of a fitted model, on the graphs its device runs (folded or pruned
        where the model learned so)."""
        return self._predict_target(target, model, reading_stats(stats, model_reading(model)))

    def in_domain(self, graphs: Sequence[Graph]) -> np.ndarray:
        """True where a graph lies inside the feature-space neighbourhood of the training set."""
        self._fitted()
        return in_domain_mask(self.domain_, [graph_stats(g) for g in _check_graphs(graphs)])

    def predict_interval(self, graphs: Sequence[Graph], alpha: float = 0.1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Conformal ``(lo, hi)`` per target at nominal coverage ``1 - alpha``, widened out of domain."""
        return self.predict_full(graphs, alpha)[1]

    def predict_full(self, graphs: Sequence[Graph], alpha: float = 0.1) -> tuple[
            dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """``(predict, predict_interval, in_domain)`` of the same graphs, each computed once."""
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
            raise UsageError("alpha", f"must be in (0, 1), not {alpha!r}")
        pred = self.predict(graphs)
        inside = self.in_domain(graphs)
        known = self.domain_.get("families", np.zeros(0))
        widening = 1.0 if known.size > 1 else OOD_WIDENING
        new_family = np.zeros(len(inside), bool)
        if known.size == 1:
            families = [graph_family(graph_stats(g)) for g in graphs]
            new_family = np.array([f is None or family_code(f) not in known for f in families], bool)
        out = {}
        for target, p in pred.items():
            q_in = conformal_quantile(self.residuals_[target], alpha)
            ood = self.ood_residuals_.get(target)
            q_out = (max(widening * q_in, conformal_quantile(ood, alpha)) if ood is not None and ood.size
                     else OOD_WIDENING * q_in)
            q_new = max(q_out, UNSEEN_FAMILY_WIDTH * q_in / conformal_quantile(self.residuals_[target], 0.1))
            q = np.where(inside, q_in, np.where(new_family, q_new, q_out))
            out[target] = (p * np.maximum(1.0 - q, 0.0), p * (1.0 + q))
        return pred, out, inside

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted predictor to the directory ``path`` (created if needed)."""
        self._fitted()
        params = self.get_params()
        text = {t: {k: v for k, v in m.items() if isinstance(v, str)} for t, m in self.models_.items()}
        try:
            meta = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name,
                               "params": params, "targets": self.targets_, "n_train": self.n_train_,
                               "feature_columns": list(COLUMNS),
                               **({"model_text": {t: m for t, m in text.items() if m}} if any(text.values()) else {})},
                              indent=2)
        except TypeError as exc:
            raise UsageError(f"predictor {self.name}", f"parameters are not JSON-serialisable: {exc}") from None
        arrays = {f"model/{t}/{k}": np.ascontiguousarray(v, dtype=np.float64)
                  for t, m in self.models_.items() for k, v in m.items() if not isinstance(v, str)}
        arrays.update({f"residuals/{t}": r for t, r in self.residuals_.items()})
        arrays.update({f"ood_residuals/{t}": r for t, r in self.ood_residuals_.items() if r.size})
        arrays.update({f"domain/{k}": np.ascontiguousarray(v) for k, v in self.domain_.items()})
        return write_saved(path, "predictor.json", meta, arrays)

    @staticmethod
    def load(path: str | os.PathLike) -> "Predictor":
        """Read a predictor written by :meth:`save` (any registered class)."""
        meta, arrays = read_saved(path, "predictor.json", FORMAT, FORMAT_VERSION, "predictor")
        pred = get_predictor(meta["name"], **meta["params"])
        pred.targets_ = list(meta["targets"])
        pred.n_train_ = int(meta["n_train"])
        pred.models_ = {t: {} for t in pred.targets_}
        pred.residuals_ = {}
        pred.ood_residuals_ = {}
        pred.domain_ = {}
        for key, value in arrays.items():
            kind, _, rest = key.partition("/")
            if kind == "model":
                target, _, name = rest.partition("/")
                pred.models_[target][name] = value
            elif kind == "residuals":
                pred.residuals_[rest] = value
            elif kind == "ood_residuals":
                pred.ood_residuals_[rest] = value
            elif kind == "domain":
                pred.domain_[rest] = value
        text = meta.get("model_text", {})
        if not isinstance(text, dict) or not all(
                t in pred.models_ and isinstance(m, dict) and all(isinstance(v, str) for v in m.values())
                for t, m in text.items()):
            raise ModelLoadError(str(path), "predictor.json has a malformed model_text")
        for target, values in text.items():
            pred.models_[target].update(values)
        return pred


def write_saved(path: str | os.PathLike, meta_name: str, meta: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write a saved directory: ``arrays.safetensors`` and the JSON text ``meta`` as ``meta_name``."""
    from safetensors.numpy import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out / "arrays.safetensors"))
    (out / meta_name).write_text(meta + "\n", encoding="utf-8")
    return out


def read_saved(path: str | os.PathLike, meta_name: str, fmt: str, version: int,
               what: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of a directory written by :func:`write_saved`, checked to be of
    format ``fmt`` at ``version`` with this perfcast's feature columns, or with those before the
    buffer columns were appended (trees trained then read the columns they knew:
    :func:`perfcast.predictors.gbt.known_features`); ``what`` names the kind of saved object in
    errors."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    root = Path(path)
    try:
        meta = json.loads((root / meta_name).read_text(encoding="utf-8"))
        arrays = load_file(str(root / "arrays.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelLoadError(str(path), f"not a saved {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ModelLoadError(str(path), f"{meta_name} is not a perfcast {what}")
    if meta.get("format_version") != version:
        raise ModelLoadError(str(path), f"format version {meta.get('format_version')!r}; "
                                        f"this perfcast reads {version}")
    if meta.get("feature_columns") not in (list(COLUMNS), list(COLUMNS[:N_BUFFERS])):
        raise ModelLoadError(str(path), "saved with a different feature set")
    return meta, arrays


def leave_one_out_residuals(predictor: "Predictor", target: str, stats: list[GraphStats],
                            y: np.ndarray) -> np.ndarray:
    """Sorted relative residuals of ``predictor``'s hooks, each row predicted by a model fitted on
    all the other rows."""
    n = len(stats)
    residuals = np.empty(n)
    for i in range(n):
        rest = [k for k in range(n) if k != i]
        model = predictor._fit_target(target, [stats[k] for k in rest], y[rest])
        residuals[i] = relative_residuals(y[i: i + 1], predictor._predict_target(target, model, [stats[i]]))[0]
    return np.sort(residuals)
