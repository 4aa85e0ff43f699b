"""The shared public measurements import into the store: one device per device column,
measured and estimated apart, networks joined to their spec strings and batch sizes."""

import csv
import gzip
from pathlib import Path

import pytest
import sqlalchemy as sa

from perfcast import api
from perfcast.analysis import analyze_graph
from perfcast.datasets.shared import (
    DEVICES,
    SOURCES,
    CostCache,
    _Networks,
    default_folder,
    import_shared,
    import_source,
    targets,
)
from perfcast.errors import UsageError
from perfcast.spaces import nb201
from perfcast.store import open_store
from perfcast.store.models import Network

REAL = default_folder()
HWNAS, HELP201 = SOURCES["hwnasbench_nb201"], SOURCES["help_nasbench201"]
DUP_A, DUP_B = 25, 186  # two NAS-Bench-201 strings that build one network
N_ARCHS = 15625


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def _write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _subset_indices(source, rows: list[dict[str, str]]) -> list[int]:
    """The first 30 rows, the duplicate pair, an empty Edge TPU cell and, for HW-NAS-Bench,
    the duplicate pair on the two other datasets."""
    picked = list(range(30))
    if source.space.__name__.endswith("nb201"):
        picked.append(DUP_B)
    if source is HWNAS:
        picked.append(next(i for i, r in enumerate(rows) if r["edgetpu_latency"] == ""))
        picked += [N_ARCHS + DUP_A, N_ARCHS + DUP_B, 2 * N_ARCHS + DUP_A, 2 * N_ARCHS + DUP_B]
    return picked


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """A shared data folder with a few rows of every real file: {source name: rows}."""
    if not REAL.is_dir():
        pytest.skip(f"no shared data at {REAL}")
    folder = tmp_path_factory.mktemp("shared")
    kept = {}
    for source in SOURCES.values():
        columns, rows = _read(REAL / source.file)
        kept[source.name] = [rows[i] for i in _subset_indices(source, rows)]
        _write(folder / source.file, columns, kept[source.name])
    return folder, kept


@pytest.fixture(scope="module")
def imported(subset, tmp_path_factory):
    folder, kept = subset
    db = str(tmp_path_factory.mktemp("db") / "store.db")
    with open_store(db) as store:
        counts = import_shared(store, folder)
    return db, counts, kept


def _cells(source, rows, device: str) -> int:
    """Non-empty latency cells of ``device`` in ``rows``."""
    columns = list(rows[0])
    return sum(1 for t in targets(source, columns) if t.device == device for r in rows if r[t.latency] != "")


def test_devices_and_kinds(imported):
    db, counts, _ = imported
    with open_store(db) as store:
        devices = {d["name"]: d for d in store.device_rows()}
    assert set(devices) == set(DEVICES)
    estimated = {n for n, d in devices.items() if d["kind"] == "estimated"}
    assert estimated == {"hwnasbench:eyeriss", "hwnasbench:fpga", "help:eyeriss", "help:fpga",
                         "help:pixel3", "help:raspi4"}
    assert devices["hwnasbench:edgegpu"]["hardware"] == "NVIDIA Jetson TX2"
    assert devices["hwnasbench:edgegpu"]["runtime"] == "tensorrt"
    assert devices["help:gold_6240"]["hardware"] == "Intel Xeon Gold 6240"
    assert devices["help:essential_ph_1"]["hardware"] == "Essential PH-1"


def test_counts_equal_non_empty_cells(imported):
    db, counts, kept = imported
    with open_store(db) as store:
        for name, per_device in counts.items():
            source = SOURCES[name]
            for device, n in per_device.items():
                assert n == _cells(source, kept[name], device), (name, device)
                assert len(store.measurement_rows(device=device, source=f"import:{name}")) == n
    hw = kept["hwnasbench_nb201"]
    assert len(hw) == 36
    assert counts["hwnasbench_nb201"]["hwnasbench:edgegpu"] == 36
    assert counts["hwnasbench_nb201"]["hwnasbench:edgetpu"] == sum(r["edgetpu_latency"] != "" for r in hw) < 36
    # 31 rows x (1080ti, 2080ti, titanx, titanxp) x 3 batch sizes + 6 batch-1 CPUs and phones
    assert sum(counts["help_nasbench201"].values()) == 31 * 18
    assert counts["help_ofa"] == {"help:2080ti": 90, "help:titanxp": 90, "help:v100": 90}


