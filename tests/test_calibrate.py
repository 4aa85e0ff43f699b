"""``perfcast calibrate``: the built-in calibration set, a real (short) calibration with
onnxruntime into a SQLite store, the device file it writes used by ``perfcast predict``, and
the bad inputs that exit 2 before anything is measured."""

import io
import json
from pathlib import Path

import numpy as np
import pytest

from perfcast import api
from perfcast.calibration import (
    CALIBRATION_SET,
    CHUNK,
    DEFAULT_COUNT,
    _ChunkedBar,
    calibration_specs,
    check_writable,
    over_budget,
)
from perfcast.cli.main import main
from perfcast.devices import DEFAULT_DEVICE, load_device, shipped_devices
from perfcast.errors import UsageError
from perfcast.profiling.runners import make_runner
from perfcast.progress import Progress
from perfcast.spaces.registry import spaces
from perfcast.store import open_store

FAST = ["--count", "4", "--time-budget", "0.05", "--workers", "2", "--no-progress"]


# --- the calibration set ---------------------------------------------------------------------------
def test_calibration_set_spans_every_space_and_the_size_range():
    assert DEFAULT_COUNT == len(CALIBRATION_SET) == 36 == len(set(CALIBRATION_SET))
    assert {spec.partition(":")[0] for spec in CALIBRATION_SET} == set(spaces())
    macs = [api.analyze(spec)["macs"] for spec in CALIBRATION_SET]
    assert min(macs) == api.analyze("kws:35")["macs"] < 2_000_000
    assert max(macs) == api.analyze("imgcls:6")["macs"] and 1.0e9 < max(macs) < 1.1e9
    op_types = set()
    for spec in CALIBRATION_SET:
        op_types |= set(api.analyze(spec)["op_counts"])
    assert {"Conv", "MatMul", "LSTM", "GRU", "AveragePool", "MaxPool", "GlobalAveragePool",
            "LayerNormalization", "Sigmoid", "HardSwish", "Mul", "DepthToSpace"} <= op_types
    # the first four (the tests' --count 4) are a CNN, an LSTM, a transformer and a keyword spotter
    assert calibration_specs(4) == ["imgcls:0", "rnn:10", "bert:20", "kws:35"]


@pytest.mark.parametrize("count", [2, 37, 0, True, 4.0])
def test_count_outside_the_set_is_refused(count):
    with pytest.raises(UsageError, match="--count"):
        calibration_specs(count)


def test_budget_stops_before_a_chunk_that_would_overrun():
    assert not over_budget(500.0, 0, CHUNK, 1.0)  # the first chunk always runs
    assert not over_budget(100.0, 12, 12, None)
    assert not over_budget(100.0, 12, 12, 200 / 60)  # 100 s + 100 s = the budget exactly
    assert over_budget(100.0, 12, 12, 199 / 60)
    assert over_budget(100.0, 24, 12, 149 / 60) and not over_budget(100.0, 24, 12, 150 / 60)


def test_chunked_bar_counts_steps_of_growing_runs():
    stream = io.StringIO()
    bar = _ChunkedBar(Progress(12, "calibrate", enabled=True, stream=stream), 3, 4)
    bar.start(2)
    for done in range(1, 8):  # one extra worker pass added a step: 7 of 6 planned
        bar.step(done, 7, f"step {done}")
    bar.finish()
    assert (bar.bar.done, bar.bar.total) == (7, 13)
    bar.start(2)
    for done in range(1, 6):  # one network failed: 5 of 6 planned
        bar.step(done, 5, f"step {done}")
    bar.finish()
    assert (bar.bar.done, bar.bar.total) == (12, 12)
    assert stream.getvalue().rstrip().endswith("step 5")


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "dev.json") == tmp_path / "dev.json"
    assert check_writable(tmp_path / "new" / "deeper" / "dev.json") == tmp_path / "new" / "deeper" / "dev.json"
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        check_writable(tmp_path / "file.txt" / "dev.json")
    with pytest.raises(UsageError, match="is a folder"):
        check_writable(tmp_path)


