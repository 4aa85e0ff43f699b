"""Train the devices that ship with perfcast: ``perfcast/devices/shipped/*.json``.

One device per measured device setting at batch size 1:

- ``ort-cpu-1t@amd-epyc``: this project's own measurements (``data/local-ort-cpu``: onnxruntime
  CPU, one thread), every network of every space, latency (drift-corrected median) and peak memory;
  a network measured twice gets the median of its measurements;
- the measured devices of the shared public data (``../shared/data`` or ``$PERFCAST_SHARED_DATA``):
  HW-NAS-Bench's Jetson TX2 (``hwnasbench:edgegpu``, latency and energy), Raspberry Pi 4, Pixel 3
  and Edge TPU, and HELP's GPUs, CPUs and phones (``help:<device>``, over every space that device
  was measured on: NAS-Bench-201, FBNet, OFA). Simulator estimates (eyeriss, fpga) and HELP's
  per-layer lookup sums (help:pixel3, help:raspi4) are not devices and are skipped.

From each shared file the same ``--rows`` networks per dataset are drawn with a fixed seed
(NAS-Bench-201: distinct networks, the same arch strings on every dataset and in both files).
The local device's predictor is ``mix`` (:data:`MIX_PARAMS`: gbt where a network is like the
training networks, a geometric mix of gbt with the kernel-level, operation-wise and PALEO models
where it is not; the kernel profiles of ``kernels.csv.gz`` go to its members), since its networks
span many spaces and its users bring networks of others; every other device gets ``gbt``
(:data:`GBT_PARAMS`). Trees are compacted: their training rows, which only ``update`` needs, are
not shipped (a shipped device is refined through ``perfcast adapt``, which transfers from it).
Deterministic: the same data and code give the same files. Graphs are built
once and dropped as soon as no remaining device needs them.

    .venv/bin/python scripts/train_shipped.py [--rows 500] [--out perfcast/devices/shipped] [--only NAME]
                                              [--timings FILE.json]

``--timings`` writes each device's rows, targets, file size and training time (graph features and
tree fitting, one core; building the graphs from their specs is timed apart) as JSON, which
``scripts/assemble_results.py`` puts into docs/results.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfcast.api import load  # noqa: E402
from perfcast.datasets import shared  # noqa: E402
from perfcast.devices import SHIPPED_DIR, Device, save_device, shipped_file_name  # noqa: E402
from perfcast.predictors import get_predictor  # noqa: E402
from perfcast.predictors.profiles import KERNEL_FILE, read_kernels  # noqa: E402
from perfcast.spaces import nb201  # noqa: E402

LOCAL_DIR = ROOT / "data" / "local-ort-cpu"
LOCAL_DEVICE = "ort-cpu-1t@amd-epyc"
SEED = 0
# half of gbt's default trees at twice its learning rate: the same accuracy in half the file
GBT_PARAMS = {"n_estimators": 150, "learning_rate": 0.1}
MIX_PARAMS = {"member_params": {"gbt": {**GBT_PARAMS, "prior": "linear"}}}
# what GradientBoostedTrees keeps only for update() (refitting on old plus new rows), not for predict()
UPDATE_ONLY_KEYS = ("train_rows", "train_y")


@dataclass
class Labels:
    """The measurements of one device: spec -> value per target, and where they came from."""

    name: str
    description: str
    sources: list[str] = field(default_factory=list)
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # spec -> {target: value}
    method: str = "gbt"
    params: dict = field(default_factory=lambda: dict(GBT_PARAMS))
    profiles: dict[str, list[dict]] = field(default_factory=dict)  # spec -> kernel rows of one measurement

    def add(self, spec: str, target: str, value: float) -> None:
        self.values.setdefault(spec, {})[target] = value


# --- reading the data ----------------------------------------------------------------------------
def local_labels(folder: Path) -> Labels:
    with gzip.open(folder / "measurements.csv.gz", "rt", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok" and r["batch_size"] == "1"]
    per_spec: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        cells = per_spec.setdefault(r["model"], {"latency_ms": [], "memory_bytes": []})
        cells["latency_ms"].append(float(r["latency_ms_median"]))
        if r["peak_memory_bytes"]:
            cells["memory_bytes"].append(float(r["peak_memory_bytes"]))
    labels = Labels(LOCAL_DEVICE, "onnxruntime 1.31.1 CPU, 1 intra-op thread, AMD EPYC (this project's measurements)",
                    [str(folder.relative_to(ROOT))], method="mix", params=MIX_PARAMS)
    kernels = read_kernels(folder / KERNEL_FILE)
    for r in rows:  # the first profiled measurement of each network
        if r["model"] not in labels.profiles and kernels.get(r["measurement"]):
            labels.profiles[r["model"]] = kernels[r["measurement"]]
    for spec, cells in per_spec.items():
        for target, values in cells.items():
            if values:
                labels.add(spec, target, statistics.median(values))
    return labels


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _nb201_arch_choice(rows: list[dict[str, str]], count: int) -> set[str]:
    """``count`` arch strings of distinct networks, drawn with :data:`SEED`."""
    strings = sorted({r["arch_str"] for r in rows})
    chosen, keys = [], set()
    for i in np.random.default_rng(SEED).permutation(len(strings)):
        key = nb201.distinct_key(strings[i])
        if key not in keys:
            keys.add(key)
            chosen.append(strings[i])
        if len(chosen) == count:
            break
    return set(chosen)


def _sampled_rows(source: shared.Source, rows: list[dict[str, str]], count: int, archs: set[str]) -> list[dict]:
    if source.space is nb201:
        return [r for r in rows if r["arch_str"] in archs]
    order = np.random.default_rng(SEED).permutation(len(rows))[:count]
    return [rows[i] for i in sorted(order)]


def shared_labels(folder: Path, count: int) -> list[Labels]:
    tables = {name: _read(folder / s.file) for name, s in shared.SOURCES.items()}
    archs = _nb201_arch_choice(tables["hwnasbench_nb201"][1], count)
    devices: dict[str, Labels] = {}
    for name, source in shared.SOURCES.items():
        columns, rows = tables[name]
        for t in shared.targets(source, columns):
            info = shared.DEVICES[t.device]
            if t.batch_size != 1 or info.get("kind") == "estimated":
                continue
            labels = devices.setdefault(t.device, Labels(
                t.device, f"{info['hardware']} ({info['runtime']}), batch 1, public measurements"))
            labels.sources.append(f"{source.file}:{t.latency}" + (f",{t.energy}" if t.energy else ""))
            for row in _sampled_rows(source, rows, count, archs):
                spec = source.space.spec_for_row(source.file, row)
                for target, column in (("latency_ms", t.latency), ("energy_mj", t.energy)):
                    if column and row.get(column, "") != "":
                        labels.add(spec, target, float(row[column]))
    return [devices[k] for k in sorted(devices)]


# --- training ------------------------------------------------------------------------------------
def train_device(labels: Labels, graphs: dict, out_dir: Path) -> tuple[Path, int]:
    specs = sorted(labels.values)
    targets = sorted({t for v in labels.values.values() for t in v})
    y = {t: np.array([labels.values[s].get(t, np.nan) for s in specs]) for t in targets}
    batch = [graphs[s] for s in specs]
    profiles = [labels.profiles.get(s) for s in specs] if labels.profiles else None
    predictor = get_predictor(labels.method, **labels.params).fit(batch, y, kernel_profiles=profiles)
    for model in predictor.models_.values():
        for key in list(model):
            if key.rsplit(":", 1)[-1] in UPDATE_ONLY_KEYS:
                model.pop(key)
    made = {"method": predictor.name, "params": labels.params, "rows": len(specs), "source": labels.sources,
            "labelled": {t: int((~np.isnan(v)).sum()) for t, v in y.items()},
            "script": "scripts/train_shipped.py", "seed": SEED}
    device = Device(labels.name, {predictor.name: predictor}, predictor.name, labels.description, made)
    path = save_device(device, out_dir / shipped_file_name(labels.name))
    return path, len(specs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500, help="networks drawn per shared file and dataset (default 500)")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="where the device files go")
    parser.add_argument("--shared", type=Path, default=None, help="the shared data folder (default: shared/data)")
    parser.add_argument("--only", action="append", help="train only this device (repeatable)")
    parser.add_argument("--timings", type=Path, default=None, help="write per-device training times (JSON) here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    todo = [local_labels(LOCAL_DIR), *shared_labels(shared.shared_folder(args.shared), args.rows)]
    if args.only:
        todo = [d for d in todo if d.name in args.only]
    graphs: dict = {}
    total = 0
    timings = []
    for k, labels in enumerate(todo):
        needed = {s for d in todo[k:] for s in d.values}
        for spec in [s for s in graphs if s not in needed]:
            del graphs[spec]
        built = time.perf_counter()
        for spec in sorted(labels.values):
            if spec not in graphs:
                graphs[spec] = load(spec)
        fit_start = time.perf_counter()
        path, rows = train_device(labels, graphs, args.out)
        fit_s = time.perf_counter() - fit_start
        size = path.stat().st_size
        total += size
        targets = sorted({t for v in labels.values.values() for t in v})
        timings.append({"device": labels.name, "method": labels.method, "params": labels.params,
                        "file": path.name, "rows": rows, "targets": targets,
                        "kib": round(size / 1024), "build_s": round(fit_start - built, 1), "train_s": round(fit_s, 1)})
        print(f"{labels.name:28s} {rows:5d} rows  {', '.join(targets):24s} {size / 1024:7.0f} KiB  "
              f"{path.name}  (graphs {fit_start - built:.1f} s, training {fit_s:.1f} s)", flush=True)
    print(f"{len(todo)} devices, {total / 2**20:.2f} MiB in {args.out}, {time.perf_counter() - start:.0f} s")
    if args.timings:
        args.timings.write_text(json.dumps({"command": "scripts/train_shipped.py " + " ".join(argv or sys.argv[1:]),
                                            "devices": timings}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