def test_values_as_published_and_energy_in_the_same_row(imported):
    db, _, kept = imported
    row = kept["hwnasbench_nb201"][1]
    spec = "nb201:" + row["arch_str"]
    with open_store(db) as store:
        found = [r for r in store.measurement_rows(device="hwnasbench:edgegpu", with_samples=True)
                 if r["environment"]["spec"] == spec]
        eyeriss = [r for r in store.measurement_rows(device="hwnasbench:eyeriss", with_samples=True)
                   if r["environment"]["spec"] == spec]
        help256 = [r for r in store.measurement_rows(device="help:titanx", batch_size=256, with_samples=True)
                   if r["environment"]["arch_id"] == 1]
    assert len(found) == 1
    assert found[0]["latency_ms_median"] == float(row["edgegpu_latency"]) == 6.54769
    assert found[0]["energy_mj"] == float(row["edgegpu_energy"]) == 29.9971
    assert found[0]["batch_size"] == 1 and found[0]["source"] == "import:hwnasbench_nb201"
    assert eyeriss[0]["energy_mj"] == float(row["eyeriss_energy"])
    assert eyeriss[0]["environment"]["arithmetic_intensity"] == float(row["eyeriss_arithmetic_intensity"])
    assert eyeriss[0]["device_kind"] == "estimated"
    assert help256[0]["latency_ms_median"] == float(kept["help_nasbench201"][1]["titanx_256"]) == 26.8493


def test_batch_256_links_to_the_batch_256_network(imported):
    db, _, _ = imported
    with open_store(db) as store:
        one, big = ({r["environment"]["arch_id"]: r for r in store.measurement_rows(
            device="help:titanx", batch_size=batch, source="import:help_nasbench201", with_samples=True)}
            for batch in (1, 256))
        fbnet64 = store.measurement_rows(device="help:titanx", batch_size=64, source="import:help_fbnet")
        graph = store.network_graph(store.find_network(big[0]["content_hash"]))
    assert set(one) == set(big) and len(big) == 31
    for arch_id, r in big.items():
        assert r["content_hash"] != one[arch_id]["content_hash"]
        assert r["macs"] == 256 * one[arch_id]["macs"] > 0
        assert r["params"] == one[arch_id]["params"]
    assert graph.tensors[graph.inputs[0]].shape == (256, 3, 32, 32)
    assert len(fbnet64) == 30


def test_every_spec_names_the_network_it_builds(imported):
    db, _, kept = imported
    rows = kept["hwnasbench_nb201"]
    with open_store(db) as store:
        for row in (rows[0], rows[DUP_A], rows[-1]):
            spec = nb201.spec_for_row(HWNAS.file, row)
            network = store.find_network(api.load(spec).content_hash)
            assert network is not None and spec in store.network_refs(network)
        for batch in (32, 256):
            graph = api.load("nb201:" + rows[DUP_A]["arch_str"], batch_size=batch)
            [m] = [r for r in store.measurement_rows(device="help:1080ti", batch_size=batch, with_samples=True,
                                                     source="import:help_nasbench201")
                   if r["environment"]["arch_id"] == DUP_A]
            assert m["content_hash"] == graph.content_hash and m["nodes"] == len(graph.nodes)


