"""Writing an :class:`~perfcast.evaluation.harness.Evaluation` out: ``report.md`` (summary tables
with methods as rows, then per-device detail tables), ``metrics.json`` (every record, NaN as null),
``predictions.csv.gz`` (the test predictions of protocols a and c, one row per network, from which
every metric of those protocols can be recomputed) and PNG plots (matplotlib, Agg backend).

Summary tables give, per method, the MEDIAN over device settings of each metric (a few devices with
near-zero latencies would dominate a mean of MAPE); measured and simulator-estimated devices are
summarised apart.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from perfcast.evaluation.harness import Evaluation

METRICS = ("mape_pct", "rmse", "acc_5pct", "acc_10pct", "spearman", "kendall", "coverage")
HEADERS = {"mape_pct": "MAPE %", "rmse": "RMSE", "acc_5pct": "±5%", "acc_10pct": "±10%", "spearman": "Spearman",
           "kendall": "Kendall", "coverage": "cover 90%"}
PROTOCOL_TITLES = {
    "a": "Protocol a: in-distribution (train and test split by distinct network)",
    "b": "Protocol b: new device from k samples (leave one device out)",
    "c": "Protocol c: leave one space out",
}
PREDICTION_FIELDS = ("protocol", "source", "device", "kind", "method", "setting", "target", "spec", "rank_key",
                     "macs", "y_true", "y_pred", "lo", "hi")


# --- numbers -------------------------------------------------------------------------------------
def _fmt(value, key: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key in ("acc_5pct", "acc_10pct", "coverage"):
        return f"{100 * value:.1f}%"
    if key == "mape_pct":
        return f"{value:.2f}"
    if key in ("spearman", "kendall"):
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _median(values: Iterable[float]) -> float:
    arr = np.array([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(np.median(arr)) if arr.size else float("nan")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _setting_of(record: dict) -> str:
    for key in ("train_size", "k", "space"):
        if key in record:
            return str(record[key])
    return ""


def _setting_name(protocol: str) -> str:
    return {"a": "train size", "b": "k", "c": "left-out space"}[protocol]


def _ordered(values: Iterable[str]) -> list[str]:
    def key(v: str):
        return (0, int(v), "") if v.isdigit() else (1, 0, v)

    return sorted(set(values), key=key)


# --- summary -----------------------------------------------------------------------------------
def summary_rows(records: list[dict], methods: Sequence[str]) -> list[list[str]]:
    """One row per method: device settings counted, then the median of each metric per setting
    value (train size, k or left-out space), for the records given (one protocol, target, kind)."""
    settings = _ordered(_setting_of(r) for r in records)
    rows = []
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        if not mine:
            continue
        row = [method, str(len({(r['source'], r['device']) for r in mine}))]
        for setting in settings:
            sel = [r for r in mine if _setting_of(r) == setting]
            row += [_fmt(_median(r.get(m) for r in sel), m) for m in ("mape_pct", "acc_10pct", "spearman",
                                                                          "kendall", "coverage")]
        rows.append(row)
    return rows


def summary_headers(records: list[dict], protocol: str) -> list[str]:
    headers = ["method", "devices"]
    for setting in _ordered(_setting_of(r) for r in records):
        label = f"{_setting_name(protocol)} {setting}"
        headers += [f"MAPE % ({label})", f"±10% ({label})", f"Spearman ({label})", f"Kendall ({label})",
                    f"cover 90% ({label})"]
    return headers


def coverage_table(records: list[dict]) -> str:
    """Per method (rows) and target and kind of device (columns), the share of every test label of
    the records (one protocol) inside its 90 % interval, pooled over device settings and setting
    values: each record weighs by its number of test labels."""
    columns = [(t, k) for t in _ordered(r["target"] for r in records) for k in ("measured", "estimated")
               if any(r["target"] == t and r["kind"] == k for r in records)]
    rows = []
    for method in _methods_in(records):
        row = [method]
        for target, kind in columns:
            sel = [r for r in records if r["method"] == method and r["target"] == target and r["kind"] == kind
                   and r.get("coverage") is not None and not math.isnan(r["coverage"])]
            n = sum(r["n"] for r in sel)
            row.append(f"{100 * sum(r['coverage'] * r['n'] for r in sel) / n:.1f}% of {n}" if n else "-")
        rows.append(row)
    return _table(["method"] + [f"{t}, {k}" for t, k in columns], rows)


def detail_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for r in sorted(records, key=lambda r: (r["source"], r["device"], r["target"], _setting_of(r), r["method"])):
        rows.append([r["source"], r["device"], r["kind"], r["target"], _setting_of(r), r["method"],
                     str(r["n_train"]), str(r["n"]), str(r["n_distinct"])] + [_fmt(r.get(m), m) for m in METRICS])
    return rows


def _methods_in(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in records))


def render_markdown(ev: Evaluation, command: str, date: str, data: str, settings: dict,
                    plots: Sequence[str] = ()) -> str:
    lines = ["# perfcast evaluation", "", f"Command: `{command}`", "", f"Date: {date}", "", f"Data: {data}", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), "",
             f"Wall time: {sum(ev.seconds.values()):.0f} s (" +
             ", ".join(f"protocol {p} {s:.0f} s" for p, s in sorted(ev.seconds.items())) +
             f"); graphs built: {ev.graphs_built}", "",
             "Summary tables give, per method, the median over device settings of each metric on the test "
             "networks; Spearman and Kendall rank distinct networks; 'cover 90%' is the share of test labels "
             "inside the 90% conformal interval. Protocol b averages over random draws of the k samples.", ""]
    for protocol in ("a", "b", "c"):
        recs = [r for r in ev.records if r["protocol"] == protocol]
        if not recs:
            continue
        lines += [f"## {PROTOCOL_TITLES[protocol]}", ""]
        for target in _ordered(r["target"] for r in recs):
            for kind in ("measured", "estimated"):
                sel = [r for r in recs if r["target"] == target and r["kind"] == kind]
                if not sel:
                    continue
                lines += [f"### {target}, {kind} devices", "",
                          _table(summary_headers(sel, protocol), summary_rows(sel, _methods_in(sel))), ""]
        lines += ["### Coverage of the 90% intervals, pooled over devices and settings", "",
                  coverage_table(recs), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Per-device details", ""]
    for protocol in ("a", "b", "c"):
        recs = [r for r in ev.records if r["protocol"] == protocol]
        if not recs:
            continue
        headers = ["source", "device", "kind", "target", _setting_name(protocol), "method", "n train", "n test",
                   "distinct"] + [HEADERS[m] for m in METRICS]
        lines += [f"### {PROTOCOL_TITLES[protocol]}", "", _table(headers, detail_rows(recs)), ""]
    if ev.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in ev.notes] + [""]
    return "\n".join(lines)


# --- files -------------------------------------------------------------------------------------
def _jsonable(value):
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def metrics_document(ev: Evaluation, command: str, date: str, data: str, settings: dict,
                     plots: Sequence[str] = ()) -> dict:
    return _jsonable({"command": command, "date": date, "data": data, "settings": settings,
                      "seconds": ev.seconds, "graphs_built": ev.graphs_built, "records": ev.records,
                      "notes": ev.notes, "plots": list(plots)})


def write_predictions(ev: Evaluation, path: Path) -> None:
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(PREDICTION_FIELDS)
        for p in ev.predictions:
            head = [p["protocol"], p["source"], p["device"], p["kind"], p["method"], p["setting"], p["target"]]
            for i, spec in enumerate(p["specs"]):
                w.writerow(head + [spec, p["rank_keys"][i]] +
                           [repr(float(p[k][i])) for k in ("macs", "y", "pred", "lo", "hi")])


def read_predictions(path: str | Path) -> dict[tuple[str, ...], dict[str, list]]:
    """predictions.csv.gz grouped by (protocol, source, device, method, setting, target)."""
    groups: dict[tuple[str, ...], dict[str, list]] = {}
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            key = tuple(row[k] for k in ("protocol", "source", "device", "method", "setting", "target"))
            g = groups.setdefault(key, {k: [] for k in ("rank_key", "macs", "y_true", "y_pred", "lo", "hi")})
            g["rank_key"].append(row["rank_key"])
            for k in ("macs", "y_true", "y_pred", "lo", "hi"):
                g[k].append(float(row[k]))
    return groups


# --- plots -------------------------------------------------------------------------------------
def best_method(ev: Evaluation, protocol: str, target: str = "latency_ms") -> str | None:
    """The method with the lowest median MAPE on measured devices at the largest training set."""
    recs = [r for r in ev.records if r["protocol"] == protocol and r["target"] == target]
    if protocol == "a":
        recs = [r for r in recs if r.get("train_size") == "all"]
    measured = [r for r in recs if r["kind"] == "measured"] or recs
    scores = {m: _median(r["mape_pct"] for r in measured if r["method"] == m) for m in _methods_in(measured)}
    scores = {m: v for m, v in scores.items() if not math.isnan(v)}
    return min(scores, key=scores.get) if scores else None


def _plot_groups(ev: Evaluation) -> dict[str, list[dict]]:
    """Prediction sets to plot, by file stem: the best method of protocol a (all training rows) and
    of protocol c, latency only."""
    out: dict[str, list[dict]] = {}
    for protocol in ("a", "c"):
        best = best_method(ev, protocol)
        if best is None:
            continue
        sel = [p for p in ev.predictions if p["protocol"] == protocol and p["method"] == best
               and p["target"] == "latency_ms" and (protocol != "a" or p["setting"] == "all")]
        if sel:
            out[f"{protocol}_{best}"] = sel
    return out


def _panels(sets: list[dict]) -> dict[str, list[dict]]:
    panels: dict[str, list[dict]] = {}
    for p in sets:
        panels.setdefault(f"{p['device']}" + (f" w/o {p['setting']}" if p["protocol"] == "c" else ""), []).append(p)
    return panels


def _grid(n: int):
    import matplotlib.pyplot as plt

    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _label(ax, name: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(name, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=6)


def _save(fig, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _scatter(sets: list[dict], title: str, path: Path) -> None:
    panels = _panels(sets)
    fig, axes = _grid(len(panels))
    for ax, (name, group) in zip(axes, panels.items()):
        y = np.concatenate([p["y"] for p in group])
        pred = np.concatenate([p["pred"] for p in group])
        ok = (y > 0) & (pred > 0)
        ax.loglog(y[ok], pred[ok], ".", ms=2, alpha=0.5)
        if ok.any():
            lo, hi = min(y[ok].min(), pred[ok].min()), max(y[ok].max(), pred[ok].max())
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        _label(ax, name, "measured ms", "predicted ms")
    _save(fig, title, path)


def _error_vs_macs(sets: list[dict], title: str, path: Path) -> None:
    panels = _panels(sets)
    fig, axes = _grid(len(panels))
    for ax, (name, group) in zip(axes, panels.items()):
        y = np.concatenate([p["y"] for p in group])
        pred = np.concatenate([p["pred"] for p in group])
        macs = np.concatenate([p["macs"] for p in group])
        ok = (y > 0) & (macs > 0)
        ax.semilogx(macs[ok], 100 * (pred[ok] - y[ok]) / y[ok], ".", ms=2, alpha=0.5)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylim(-100, 100)
        _label(ax, name, "MACs", "error %")
    _save(fig, title, path)


def write_plots(ev: Evaluation, out: Path) -> list[str]:
    """Write predicted-vs-measured and error-vs-MACs plots of the best methods into ``out``;
    returns their file names (none, with a note, when matplotlib is not installed)."""
    try:
        import matplotlib
    except ImportError:
        ev.notes.append("plots skipped: matplotlib is not installed (pip install matplotlib)")
        return []

    matplotlib.use("Agg")
    written = []
    for stem, sets in _plot_groups(ev).items():
        protocol, _, method = stem.partition("_")
        title = f"protocol {protocol}, {method}: latency, test networks"
        _scatter(sets, f"{title}, predicted vs measured", out / f"{stem}_scatter.png")
        _error_vs_macs(sets, f"{title}, relative error vs MACs", out / f"{stem}_error_vs_macs.png")
        written += [f"{stem}_scatter.png", f"{stem}_error_vs_macs.png"]
    return written


def render_metrics(path: str | Path) -> str:
    """report.md rendered again from a metrics.json that :func:`write_report` wrote."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    records = [{k: (math.nan if v is None else v) for k, v in r.items()} for r in doc["records"]]
    ev = Evaluation(records=records, notes=list(doc["notes"]), seconds=dict(doc["seconds"]),
                    graphs_built=int(doc["graphs_built"]))
    return render_markdown(ev, doc["command"], doc["date"], doc["data"], doc["settings"], doc["plots"])


def write_report(ev: Evaluation, out_dir: str | Path, command: str, date: str, data: str, settings: dict) -> Path:
    """Write report.md, metrics.json, predictions.csv.gz and the plots into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(ev, out)
    write_predictions(ev, out / "predictions.csv.gz")
    (out / "metrics.json").write_text(
        json.dumps(metrics_document(ev, command, date, data, settings, plots), indent=1, allow_nan=False) + "\n",
        encoding="utf-8")
    (out / "report.md").write_text(render_markdown(ev, command, date, data, settings, plots), encoding="utf-8")
    return out
