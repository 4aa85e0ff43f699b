"""A measured dataset exported to compact files loads back into another store unchanged."""

import gzip

import pytest

from perfcast import api
from perfcast.datasets.local import export_dataset, load_dataset
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
        for h, r in loaded.items():
            assert r["source"] == "import:ds"
            assert r["latency_ms_median"] == pytest.approx(original[h]["latency_ms_median"], rel=1e-5)
            assert r["peak_memory_bytes"] == original[h]["peak_memory_bytes"]
            assert r["energy_mj"] is None
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
