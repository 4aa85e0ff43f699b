"""A measured dataset exported to compact files loads back into another store unchanged."""

import csv
import gzip

import pytest

from perfcast import api
from perfcast.datasets.local import export_dataset, load_dataset, rebase_dataset, rebase_rows
from perfcast.errors import UsageError
from perfcast.store import open_store

FAST = dict(workers=2, time_budget_s=0.05, memory=True, max_cv=1.0, progress=False)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("src") / "src.db")
    api.profile(["kws:3", "nb201:|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"],
                db=db, kernels=True, **FAST)
    return db


def test_export_then_load_round_trip(measured, tmp_path):
    with open_store(measured) as src:
        counts = export_dataset(src, tmp_path / "ds")
        original = {r["content_hash"]: r for r in src.measurement_rows()}
        kernels_before = sum(src.count_kernel_profiles(r["id"]) for r in original.values())
        baseline = src.reference_baselines(src.device_rows()[0]["id"])[0]
    assert counts["measurements"] == 2 and counts["kernels"] == kernels_before > 0
    with gzip.open(tmp_path / "ds" / "measurements.csv.gz", "rt") as f:
        header = f.readline().strip().split(",")
    for column in ("model", "content_hash", "macs", "params", "latency_ms_median", "peak_memory_bytes", "energy_mj"):
        assert column in header
    target = str(tmp_path / "dst.db")
    with open_store(target) as dst:
        assert load_dataset(dst, tmp_path / "ds") == {"added": 2, "skipped": 0}
        loaded = {r["content_hash"]: r for r in dst.measurement_rows()}
        assert set(loaded) == set(original)
        assert dst.reference_baselines(dst.device_rows()[0]["id"]) == (None, None)  # imported: not this machine's
        for h, r in loaded.items():
            assert r["source"] == "import:ds"
            assert r["latency_ms_median"] == pytest.approx(original[h]["latency_ms_median"], rel=1e-5)
            assert r["peak_memory_bytes"] == original[h]["peak_memory_bytes"]
            assert r["energy_mj"] is None
            assert r["latency_ms_median"] == pytest.approx(r["reference_ratio"] * baseline, rel=1e-5)
            assert r["macs"] == original[h]["macs"] and r["device"] == original[h]["device"]
        assert sum(dst.count_kernel_profiles(r["id"]) for r in loaded.values()) == kernels_before
        # loading again adds nothing
        assert load_dataset(dst, tmp_path / "ds") == {"added": 0, "skipped": 2}
        assert dst.count_measurements() == 2


def test_load_rejects_a_folder_without_data(tmp_path, run_cli):
    with open_store(str(tmp_path / "x.db")) as store, pytest.raises(UsageError):
        load_dataset(store, tmp_path)
    code, out, err = run_cli("dataset", "load", str(tmp_path), "--db", str(tmp_path / "x.db"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(tmp_path) in err


def _row(measurement, device, ratio, baseline, median=None, status="ok"):
    median = ratio * baseline if median is None else median
    return {"measurement": measurement, "device": device, "status": status, "reference_ratio": ratio,
            "reference_baseline_ms": baseline, "latency_ms_median": median, "latency_ms_mean": 1.1 * median,
            "latency_ms_min": 0.9 * median, "latency_ms_p10": 0.95 * median, "latency_ms_p90": 1.2 * median}


def test_rebase_puts_every_latency_in_the_device_s_first_baseline():
    rows = [_row(1, "a", 10.0, 0.2), _row(2, "b", 3.0, 0.5), _row(3, "a", 10.0, 0.25),
            _row(4, "a", 4.0, None, median=1.0),  # no recorded baseline: it is median / ratio = 0.25
            {"measurement": 5, "device": "a", "status": "failed", "reference_ratio": None, "latency_ms_median": None}]
    assert rebase_rows(rows) == 2
    assert [r["latency_ms_median"] for r in rows[:4]] == pytest.approx([2.0, 1.5, 2.0, 0.8])
    assert rows[2]["latency_ms_p90"] == pytest.approx(1.2 * 2.0) and rows[3]["latency_ms_min"] == pytest.approx(0.72)
    assert [r.get("reference_baseline_ms") for r in rows] == [0.2, 0.5, 0.2, 0.2, None]
    assert rebase_rows(rows) == 0  # a second pass changes nothing


def test_rebase_dataset_rewrites_the_folder_and_refuses_other_files(measured, tmp_path):
    with open_store(measured) as src:
        export_dataset(src, tmp_path / "ds")
    assert rebase_dataset(tmp_path / "ds") == 0  # one run of the profiler: one baseline already
    with gzip.open(tmp_path / "ds" / "measurements.csv.gz", "rt") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    assert len(rows) == 2 and len({r["reference_baseline_ms"] for r in rows}) == 1
    for r in rows:
        assert float(r["latency_ms_median"]) == pytest.approx(
            float(r["reference_ratio"]) * float(r["reference_baseline_ms"]), rel=1e-5)
    with pytest.raises(UsageError, match="not a dataset folder"):
        rebase_dataset(tmp_path / "none")
