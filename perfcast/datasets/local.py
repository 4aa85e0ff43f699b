"""A measured dataset as compact files, and back into a store.

A dataset folder holds ``measurements.csv.gz`` (one row per measurement: the network's
spec, content hash, MACs, params, latency statistics in ms, peak memory in bytes, energy
in mJ), ``kernels.csv.gz`` (per-kernel profiles, joined by ``measurement``) and
``devices.json`` (what each device is). Networks are named by spec strings, so a load
rebuilds their graphs; no model files are needed.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

from perfcast.errors import UsageError

MEASUREMENT_FIELDS = [
    "measurement", "model", "content_hash", "macs", "flops", "params", "nodes", "device", "runtime", "batch_size",
    "status", "error_kind", "error_message", "latency_ms_median", "latency_ms_mean", "latency_ms_min",
    "latency_ms_p10", "latency_ms_p90", "latency_ms_raw_median", "latency_clock", "repeat_cv", "workers",
    "reference_ratio", "reference_baseline_ms", "peak_memory_bytes", "energy_mj", "measured_at",
]
LATENCY_STATS = ("latency_ms_median", "latency_ms_mean", "latency_ms_min", "latency_ms_p10", "latency_ms_p90")
KERNEL_FIELDS = ["measurement", "seq", "kernel_name", "op_type", "provider", "node_names", "duration_us", "sample_count"]
_FLOATS = {*LATENCY_STATS, "latency_ms_raw_median", "repeat_cv", "reference_ratio", "reference_baseline_ms", "energy_mj"}
_INTS = {"macs", "flops", "params", "nodes", "batch_size", "peak_memory_bytes", "workers"}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def export_dataset(store, out_dir: str | Path, device: str | None = None) -> dict[str, int]:
    """Write the store's profiler measurements (of ``device``, or all) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in store.measurement_rows(status=None, device=device, source="profiler", with_samples=True)]
    n_kernels = 0
    with gzip.open(out / "measurements.csv.gz", "wt", newline="") as fm, \
            gzip.open(out / "kernels.csv.gz", "wt", newline="") as fk:
        wm = csv.DictWriter(fm, MEASUREMENT_FIELDS)
        wk = csv.DictWriter(fk, KERNEL_FIELDS)
        wm.writeheader()
        wk.writeheader()
        for r in rows:
            env = r.get("environment") or {}
            record = {k: r.get(k) for k in MEASUREMENT_FIELDS}
            record.update(
                measurement=r["id"], latency_clock=env.get("latency_clock"), workers=env.get("workers"),
                latency_ms_raw_median=env.get("latency_ms_raw_median"), measured_at=str(r["created_at"])[:19],
                reference_baseline_ms=env.get("reference_baseline_ms"),
                error_message=(r["error_message"] or "")[:300] or None,
            )
            wm.writerow({k: _cell(v) for k, v in record.items()})
            for k in store.kernel_profile_rows(r["id"]):
                wk.writerow({"measurement": r["id"], **{f: _cell(k[f]) for f in KERNEL_FIELDS if f not in ("measurement", "node_names")},
                             "node_names": json.dumps(k["node_names"], separators=(",", ":"))})
                n_kernels += 1
    devices = [d for d in store.device_rows() if device is None or d["name"] == device]
    (out / "devices.json").write_text(json.dumps(
        [{k: (str(v) if k == "created_at" else v) for k, v in d.items() if k != "id"} for d in devices], indent=1))
    return {"measurements": len(rows), "kernels": n_kernels, "devices": len(devices)}


def _parse(row: dict, source: str) -> dict:
    out: dict = {}
    for k, v in row.items():
        if v == "" or v is None:
            out[k] = None
        elif k in _FLOATS:
            x = float(v)
            if not math.isfinite(x):
                raise UsageError(source, f"measurement {row.get('measurement')}: {k}={v!r} is not finite")
            out[k] = x
        elif k in _INTS:
            out[k] = int(float(v))
        else:
            out[k] = v
    return out


