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
    "reference_ratio", "peak_memory_bytes", "energy_mj", "measured_at",
]
KERNEL_FIELDS = ["measurement", "seq", "kernel_name", "op_type", "provider", "node_names", "duration_us", "sample_count"]
_FLOATS = {"latency_ms_median", "latency_ms_mean", "latency_ms_min", "latency_ms_p10", "latency_ms_p90",
           "latency_ms_raw_median", "repeat_cv", "reference_ratio", "energy_mj"}
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
        latency = {k[len("latency_ms_"):]: r[k] for k in ("latency_ms_median", "latency_ms_mean", "latency_ms_min",
                                                          "latency_ms_p10", "latency_ms_p90") if r[k] is not None}
        mid = store.add_measurement(
            network_id, device_id, batch_size=r["batch_size"], status=r["status"],
            latency_ms=latency or None, repeat_cv=r["repeat_cv"], reference_ratio=r["reference_ratio"],
            peak_memory_bytes=r["peak_memory_bytes"], energy_mj=r["energy_mj"], error_kind=r["error_kind"],
            error_message=r["error_message"], source=source,
            environment={"latency_clock": r["latency_clock"], "workers": r["workers"],
                         "latency_ms_raw_median": r["latency_ms_raw_median"], "measured_at": r["measured_at"]},
        )
        if str(r["measurement"]) in kernels:
            store.add_kernel_profiles(mid, kernels[str(r["measurement"])])
        added += 1
    return {"added": added, "skipped": skipped}
