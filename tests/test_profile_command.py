"""``perfcast profile`` end to end: real onnxruntime runs, a real SQLite store, resume
after a kill, failures kept with their error."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perfcast.store import open_store

PERFCAST = str(Path(sys.executable).parent / "perfcast")
FAST = ["--workers", "2", "--time-budget", "0.05", "--no-memory", "--max-cv", "1.0", "--no-progress"]


def impossible_reshape(path: Path) -> Path:
    """Loads fine, fails at run time: 12 elements cannot become 5 x 5."""
    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array([5, 5], np.int64), "shape")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return path


def test_profile_stores_measurements_and_skips_them_next_time(tmp_path, run_cli):
    db = str(tmp_path / "m.db")
    code, out, err = run_cli("profile", "kws:1", "rnn:0", "--db", db, "--json", *FAST)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["model"] for r in rows] == ["kws:1", "rnn:0"]
    for r in rows:
        assert r["status"] == "ok" and r["runtime"] == "ort-cpu" and r["threads"] == 1
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p10"] <= lat["median"] <= lat["p90"]
        assert r["energy_mj"] is None  # no energy counter on this machine: never invented
    with open_store(db) as store:
        assert store.count_networks() == 2 and store.count_measurements() == 2
    code, out, err = run_cli("profile", "kws:1", "rnn:0", "--db", db, *FAST)
    assert code == 0, err
    assert "skipped (already measured) 2" in out
    with open_store(db) as store:
        assert store.count_measurements() == 2


def test_every_chunk_and_later_run_divides_by_the_device_s_first_baseline(tmp_path, run_cli):
    """Chunks of one run, and a later run into the same store, keep the drift baselines of the
    device's first measurement: every label is in the same reference milliseconds."""
    db = str(tmp_path / "m.db")
    code, _, err = run_cli("profile", "kws:1", "rnn:0", "--db", db, "--chunk", "1", *FAST)
    assert code == 0, err
    code, _, err = run_cli("profile", "kws:2", "--db", db, *FAST)
    assert code == 0, err
    with open_store(db) as store:
        rows = store.measurement_rows(with_samples=True)
        first = store.reference_baselines(store.device_rows()[0]["id"])
    assert len(rows) == 3 and first[0] > 0 and first[1] > 0
    for r in rows:
        env = r["environment"]
        assert (env["reference_baseline_ms"], env["memory_reference_baseline_ms"]) == first
        assert r["latency_ms_median"] == pytest.approx(r["reference_ratio"] * first[0], rel=1e-9)
    code, _, err = run_cli("profile", "kws:3", "--db", db, "--reference-baseline-ms", "0.25", *FAST)
    assert code == 0, err
    with open_store(db) as store:
        last = store.measurement_rows(with_samples=True)[-1]
    assert last["environment"]["reference_baseline_ms"] == 0.25
    assert last["latency_ms_median"] == pytest.approx(last["reference_ratio"] * 0.25, rel=1e-9)
    code, _, err = run_cli("profile", "kws:4", "--db", db, "--reference-baseline-ms", "-1", *FAST)
    assert code == 2 and "--reference-baseline-ms" in err and len(err.strip().splitlines()) == 1
    with open_store(db) as store:
        assert store.count_networks() == 4 and store.count_measurements() == 4


def test_failing_network_does_not_stop_the_batch(tmp_path, run_cli):
    db = str(tmp_path / "m.db")
    bad = impossible_reshape(tmp_path / "bad.onnx")
    code, out, err = run_cli("profile", "kws:2", str(bad), "--db", db, "--json", *FAST)
    assert code == 0, err
    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["kws:2"]["status"] == "ok"
    assert rows[str(bad)]["status"] == "failed" and rows[str(bad)]["error"].startswith("run")
    with open_store(db) as store:
        failed = store.measurement_rows(status="failed")
        assert len(failed) == 1 and failed[0]["error_kind"] == "run"
        assert store.count_measurements() == 2


def test_bad_input_exits_2_with_one_line(tmp_path, run_cli):
    db = str(tmp_path / "x.db")
    rejected = tmp_path / "future.onnx"
    m = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 99  # onnxruntime refuses IR versions it does not know
    m.graph.node.add().CopyFrom(helper.make_node("Relu", ["x"], ["y"]))
    m.graph.input.add().CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]))
    m.graph.output.add().CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]))
    rejected.write_bytes(m.SerializeToString())
    cases = [
        (["kws:1", "--runtime", "nope", "--db", db], "--runtime nope"),
        (["kws:1", "--db", "nosuchdialect://x"], "nosuchdialect://x"),
        (["--db", db], "no models"),
        ([str(rejected), "--db", db], str(rejected)),
    ]
    for args, named in cases:
        code, out, err = run_cli("profile", *args, *FAST)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert named in err
    with open_store(db) as store:  # the refused model is kept as a failed measurement
        assert [r["error_kind"] for r in store.measurement_rows(status="failed")] == ["load"]


def test_killed_profiler_loses_nothing_committed_and_resumes(tmp_path):
    db = str(tmp_path / "m.db")
    models = [f"kws:{i}" for i in range(6)]
    proc = subprocess.Popen([PERFCAST, "profile", *models, "--db", db, "--chunk", "1", *FAST],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if os.path.exists(db):
            try:
                with sqlite3.connect(db, timeout=1) as con:
                    committed = con.execute("select count(*) from measurements").fetchone()[0]
            except sqlite3.Error:
                continue
            if committed >= 2:
                break
    assert committed >= 2, "the profiler committed nothing in time"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as con:
        assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
        kept = con.execute("select count(*) from measurements").fetchone()[0]
    assert kept >= committed
    p = subprocess.run([PERFCAST, "profile", *models, "--db", db, *FAST], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"skipped (already measured) {kept}" in p.stdout
    with open_store(db) as store:
        assert store.count_measurements() == 6
        assert store.count_networks() == 6