def test_strings_that_build_one_graph_share_one_network(subset, tmp_path):
    """Two NAS-Bench-201 strings whose graphs are equal (here: a loader that builds the first
    string's graph for the second) are one network on every dataset and batch size, with
    both strings as references and each string's own measurements."""
    folder, kept = subset
    rows = kept["hwnasbench_nb201"]
    a, b = rows[DUP_A]["arch_str"], rows[30]["arch_str"]

    def load(spec, batch_size):
        return api.load(spec.replace(b, a), batch_size=batch_size)

    with open_store(tmp_path / "dup.db") as store:
        networks = _Networks(store, load)
        for source in (HWNAS, HELP201):
            import_source(store, folder, source, networks)
        for query in ("", "?dataset=cifar100", "?dataset=ImageNet16-120"):
            network = store.find_network(f"nb201:{b}{query}")
            assert network == store.find_network(f"nb201:{a}{query}") is not None
            assert store.network_refs(network) == [f"nb201:{a}{query}", f"nb201:{b}{query}"]
        for batch in (32, 256):
            found = [r for r in store.measurement_rows(device="help:1080ti", batch_size=batch, with_samples=True,
                                                       source="import:help_nasbench201")
                     if r["environment"]["arch_id"] in (DUP_A, DUP_B)]
            assert len(found) == 2 and found[0]["content_hash"] == found[1]["content_hash"]
        edge = {r["environment"]["arch_id"]: r["latency_ms_median"]
                for r in store.measurement_rows(device="hwnasbench:edgegpu", with_samples=True)
                if r["environment"]["spec"] in (f"nb201:{a}", f"nb201:{b}")}
    assert edge == {DUP_A: float(rows[DUP_A]["edgegpu_latency"]), DUP_B: float(rows[30]["edgegpu_latency"])}


def test_networks_keep_no_ir_and_their_costs_are_the_analysis(imported):
    db, _, _ = imported
    with open_store(db) as store:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(Network.id, Network.ir_json, Network.source, Network.batch_size,
                                          Network.macs, Network.flops, Network.params)).all()
        for row in rows[::25]:
            graph = store.network_graph(row.id)
            analysis = analyze_graph(graph)
            assert (row.macs, row.flops, row.params) == (analysis.macs, analysis.flops, analysis.params)
            assert graph.content_hash == api.load(row.source, batch_size=row.batch_size).content_hash
        measured = {r["content_hash"] for r in store.measurement_rows()}
    assert {r.ir_json for r in rows} == {""} and all(r.batch_size >= 1 for r in rows)
    assert len(rows) == len(measured) > 36 + 31 * 2 + 30 * 3 + 30 * 2  # one network per measured graph


def test_cost_cache_gives_the_analysis_totals(subset):
    _, kept = subset
    costs = CostCache()
    for source in SOURCES.values():
        for row in kept[source.name][:10]:
            for batch in (1, 32):
                graph = api.load(source.space.spec_for_row(source.file, row), batch_size=batch)
                analysis = analyze_graph(graph)
                assert costs.totals(graph) == (analysis.macs, analysis.flops, analysis.params)
    assert 0 < len(costs.costs) < 3 * 10 * 2 * 100  # nodes repeat across graphs


def test_import_again_adds_nothing(imported, subset):
    db, counts, _ = imported
    folder, _ = subset
    with open_store(db) as store:
        before = (store.count_measurements(), store.count_networks(), store.count_devices())
        again = import_shared(store, folder)
        assert (store.count_measurements(), store.count_networks(), store.count_devices()) == before
    assert before[0] == sum(sum(c.values()) for c in counts.values())
    assert all(n == 0 for per_device in again.values() for n in per_device.values())


def test_cli_imports_one_source(subset, tmp_path, run_cli):
    folder, kept = subset
    db = str(tmp_path / "one.db")
    code, out, err = run_cli("dataset", "import-shared", str(folder), "--db", db, "--only", "help_ofa")
    assert code == 0, err
    assert out.strip() == "help_ofa: 270 measurements added (help:2080ti 90, help:titanxp 90, help:v100 90)"
    with open_store(db) as store:
        assert store.count_measurements() == 270 and store.count_networks() == 90
        assert {r["source"] for r in store.measurement_rows()} == {"import:help_ofa"}


def test_bad_folder_or_source_is_one_line(tmp_path, run_cli):
    missing = tmp_path / "nowhere"
    with open_store(str(tmp_path / "x.db")) as store:
        with pytest.raises(UsageError):
            import_shared(store, missing)
        with pytest.raises(UsageError):
            import_shared(store, tmp_path, only="imagenet")
    code, out, err = run_cli("dataset", "import-shared", str(missing), "--db", str(tmp_path / "y.db"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(missing) in err and "not found" in err
    assert not (tmp_path / "y.db").exists()
    code, _, err = run_cli("dataset", "import-shared", str(tmp_path), "--only", "nope", "--db", str(tmp_path / "y.db"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown shared data source" in err