def load_dataset(store, folder: str | Path, name: str | None = None) -> dict[str, int]:
    """Add a dataset folder to the store; measurements already imported from it are skipped."""
    from perfcast import api

    src = Path(folder)
    if not (src / "measurements.csv.gz").is_file():
        raise UsageError(str(folder), "not a dataset folder (no measurements.csv.gz)")
    source = f"import:{name or src.name}"
    devices = {}
    if (src / "devices.json").is_file():
        for d in json.loads((src / "devices.json").read_text()):
            devices[d["name"]] = store.upsert_device(
                d["name"], runtime=d["runtime"], runtime_version=d.get("runtime_version"),
                hardware=d.get("hardware"), threads=d.get("threads"), kind=d.get("kind", "measured"),
                extra=d.get("extra"))
    with gzip.open(src / "measurements.csv.gz", "rt", newline="") as f:
        rows = [_parse(r, str(src)) for r in csv.DictReader(f)]
    kernels: dict[str, list[dict]] = {}
    if (src / "kernels.csv.gz").is_file():
        with gzip.open(src / "kernels.csv.gz", "rt", newline="") as f:
            for k in csv.DictReader(f):
                kernels.setdefault(k["measurement"], []).append({
                    "seq": int(k["seq"]), "kernel_name": k["kernel_name"], "op_type": k["op_type"],
                    "provider": k["provider"] or None, "node_names": json.loads(k["node_names"]),
                    "duration_us": float(k["duration_us"]), "sample_count": int(k["sample_count"]),
                })
    done = {(r["content_hash"], r["device"]) for r in store.measurement_rows(status=None, source=source)}
    added = skipped = 0
    for r in rows:
        if (r["content_hash"], r["device"]) in done:
            skipped += 1
            continue
        graph = api.load(r["model"], batch_size=r["batch_size"])
        if graph.content_hash != r["content_hash"]:
            raise UsageError(str(src), f"{r['model']} builds a network with another content hash than measured")
        network_id = store.add_network(graph, r["model"])
        device_id = devices.get(r["device"]) or store.upsert_device(r["device"], runtime=r["runtime"])
        latency = {k[len("latency_ms_"):]: r[k] for k in LATENCY_STATS if r[k] is not None}
        mid = store.add_measurement(
            network_id, device_id, batch_size=r["batch_size"], status=r["status"],
            latency_ms=latency or None, repeat_cv=r["repeat_cv"], reference_ratio=r["reference_ratio"],
            peak_memory_bytes=r["peak_memory_bytes"], energy_mj=r["energy_mj"], error_kind=r["error_kind"],
            error_message=r["error_message"], source=source,
            environment={"latency_clock": r["latency_clock"], "workers": r["workers"],
                         "latency_ms_raw_median": r["latency_ms_raw_median"], "measured_at": r["measured_at"],
                         "reference_baseline_ms": r.get("reference_baseline_ms")},
        )
        if str(r["measurement"]) in kernels:
            store.add_kernel_profiles(mid, kernels[str(r["measurement"])])
        added += 1
    return {"added": added, "skipped": skipped}


def rebase_rows(rows: list[dict]) -> int:
    """Put the drift-corrected latencies of ``rows`` (parsed measurement rows, oldest first) in one
    reference's milliseconds: that of each device's first row with a reference ratio; returns how
    many rows changed.

    A corrected latency is ``reference_ratio * A`` with ``A`` the drift baseline it was corrected
    to (:mod:`perfcast.profiling.stats`). Measured in chunks whose ``A`` each was the median of the
    chunk's own reference samples, the labels keep the host's speed of the moment. Every corrected
    sample is ``s * A / r_b``, so multiplying every latency statistic by ``A_first / A`` gives the
    samples corrected to ``A_first``, exactly when ``A`` is that of the compute reference alone.
    Rows without a recorded ``reference_baseline_ms`` have ``A = latency_ms_median / reference_ratio``.
    """
    first: dict[str, float] = {}
    changed = 0
    for r in rows:
        if not (r.get("reference_ratio") and r.get("latency_ms_median")):
            continue
        own = r.get("reference_baseline_ms") or r["latency_ms_median"] / r["reference_ratio"]
        target = first.setdefault(r["device"], own)
        if own != target:
            for k in LATENCY_STATS:
                if r.get(k) is not None:
                    r[k] *= target / own
            changed += 1
        r["reference_baseline_ms"] = target
    return changed


def rebase_dataset(folder: str | Path) -> int:
    """:func:`rebase_rows` on a dataset folder's ``measurements.csv.gz``, rewritten in place (through a
    temporary file, so an interrupted run leaves the old file); returns how many rows changed."""
    path = Path(folder) / "measurements.csv.gz"
    if not path.is_file():
        raise UsageError(str(folder), "not a dataset folder (no measurements.csv.gz)")
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [_parse(r, str(folder)) for r in reader]
    missing = [k for k in ("device", "reference_ratio", *LATENCY_STATS) if k not in fields]
    if missing:
        raise UsageError(str(path), f"has no column {missing[0]}")
    rows.sort(key=lambda r: int(r["measurement"]))
    changed = rebase_rows(rows)
    if "reference_baseline_ms" not in fields:
        fields.insert(fields.index("reference_ratio") + 1, "reference_baseline_ms")
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in fields})
    tmp.replace(path)
    return changed
