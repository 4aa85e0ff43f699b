"""Evaluation protocols over label tables: every number comes from
:func:`perfcast.evaluation.metrics.summarize` on held-out networks.

- ``a`` in-distribution: per table, the distinct architectures of its source are cut once into
  train (``1 - test_fraction``) and test; each method is fitted on ``train_sizes`` training rows
  (a fixed random order, ``None`` = every training row) and scored on the test rows.
- ``b`` new device: each device setting is left out in turn; from its training rows ``k`` rows of
  distinct architectures are drawn (``draws`` times); every method is fitted on those ``k`` rows
  alone, and :func:`perfcast.adapt.adapt` adapts predictors of the other devices of the same source
  at the same batch size (``base_method`` fitted on their training rows); all are scored on the left-out
  device's test rows and the metrics are averaged over the draws.
- ``b`` with multi-device methods (``Settings.fewshot``, :mod:`perfcast.predictors.multidevice`):
  for each left-out device, each method is fitted on the training rows of every other device of
  the same source (every batch size; the left-out device at no batch size), once per device, then
  adapted with the same ``k`` rows of each draw and scored on the same test rows; records carry
  the method's name and ``n_bases`` = the number of source tables.
- ``c`` leave one space out: the tables of one device setting (across sources) are merged; for each
  space (spec prefix) a method is fitted on the rows of the other spaces (at most ``max_train`` of
  them) and scored on that space. Settings whose rows come from one space only are skipped.

Intervals are the predictors' conformal intervals at ``alpha`` (90% by default); ``coverage`` is
the fraction of test labels inside. A fit that a method refuses (a :class:`PerfcastError`, or a
singular linear system) becomes a note instead of a row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Sequence

import numpy as np

from perfcast.errors import PerfcastError, UsageError
from perfcast.evaluation.metrics import summarize
from perfcast.evaluation.tables import GraphCache, LabelTable, space_of
from perfcast.predictors import get_predictor, predictor_names
from perfcast.predictors.base import MIN_LABELS
from perfcast.predictors.features import COLUMNS, graph_stats

PROTOCOLS = ("a", "b", "c")
ADAPT = "adapt"
_MACS = COLUMNS.index("macs")


@dataclass(frozen=True)
class Settings:
    """What to run; the defaults are the full evaluation."""

    methods: tuple[str, ...] = ()
    protocols: tuple[str, ...] = PROTOCOLS
    train_sizes: tuple[int | None, ...] = (100, 900, None)
    test_fraction: float = 0.2
    ks: tuple[int, ...] = (5, 10, 20)
    draws: int = 3
    base_method: str = "gbt"
    max_train: int | None = 1500
    alpha: float = 0.1
    seed: int = 0
    fewshot: tuple[str, ...] = ()

    def checked(self) -> "Settings":
        """These settings with the default methods filled in; bad values raise UsageError."""
        from perfcast.predictors.multidevice import multidevice_names

        known = predictor_names()
        multi = multidevice_names()
        methods = self.methods or tuple(n for n in known if n not in multi)
        for name in self.fewshot:
            if name not in multi:
                raise UsageError(name, f"unknown multi-device method (known: {', '.join(multi)})")
            if name in methods:
                raise UsageError(name, "is both a method and a multi-device method; name it once")
        for name in (*methods, self.base_method):
            if name not in known:
                raise UsageError(name, f"unknown method (known: {', '.join(known)})")
        for p in self.protocols:
            if p not in PROTOCOLS:
                raise UsageError(p, f"unknown protocol (known: {', '.join(PROTOCOLS)}, all)")
        if not 0.0 < self.test_fraction < 1.0:
            raise UsageError("test_fraction", f"must be in (0, 1), not {self.test_fraction}")
        if any(s is not None and s < MIN_LABELS for s in self.train_sizes) or any(k < MIN_LABELS for k in self.ks):
            raise UsageError("train sizes", f"every train size and k must be at least {MIN_LABELS}")
        if self.draws < 1:
            raise UsageError("draws", f"must be at least 1, not {self.draws}")
        return Settings(methods, self.protocols, self.train_sizes, self.test_fraction, self.ks, self.draws,
                        self.base_method, self.max_train, self.alpha, self.seed, tuple(self.fewshot))


@dataclass
class Evaluation:
    """What the protocols produced: metric records, test predictions of protocols a and c, notes
    and wall time per protocol."""

    records: list[dict] = field(default_factory=list)
    predictions: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    graphs_built: int = 0


# --- splits ------------------------------------------------------------------------------------
def test_keys(split_keys: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The split keys held out for testing: ``round(fraction * n)`` of the ``n`` distinct keys
    (at least one, at most ``n - 1``), drawn with ``seed``."""
    keys = sorted(set(split_keys))
    n_test = min(max(int(round(fraction * len(keys))), 1), len(keys) - 1)
    order = np.random.default_rng(seed).permutation(len(keys))
    return {keys[i] for i in order[:n_test]}


