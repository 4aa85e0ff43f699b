"""The measurement store, on SQLite and on a real PostgreSQL server: round trips,
idempotency, failed runs, migrations, bad URLs and a process killed mid-way."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pg import free_port, postgres_server, postgres_url  # noqa: F401  (fixtures)

from perfcast import api
from perfcast.analysis import analyze_graph
from perfcast.errors import ModelLoadError, UsageError
from perfcast.ir.builder import GraphBuilder
from perfcast.ir.serialize import dumps
from perfcast.store import NetworkSummary, db, open_store, resolve_url
from perfcast.store.models import Base, Measurement, Network

TABLES = {"devices", "networks", "network_refs", "measurements", "kernel_profiles", db.VERSION_TABLE}
HEAD = "0002"


def tiny_net(width: int = 4, name: str = "tiny", res: int = 8):
    """conv3x3(3->width, no bias) + BN + ReLU, global average pool, linear(width->10)."""
    b = GraphBuilder(name)
    x = b.input((1, 3, res, res))
    y = b.act(b.bn(b.conv(x, width, 3)), "relu")
    b.output(b.linear(b.flatten(b.global_avgpool(y)), 10))
    return b.build()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(url):
    s = open_store(url)
    yield s
    s.close()


def ok_fields(median: float = 2.0, cv: float | None = 0.01, batch_size: int = 1) -> dict:
    return {"batch_size": batch_size, "latency_ms": {"median": median}, "repeat_cv": cv}


def test_round_trip_of_device_network_measurement_and_kernels(store):
    dev = store.upsert_device("ort-cpu-1t", runtime="ort-cpu", runtime_version="1.18.0",
                              hardware="Xeon", threads=1, extra={"governor": "performance"})
    assert store.upsert_device("ort-cpu-1t", runtime="ort-cpu", runtime_version="1.19.0", threads=1) == dev
    g = tiny_net()
    net = store.add_network(g, "spec:tiny")
    m = store.add_measurement(
        net, dev, batch_size=1,
        latency_ms={"median": 1.5, "mean": 1.6, "min": 1.25, "p10": 1.3, "p90": 2.0},
        repeat_cv=0.04, raw_samples_ms=[1.25, 1.5, 2.0], reference_ratio=0.75,
        peak_memory_bytes=12_345_678, environment={"host": "h1", "threads": 1}, source="profiler",
    )
    added = store.add_kernel_profiles(m, [
        {"kernel_name": "Conv_fused_relu", "op_type": "FusedConv", "provider": "CPUExecutionProvider",
         "node_names": ["Conv_2", "BatchNormalization_8", "Relu_10"], "duration_us": 40.5, "sample_count": 20},
        {"kernel_name": "Gemm_16", "op_type": "Gemm", "node_names": ["Gemm_16"], "duration_us": 3.25,
         "sample_count": 20},
    ])
    assert added == 2 and store.count_kernel_profiles(m) == 2
    with pytest.raises(ValueError, match=r"lacks \['sample_count'\]"):
        store.add_kernel_profiles(m, [{"kernel_name": "k", "op_type": "Relu", "node_names": [], "duration_us": 1.0}])

    [row] = store.measurement_rows(with_samples=True)
    created = row.pop("created_at")
    assert created.tzinfo is not None and abs((datetime.now(timezone.utc) - created).total_seconds()) < 60
    assert row == {
        "id": m, "model": "spec:tiny", "content_hash": g.content_hash, "format": "spec",
        # conv 4*8*8*3*9 + linear 4*10 MACs; conv 108 + BN 8 + linear 50 params
        "macs": 6952, "flops": row["flops"], "params": 166, "nodes": 6,
        "device": "ort-cpu-1t", "runtime": "ort-cpu", "device_kind": "measured", "batch_size": 1,
        "status": "ok", "error_kind": None, "error_message": None,
        "latency_ms_median": 1.5, "latency_ms_mean": 1.6, "latency_ms_min": 1.25, "latency_ms_p10": 1.3,
        "latency_ms_p90": 2.0, "repeat_cv": 0.04, "reference_ratio": 0.75, "peak_memory_bytes": 12_345_678,
        "energy_mj": None, "source": "profiler", "raw_samples_ms": [1.25, 1.5, 2.0],
        "environment": {"host": "h1", "threads": 1},
    }
    assert store.kernel_profile_rows(m) == [
        {"seq": 0, "kernel_name": "Conv_fused_relu", "op_type": "FusedConv", "provider": "CPUExecutionProvider",
         "node_names": ["Conv_2", "BatchNormalization_8", "Relu_10"], "duration_us": 40.5, "sample_count": 20},
        {"seq": 1, "kernel_name": "Gemm_16", "op_type": "Gemm", "provider": None, "node_names": ["Gemm_16"],
         "duration_us": 3.25, "sample_count": 20},
    ]
    [device] = store.device_rows()
    assert (device["name"], device["runtime_version"], device["hardware"], device["threads"], device["extra"]) == (
        "ort-cpu-1t", "1.19.0", None, 1, {}
    )
    back = store.network_graph(net)
    assert back.content_hash == g.content_hash and [n.name for n in back.nodes] == [n.name for n in g.nodes]


def test_same_graph_twice_is_one_network_with_two_refs_and_two_measurements(store):
    dev = store.upsert_device("d", runtime="ort-cpu")
    g = tiny_net(name="a")
    same = tiny_net(name="renamed")  # names do not change the content hash
    first = store.add_network(g, "spec:a")
    assert store.add_network(g, "spec:a") == first
    assert store.add_network(same, "spec:b") == first
    store.add_measurement(first, dev, **ok_fields(2.0))
    store.add_measurement(first, dev, **ok_fields(2.5))
    assert (store.count_networks(), store.count_measurements()) == (1, 2)
    assert store.network_refs(first) == ["spec:a", "spec:b"]
    assert [r["latency_ms_median"] for r in store.measurement_rows()] == [2.0, 2.5]

    wider = store.add_network(tiny_net(width=8), "spec:a")  # the same reference naming another graph
    assert wider != first and store.count_networks() == 2
    assert store.find_network("spec:a") == wider and store.find_network("spec:b") == first
    assert store.find_network(g.content_hash) == first and store.find_network("spec:none") is None
    assert [r["macs"] for r in store.measurement_rows(network=g.content_hash)] == [6952, 6952]


def test_failed_and_timed_out_measurements_keep_their_error(store):
    dev = store.upsert_device("d", runtime="ort-cpu")
    net = store.add_network(tiny_net(), "spec:tiny")
    store.add_measurement(net, dev, batch_size=4, status="failed", error_kind="oom",
                          error_message="std::bad_alloc while allocating 1 GiB")
    store.add_measurement(net, dev, batch_size=4, status="timeout", error_kind="timeout", error_message="600 s")
    assert store.measurement_rows() == []
    rows = store.measurement_rows(status=None)
    assert [(r["status"], r["error_kind"], r["error_message"], r["latency_ms_median"]) for r in rows] == [
        ("failed", "oom", "std::bad_alloc while allocating 1 GiB", None),
        ("timeout", "timeout", "600 s", None),
    ]
    assert store.count_measurements(status="failed") == 1
    assert not store.has_good_measurement(net, dev, 4)
    with store.engine.connect() as conn:  # values never measured are SQL NULL, JSON columns included
        nulls = sa.select(sa.func.count()).where(Measurement.raw_samples_ms.is_(None), Measurement.energy_mj.is_(None))
        assert conn.scalar(nulls) == 2


@pytest.mark.parametrize("fields, problem", [
    ({"batch_size": 1}, "needs latency_ms"),
    ({"batch_size": 1, "status": "failed"}, "needs error_kind"),
    ({"batch_size": 1, "status": "crashed", "error_kind": "x"}, "status must be"),
    ({"batch_size": 0, "latency_ms": {"median": 1.0}}, "batch_size"),
    ({"batch_size": 1, "latency_ms": {"median": 1.0, "p50": 1.0}}, "unknown keys"),
    ({"batch_size": 1, "latency_ms": {"median": 1.0}, "raw_samples_ms": [1.0, float("nan")]}, "finite"),
    ({"batch_size": 1, "latency_ms": {"median": 1.0}, "source": "csv"}, "import:<dataset>"),
    ({"batch_size": 1, "latency_ms": {"median": 1.0}, "environment": {"x": object()}}, "plain JSON"),
])
def test_invalid_measurements_are_refused_before_writing(tmp_path, fields, problem):
    store = open_store(tmp_path / "s.db")
    net = store.add_network(tiny_net(), "spec:tiny")
    dev = store.upsert_device("d", runtime="ort-cpu")
    with pytest.raises(ValueError, match=problem):
        store.add_measurement(net, dev, **fields)
    assert store.count_measurements() == 0


def test_has_good_measurement_for_resume(store):
    dev = store.upsert_device("d", runtime="ort-cpu")
    other = store.upsert_device("e", runtime="ort-cpu", kind="estimated")
    g = tiny_net()
    net = store.add_network(g, "spec:tiny")
    assert not store.has_good_measurement(net, dev, 1)
    store.add_measurement(net, dev, **ok_fields(cv=0.2))
    assert store.has_good_measurement(net, dev, 1) and store.has_good_measurement(g.content_hash, dev, 1)
    assert not store.has_good_measurement(net, dev, 1, max_cv=0.05)
    assert not store.has_good_measurement(net, dev, 2) and not store.has_good_measurement(net, other, 1)
    assert not store.has_good_measurement("0" * 32, dev, 1)
    store.add_measurement(net, dev, **ok_fields(cv=None))
    assert not store.has_good_measurement(net, dev, 1, max_cv=0.05)
    store.add_measurement(net, dev, **ok_fields(cv=0.03), source="import:hwnasbench")
    assert store.has_good_measurement(g.content_hash, dev, 1, max_cv=0.05)
    assert [r["source"] for r in store.measurement_rows(source="import:hwnasbench")] == ["import:hwnasbench"]


def test_reference_baselines_are_those_of_the_device_s_first_measurement_that_has_them(store):
    dev = store.upsert_device("d", runtime="ort-cpu")
    other = store.upsert_device("e", runtime="ort-cpu")
    net = store.add_network(tiny_net(), "spec:tiny")
    assert store.reference_baselines(dev) == (None, None)
    store.add_measurement(net, dev, **ok_fields(), environment={"reference_baseline_ms": None})
    store.add_measurement(net, dev, **ok_fields(), environment={"reference_baseline_ms": 7.0}, source="import:ds")
    store.add_measurement(net, other, **ok_fields(), environment={"reference_baseline_ms": 9.0})
    store.add_measurement(net, dev, **ok_fields(), environment={"reference_baseline_ms": 0.125,
                                                               "memory_reference_baseline_ms": 0.5})
    store.add_measurement(net, dev, **ok_fields(), environment={"reference_baseline_ms": 0.2})
    assert store.reference_baselines(dev) == (0.125, 0.5)
    assert store.reference_baselines(other) == (9.0, None)


def test_bulk_add_is_one_transaction_in_order(store):
    dev = store.upsert_device("d", runtime="ort-cpu")
    net = store.add_network(tiny_net(), "spec:tiny")
    rows = [{"network_id": net, "device_id": dev, **ok_fields(float(i))} for i in range(1, 6)]
    ids = store.add_measurements(rows)
    assert [r["id"] for r in store.measurement_rows()] == ids
    assert [r["latency_ms_median"] for r in store.measurement_rows()] == [1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(ValueError):
        store.add_measurements([rows[0], {**rows[0], "status": "failed"}])
    assert store.count_measurements() == 5


def test_concurrent_writers_wait_for_each_other(url):
    stores = [open_store(url) for _ in range(2)]
    graph = tiny_net()
    start = threading.Barrier(2)
    errors: list[Exception] = []

    def write(k: int) -> None:
        try:
            start.wait()
            dev = stores[k].upsert_device("shared", runtime="ort-cpu")
            net = stores[k].add_network(graph, f"spec:writer{k}")
            for i in range(25):
                stores[k].add_measurement(net, dev, **ok_fields(float(i)))
        except Exception as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = stores[0]
    assert (s.count_devices(), s.count_networks(), s.count_measurements()) == (1, 1, 50)
    assert sorted(s.network_refs(s.find_network(graph.content_hash))) == ["spec:writer0", "spec:writer1"]
    for s in stores:
        s.close()


def test_migrations_create_the_schema_and_reopening_changes_nothing(url):
    store = open_store(url)
    with store.engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == TABLES
        context = MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE})
        assert context.get_current_heads() == (HEAD,)
        assert compare_metadata(context, Base.metadata) == []  # the models describe what the migrations built
        inspector = sa.inspect(conn)
        assert {c["name"] for c in inspector.get_check_constraints("measurements")} == {
            "ck_measurements_status", "ck_measurements_batch_size",
            "ck_measurements_ok_has_latency", "ck_measurements_error_has_kind",
        }
        assert [c["name"] for c in inspector.get_check_constraints("devices")] == ["ck_devices_kind"]
        assert [c["name"] for c in inspector.get_unique_constraints("network_refs")] == [
            "uq_network_refs_network_id_ref"
        ]
    net = store.add_network(tiny_net(), "spec:tiny")
    store.close()
    engine = db.make_engine(url)
    assert db.upgrade_schema(engine) is False
    engine.dispose()
    again = open_store(url)
    assert again.find_network("spec:tiny") == net and again.count_networks() == 1
    again.close()


def test_a_store_of_revision_0001_upgrades_and_keeps_its_networks(url):
    graph = tiny_net()
    engine = db.make_engine(url)
    with db.write_transaction(engine) as conn:
        db.command.upgrade(db.alembic_config(conn), "0001")
        conn.execute(sa.text(
            "INSERT INTO networks (content_hash, source, format, ir_json, macs, flops, params, nodes, created_at) "
            "VALUES (:h, 'spec:tiny', 'spec', :ir, 6952, 0, 166, 6, CURRENT_TIMESTAMP)"), {"h": graph.content_hash,
                                                                                         "ir": dumps(graph)})
    engine.dispose()
    store = open_store(url)
    net = store.find_network(graph.content_hash)
    assert store.network_graph(net).content_hash == graph.content_hash
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(Network.batch_size).where(Network.id == net)) is None
    store.close()


def test_spec_networks_keep_no_ir_and_are_rebuilt_from_their_spec(store):
    graph = api.load("nb201:|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|", batch_size=2)
    summary = NetworkSummary.of(graph, 2)
    analysis = analyze_graph(graph)
    assert (summary.macs, summary.flops, summary.params, summary.nodes) == (
        analysis.macs, analysis.flops, analysis.params, len(graph.nodes))
    spec = "nb201:|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"
    [first, again] = store.add_spec_networks([(summary, spec), (summary, "alias")])
    assert first == again and store.network_refs(first) == [spec, "alias"]
    assert store.add_network(graph, "file.onnx") == first and store.count_networks() == 1
    assert store.network_graph(first).content_hash == graph.content_hash
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(Network.ir_json, Network.batch_size)).one() == ("", 2)
    other = NetworkSummary.of(tiny_net(width=8), 2)
    stale = store.add_spec_networks([(other, spec)])[0]  # the spec builds another graph than this one
    with pytest.raises(ModelLoadError, match="now builds another graph"):
        store.network_graph(stale)
    assert store.network_ids([graph.content_hash, "0" * 32]) == {graph.content_hash: first}


def test_packaged_migrations_are_found_without_alembic_ini():
    config = db.alembic_config()
    assert config.config_file_name is None
    assert db.MIGRATIONS_DIR.parent == Path(db.__file__).parent
    assert (db.MIGRATIONS_DIR / "script.py.mako").is_file()
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_busy_timeout(tmp_path):
    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store = open_store(path)  # a plain path is a SQLite file too
    with pytest.raises(sa.exc.IntegrityError):
        store.add_measurement(999, 999, **ok_fields())  # no such network or device
    store.close()


def test_in_memory_sqlite_and_default_location(tmp_path, monkeypatch):
    assert open_store("sqlite://").count_networks() == 0
    monkeypatch.delenv(db.ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_url() == f"sqlite:///{tmp_path}/.perfcast/perfcast.db"
    open_store().close()
    assert (tmp_path / ".perfcast" / "perfcast.db").is_file()
    monkeypatch.setenv(db.ENV_VAR, "postgresql://db.example/perfcast")
    assert resolve_url() == "postgresql://db.example/perfcast"
    assert resolve_url(tmp_path / "x.db") == f"sqlite:///{tmp_path}/x.db"


def _open_error(url) -> str:
    with pytest.raises(UsageError) as info:
        open_store(url)
    message = str(info.value)
    assert "\n" not in message and "cannot open the store: " in message
    return message


def test_bad_urls_are_one_line_usage_errors(tmp_path):
    assert "unknown database dialect 'nosuchdb'" in _open_error("nosuchdb://host/db")
    closed = f"postgresql://someone:secret@127.0.0.1:{free_port()}/db"
    message = _open_error(closed)
    assert "Connection refused" in message and "secret" not in message and "***" in message
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    assert "Not a directory" in _open_error(f"sqlite:///{blocker}/sub/store.db")
    assert not (tmp_path / "blocker").is_dir()


def test_files_that_are_not_a_store_are_left_untouched(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all\n" * 400)
    before = junk.read_bytes()
    assert "file is not a database" in _open_error(junk)
    assert junk.read_bytes() == before

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE songs (title TEXT)")
        raw.execute("INSERT INTO songs VALUES ('a')")
    raw.close()
    before = other.read_bytes()
    assert "not a perfcast store (songs)" in _open_error(other)
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db", "other.db"]


def test_foreign_postgres_database_is_left_untouched(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE songs (title TEXT)")
    assert "not a perfcast store (songs)" in _open_error(postgres_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["songs"]
    engine.dispose()


def test_failed_migration_leaves_no_half_written_database(url, monkeypatch):
    real_upgrade = db.command.upgrade

    def upgrade_then_fail(config, revision):
        real_upgrade(config, revision)
        raise sa.exc.OperationalError("upgrade", {}, RuntimeError("disk full"))

    monkeypatch.setattr(db.command, "upgrade", upgrade_then_fail)
    assert "disk full" in _open_error(url)
    if url.startswith("sqlite"):
        assert not os.path.exists(url.removeprefix("sqlite:///"))
    else:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
        engine.dispose()
    monkeypatch.undo()
    assert open_store(url).count_networks() == 0


CHILD = """
import sys
from perfcast.ir.builder import GraphBuilder
from perfcast.store import open_store

store = open_store(sys.argv[1])
b = GraphBuilder("kill")
b.output(b.op("Relu", [b.input((1, 3, 8, 8))]))
network = store.add_network(b.build(), "spec:kill")
device = store.upsert_device("kill-test", runtime="ort-cpu")
for i in range(1, 100_000):
    store.add_measurement(network, device, batch_size=1, latency_ms={"median": float(i)},
                          raw_samples_ms=[float(i)] * 50, environment={"i": i})
    print(i, flush=True)
"""


def test_measurements_committed_before_a_kill_survive_it(url):
    child = subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    reported = 0
    try:
        while reported < 40:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"the writer exited early: {child.stderr.read()}")
            reported = int(line)
        child.send_signal(signal.SIGKILL)
        reported = max([reported, *(int(line) for line in child.stdout.read().split())])
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    store = open_store(url)
    stored = store.count_measurements()
    assert reported <= stored <= reported + 1
    medians = [r["latency_ms_median"] for r in store.measurement_rows()]
    assert medians == [float(i) for i in range(1, stored + 1)]
    store.close()
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