# --- a real calibration -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    import os
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("calibrate")
    db = folder / "store.db"
    out = folder / "devices" / "here.json"
    perfcast = str(Path(sys.executable).parent / "perfcast")
    env = {k: v for k, v in os.environ.items() if k != "PERFCAST_DEBUG"}
    p = subprocess.run([perfcast, "calibrate", "--runtime", "ort-cpu", "--out", str(out), "--db", f"sqlite:///{db}",
                        "--json", *FAST], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    return folder, db, out, json.loads(p.stdout)


def test_summary_reports_the_measurements_and_the_adapted_fit(calibrated):
    _, _, out, summary = calibrated
    c = summary["calibration"]
    assert (c["networks"], c["measured"], c["failed"], c["skipped_by_budget"]) == (4, 4, [], [])
    assert c["runtime"] == "ort-cpu" and c["threads"] == 1
    assert c["measured_device"] == make_runner("ort-cpu", 1).device_name()
    assert 0 < c["profiling_s"] < 120
    assert summary["device"] == "here" and summary["out"] == str(out)
    assert summary["method"] == "transfer" and summary["rows"] == 4
    assert summary["targets"] == ["latency_ms", "memory_bytes"]
    # by default the map reads the shipped CPU device alone (and, from 5 rows, models fitted on the rows)
    chosen = {b["device"] for b in summary["bases"]["latency_ms"]}
    assert DEFAULT_DEVICE in chosen and not chosen & ({d.name for d in shipped_devices()} - {DEFAULT_DEVICE})
    for target in ("latency_ms", "memory_bytes"):
        e = summary["errors"][target]
        assert e["rows"] == 4
        assert 0 <= e["in_sample_median_pct"] and 0 <= e["held_out_median_pct"] <= e["held_out_p90_pct"]


def test_device_file_predicts_a_generated_onnx_file(calibrated, run_cli):
    folder, _, out, summary = calibrated
    device = load_device(out)
    assert device.name == "here" and device.default_predictor == "transfer"
    assert device.made["calibration"]["measured"] == 4
    assert device.made["errors"] == summary["errors"]
    code, _, err = run_cli("generate", "--space", "kws", "--count", "1", "--seed", "5", "--out", str(folder / "gen"))
    assert code == 0, err
    onnx_file = next((folder / "gen").glob("*.onnx"))
    code, stdout, err = run_cli("predict", str(onnx_file), "--device", str(out), "--json")
    assert code == 0, err
    row = json.loads(stdout)
    assert row["device"] == "here" and row["predictor"] == "transfer"
    lo, hi = row["latency_ms_interval"]
    assert 0 <= lo <= row["latency_ms"] <= hi and row["latency_ms"] > 0
    assert row["memory_bytes"] > 0 and row["energy_mj"] is None
    again = api.predict([onnx_file], device=out)[0]
    assert again["latency_ms"] == pytest.approx(row["latency_ms"], rel=1e-12)


def test_measurements_are_in_the_store_and_match_the_reported_fit(calibrated):
    _, db, out, summary = calibrated
    with open_store(f"sqlite:///{db}") as store:
        rows = {r["model"]: r for r in store.measurement_rows(status=None)}
    specs = list(CALIBRATION_SET[:4])
    assert sorted(rows) == sorted(specs)
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert {r["device"] for r in rows.values()} == {summary["calibration"]["measured_device"]}
    assert all(r["peak_memory_bytes"] > 0 and r["batch_size"] == 1 for r in rows.values())
    # every label is in the drift baselines the device file records
    c = summary["calibration"]
    assert c["reference_baseline_ms"] > 0 and c["memory_reference_baseline_ms"] > 0
    assert all(r["latency_ms_median"] == pytest.approx(r["reference_ratio"] * c["reference_baseline_ms"], rel=1e-9)
               for r in rows.values())
    # the in-sample errors of the summary are the device's errors on exactly these measurements
    predicted = api.predict(specs, device=out)
    for target, column in (("latency_ms", "latency_ms_median"), ("memory_bytes", "peak_memory_bytes")):
        y = np.array([rows[s][column] for s in specs], float)
        ape = np.abs(np.array([r[target] for r in predicted], float) - y) / y
        # predicted memory is rounded to whole bytes: each error may move by 100 / y percent
        tolerance = 1e-9 if target == "latency_ms" else 100.0 / y.min()
        assert summary["errors"][target]["in_sample_median_pct"] == pytest.approx(100 * np.median(ape), abs=tolerance)
        assert summary["errors"][target]["in_sample_mape_pct"] == pytest.approx(100 * np.mean(ape), abs=tolerance)


# --- bad input --------------------------------------------------------------------------------------
def _cuda_available() -> bool:
    try:
        make_runner("ort-cuda", 1).check_available()
    except UsageError:
        return False
    return True


def test_bad_input_exits_2_with_one_line_before_measuring(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    db = tmp_path / "store.db"
    out = str(tmp_path / "dev.json")
    cases = [
        (["--runtime", "nope", "--out", out], "--runtime nope"),
        (["--runtime", "torch-cuda", "--out", out], "--runtime torch-cuda"),
        (["--out", str(tmp_path / "file.txt" / "dev.json")], "--out"),
        (["--out", str(tmp_path)], "is a folder"),
        (["--out", out, "--count", "2"], "--count"),
        (["--out", out, "--count", "99"], "--count"),
        (["--out", out, "--budget-minutes", "0"], "--budget-minutes"),
        (["--out", out, "--threads", "0"], "--threads"),
        (["--out", out, "--base", "no-such-device"], "no-such-device"),
    ]
    if not _cuda_available():
        cases.append((["--runtime", "ort-cuda", "--out", out], "--runtime ort-cuda"))
    for args, named in cases:
        code = main(["calibrate", *args, "--db", f"sqlite:///{db}", "--no-progress"])
        stdout, err = capsys.readouterr()
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert named in err, (named, err)
        assert stdout == ""
    assert not Path(out).exists() and not db.exists()