def split_rows(keys: Sequence[str], held_out: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of a table whose rows have split ``keys``."""
    test = np.array([k in held_out for k in keys], dtype=bool)
    return np.flatnonzero(~test), np.flatnonzero(test)


def distinct_draw(keys: Sequence[str], rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` of ``rows`` with pairwise different ``keys`` (fewer when there are fewer keys)."""
    seen: set[str] = set()
    chosen = []
    for i in rng.permutation(rows):
        if keys[i] not in seen:
            seen.add(keys[i])
            chosen.append(int(i))
            if len(chosen) == k:
                break
    return np.array(chosen, dtype=int)


# --- one fit -----------------------------------------------------------------------------------
def usable_targets(targets: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The targets with at least MIN_LABELS labels among ``rows``, restricted to them."""
    out = {t: y[rows] for t, y in targets.items()}
    return {t: y for t, y in out.items() if int((~np.isnan(y)).sum()) >= MIN_LABELS}


def fit_method(method: str, graphs: list, targets: dict[str, np.ndarray],
               profiles: list[list[dict] | None] | None = None):
    """A fitted predictor of ``method`` (registered name), given the graphs' kernel profiles
    where the data has them."""
    return get_predictor(method).fit(graphs, targets, kernel_profiles=profiles)


def score(predictor, graphs: list, targets: dict[str, np.ndarray], rank_keys: Sequence[str],
          alpha: float) -> dict[str, tuple[dict, dict]]:
    """``{target: (metrics, arrays)}`` of a fitted predictor on labelled test graphs; ``arrays``
    holds y, pred, lo, hi."""
    pred, interval, _ = predictor.predict_full(graphs, alpha)
    out = {}
    for target, y in targets.items():
        if target not in pred or not (~np.isnan(y)).any():
            continue
        lo, hi = interval[target]
        out[target] = (summarize(y, pred[target], rank_keys, lo, hi),
                       {"y": y, "pred": pred[target], "lo": lo, "hi": hi})
    return out


def _attempt(ev: Evaluation, context: str, fn: Callable):
    """``fn()``, or None with a note when the method refuses the data."""
    try:
        return fn()
    except (PerfcastError, np.linalg.LinAlgError) as exc:
        message = f"{exc.subject}: {exc.problem}" if isinstance(exc, PerfcastError) else str(exc)
        ev.notes.append(f"{context}: skipped ({type(exc).__name__}: {message})")
        return None


def _record(protocol: str, table: LabelTable, method: str, target: str, metrics: dict, **extra) -> dict:
    return {"protocol": protocol, "source": table.source, "device": table.name, "kind": table.kind,
            "method": method, "target": target, **extra, **metrics}


def _size_label(size: int | None) -> str:
    return "all" if size is None else str(size)


@dataclass(frozen=True)
class HeldOutRows:
    """The held-out rows of a table: their graphs, labels and rank keys."""

    rows: np.ndarray
    graphs: list
    targets: dict[str, np.ndarray]
    rank: list[str]

    @cached_property
    def macs(self) -> np.ndarray:
        return np.array([graph_stats(g).row[_MACS] for g in self.graphs])


def held_out_rows(table: LabelTable, cache: GraphCache, rows: np.ndarray) -> HeldOutRows:
    """The rows ``rows`` of ``table``."""
    graphs = cache.graphs(table)
    rank = cache.rank_keys(table)
    return HeldOutRows(rows, [graphs[i] for i in rows], {t: y[rows] for t, y in table.targets.items()},
                       [rank[i] for i in rows])


def _scored(ev: Evaluation, context: str, fitted, test: HeldOutRows, alpha: float) -> dict[str, tuple[dict, dict]]:
    """``score`` of ``fitted`` on ``test`` (empty when there is no fitted predictor or it refuses)."""
    scored = fitted and _attempt(ev, context, lambda: score(fitted, test.graphs, test.targets, test.rank, alpha))
    return scored or {}


def _fit_and_record(ev: Evaluation, protocol: str, table: LabelTable, method: str, context: str,
                    graphs: list, train: np.ndarray, labels: dict[str, np.ndarray], test: HeldOutRows,
                    s: Settings, setting: str, **extra) -> None:
    """Fit ``method`` on the ``train`` rows of ``graphs`` (with their kernel profiles), score it on
    ``test`` and keep its metric records (with ``extra``) and test predictions (under ``setting``)."""
    fitted = _attempt(ev, context, lambda: fit_method(method, [graphs[i] for i in train], labels,
                                                      table.profiles_of(train)))
    for target, (metrics, arrays) in _scored(ev, context, fitted, test, s.alpha).items():
        ev.records.append(_record(protocol, table, method, target, metrics, **extra))
        ev.predictions.append({"protocol": protocol, "source": table.source, "device": table.name,
                               "kind": table.kind, "method": method, "setting": setting, "target": target,
                               "specs": [table.specs[i] for i in test.rows], "rank_keys": test.rank,
                               "macs": test.macs, **arrays})


# --- protocol a --------------------------------------------------------------------------------
def protocol_a(ev: Evaluation, table: LabelTable, cache: GraphCache, held_out: set[str], s: Settings) -> None:
    graphs = cache.graphs(table)
    train, test = split_rows(cache.split_keys(table), held_out)
    order = np.random.default_rng(s.seed).permutation(train)
    held = held_out_rows(table, cache, test)
    for size in s.train_sizes:
        if size is not None and size >= train.size:
            ev.notes.append(f"a {table.source} {table.name}: train size {size} skipped "
                            f"(only {train.size} training rows)")
            continue
        rows = order if size is None else order[:size]
        labels = usable_targets(table.targets, rows)
        label = _size_label(size)
        for method in s.methods:
            _fit_and_record(ev, "a", table, method, f"a {table.source} {table.name} {method} n={rows.size}",
                            graphs, rows, labels, held, s, label, train_size=label,
                            n_train=int(rows.size))


# --- protocol b --------------------------------------------------------------------------------
def adapt_function() -> Callable | None:
    """:func:`perfcast.adapt.adapt`, or None when that module is not there."""
    try:
        from perfcast.adapt import adapt
    except ModuleNotFoundError as exc:
        if exc.name in ("perfcast.adapt",):
            return None
        raise
    return adapt


def fit_bases(ev: Evaluation, tables: list[LabelTable], cache: GraphCache, held_out: set[str],
              s: Settings) -> dict[str, object]:
    """``base_method`` fitted on the training rows of each table, by table name."""
    bases = {}
    for table in tables:
        train, _ = split_rows(cache.split_keys(table), held_out)
        graphs = cache.graphs(table)
        labels = usable_targets(table.targets, train)
        fitted = _attempt(ev, f"b {table.source} {table.name} base {s.base_method}",
                          lambda: fit_method(s.base_method, [graphs[i] for i in train], labels))
        if fitted is not None:
            bases[table.name] = fitted
    return bases


def _draws(table: LabelTable, graphs: list, split: Sequence[str], train: np.ndarray, k: int, s: Settings):
    """``(draw, sample graphs, their usable labels)`` of each of the ``s.draws`` draws of ``k``
    training rows of distinct architectures."""
    for draw in range(s.draws):
        rows = distinct_draw(split, train, k, np.random.default_rng([s.seed, k, draw]))
        yield draw, [graphs[i] for i in rows], usable_targets(table.targets, rows)


def protocol_b(ev: Evaluation, table: LabelTable, others: list[LabelTable], bases: dict[str, object],
               cache: GraphCache, held_out: set[str], s: Settings, adapt: Callable | None) -> None:
    graphs = cache.graphs(table)
    split = cache.split_keys(table)
    train, test = split_rows(split, held_out)
    held = held_out_rows(table, cache, test)
    my_bases = [bases[o.name] for o in others
                if o.device != table.device and o.batch_size == table.batch_size and o.name in bases]
    methods = list(s.methods) + [ADAPT]
    if adapt is None:
        ev.notes.append(f"b {table.source} {table.name}: adapt skipped (perfcast.adapt is not available)")
        methods.remove(ADAPT)
    elif not my_bases:
        ev.notes.append(f"b {table.source} {table.name}: adapt skipped (no other device of {table.source} "
                        f"at batch size {table.batch_size})")
        methods.remove(ADAPT)
    for k in s.ks:
        if k >= train.size:
            ev.notes.append(f"b {table.source} {table.name}: k={k} skipped (only {train.size} training rows)")
            continue
        per_draw: dict[tuple[str, str], list[dict]] = {}
        for draw, sample, labels in _draws(table, graphs, split, train, k, s):
            for method in methods:
                context = f"b {table.source} {table.name} {method} k={k} draw {draw}"
                if method == ADAPT:
                    fitted = _attempt(ev, context, lambda: adapt(sample, labels, my_bases))
                else:
                    fitted = _attempt(ev, context, lambda: fit_method(method, sample, labels))
                for target, (metrics, _) in _scored(ev, context, fitted, held, s.alpha).items():
                    per_draw.setdefault((method, target), []).append(metrics)
        for (method, target), draws in per_draw.items():
            ev.records.append(_record("b", table, method, target, mean_metrics(draws), k=k, n_train=k,
                                      n_bases=len(my_bases) if method == ADAPT else 0, draws=draws))


# --- protocol b, multi-device methods ------------------------------------------------------------
def source_data(tables: list[LabelTable], left_out: str, cache: GraphCache, held_out: set[str]) -> dict:
    """``fit_devices`` data of the training rows of every table whose device is not ``left_out``."""
    data = {}
    for other in tables:
        if other.device == left_out:
            continue
        train, _ = split_rows(cache.split_keys(other), held_out)
        labels = usable_targets(other.targets, train)
        if labels:
            graphs = cache.graphs(other)
            data[other.name] = ([graphs[i] for i in train], labels)
    return data


def protocol_b_multidevice(ev: Evaluation, table: LabelTable, others: list[LabelTable], cache: GraphCache,
                           held_out: set[str], s: Settings, backbones: dict) -> None:
    """Protocol b for the multi-device methods of ``s.fewshot``; ``backbones`` keeps each fitted
    model by (method, left-out device) across the tables of one source."""
    from perfcast.predictors.multidevice import get_multidevice

    graphs = cache.graphs(table)
    split = cache.split_keys(table)
    train, test = split_rows(split, held_out)
    held = held_out_rows(table, cache, test)
    data = None
    models = {}
    for method in s.fewshot:
        key = (method, table.device)
        if key not in backbones:
            data = data if data is not None else source_data(others, table.device, cache, held_out)
            context = f"b {table.source} {table.name} {method} backbone"
            backbones[key] = _attempt(ev, context, lambda: get_multidevice(method).fit_devices(data)) if data else None
            if not data:
                ev.notes.append(f"{context}: skipped (no other device of {table.source})")
        models[method] = backbones[key]
    for k in s.ks:
        if k >= train.size:
            continue
        per_draw: dict[tuple[str, str], list[dict]] = {}
        for draw, sample, labels in _draws(table, graphs, split, train, k, s):
            for method, model in models.items():
                if model is None:
                    continue
                context = f"b {table.source} {table.name} {method} k={k} draw {draw}"
                fitted = _attempt(ev, context, lambda: model.adapt(sample, labels, device=table.name))
                for target, (metrics, _) in _scored(ev, context, fitted, held, s.alpha).items():
                    per_draw.setdefault((method, target), []).append(metrics)
        for (method, target), draws in per_draw.items():
            ev.records.append(_record("b", table, method, target, mean_metrics(draws), k=k, n_train=k,
                                      n_bases=len(models[method].tasks), draws=draws))


def mean_metrics(draws: list[dict]) -> dict:
    """The mean of each metric over draws (NaN-aware; NaN when every draw is NaN)."""
    out = {}
    for key in draws[0]:
        values = np.array([d[key] for d in draws], dtype=float)
        ok = values[~np.isnan(values)]
        out[key] = float(ok.mean()) if ok.size else float("nan")
    for key in ("n", "n_distinct"):
        out[key] = int(draws[0][key])
    return out


# --- protocol c --------------------------------------------------------------------------------
def merge_tables(tables: list[LabelTable]) -> LabelTable:
    """One table of the rows of several tables of one device setting."""
    first = tables[0]
    targets = sorted({t for tab in tables for t in tab.targets})
    labels = {t: np.concatenate([tab.targets.get(t, np.full(len(tab), np.nan)) for tab in tables]) for t in targets}
    source = "+".join(dict.fromkeys(tab.source for tab in tables))
    profiles = None
    if any(tab.profiles is not None for tab in tables):
        profiles = tuple(p for tab in tables for p in (tab.profiles or (None,) * len(tab)))
    return LabelTable(source, first.device, first.batch_size, first.kind,
                      tuple(s for tab in tables for s in tab.specs), labels, profiles)


def protocol_c(ev: Evaluation, table: LabelTable, cache: GraphCache, s: Settings) -> None:
    spaces = np.array([space_of(spec) for spec in table.specs])
    names = sorted(set(spaces))
    if len(names) < 2:
        ev.notes.append(f"c {table.source} {table.name}: skipped (one space only: {names[0]})")
        return
    graphs = cache.graphs(table)
    for space in names:
        test = np.flatnonzero(spaces == space)
        train = np.flatnonzero(spaces != space)
        if s.max_train is not None and train.size > s.max_train:
            train = np.sort(np.random.default_rng(s.seed).choice(train, size=s.max_train, replace=False))
        held = held_out_rows(table, cache, test)
        labels = usable_targets(table.targets, train)
        for method in s.methods:
            _fit_and_record(ev, "c", table, method, f"c {table.source} {table.name} {method} without {space}",
                            graphs, train, labels, held, s, space, space=space,
                            n_train=int(train.size))


# --- driver ------------------------------------------------------------------------------------
def _by(tables: Iterable[LabelTable], key: Callable[[LabelTable], object]) -> dict:
    groups: dict = {}
    for t in tables:
        groups.setdefault(key(t), []).append(t)
    return groups


def _steps(tables: list[LabelTable], s: Settings) -> int:
    n = 0
    if "a" in s.protocols:
        n += len(tables)
    if "b" in s.protocols:
        n += 2 * len(tables)
    if "c" in s.protocols:
        n += len(_by(tables, lambda t: t.name))
    return n


def evaluate(tables: list[LabelTable], settings: Settings, cache: GraphCache | None = None,
             progress=None) -> Evaluation:
    """Run the chosen protocols over ``tables``; ``progress`` (a Progress or None) is advanced
    once per table step."""
    s = settings.checked()
    if not tables:
        raise UsageError("data", "no labelled networks to evaluate")
    cache = cache or GraphCache()
    ev = Evaluation()
    tick = progress.update if progress is not None else (lambda n=1, note="": None)
    adapt = adapt_function() if "b" in s.protocols else None
    for source, group in _by(tables, lambda t: t.source).items():
        held_out = test_keys((k for t in group for k in cache.split_keys(t)), s.test_fraction, s.seed)
        if "a" in s.protocols:
            start = time.monotonic()
            for table in group:
                protocol_a(ev, table, cache, held_out, s)
                tick(1, f"a {table.name}")
            ev.seconds["a"] = ev.seconds.get("a", 0.0) + time.monotonic() - start
        if "b" in s.protocols:
            start = time.monotonic()
            bases = fit_bases(ev, group, cache, held_out, s) if adapt is not None else {}
            tick(len(group), f"b bases {source}")
            backbones: dict = {}
            for table in group:
                protocol_b(ev, table, group, bases, cache, held_out, s, adapt)
                if s.fewshot:
                    protocol_b_multidevice(ev, table, group, cache, held_out, s, backbones)
                tick(1, f"b {table.name}")
            ev.seconds["b"] = ev.seconds.get("b", 0.0) + time.monotonic() - start
        ev.graphs_built = cache.built
        cache.clear()
    if "c" in s.protocols:
        start = time.monotonic()
        for _, same_batch in sorted(_by(tables, lambda t: t.batch_size).items()):
            for name, group in _by(same_batch, lambda t: t.name).items():
                protocol_c(ev, merge_tables(group), cache, s)
                tick(1, f"c {name}")
            cache.clear()
        ev.seconds["c"] = time.monotonic() - start
    ev.graphs_built = cache.built
    return ev


def total_steps(tables: list[LabelTable], settings: Settings) -> int:
    """How many progress steps :func:`evaluate` makes over ``tables``."""
    return _steps(tables, settings)
