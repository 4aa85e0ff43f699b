"""The evaluation harness: label tables from the data files, splits by distinct network, metrics
that equal a recomputation from the written predictions, the report and the CLI contract."""

import csv
import dataclasses
import gzip
import json

import numpy as np
import pytest

from perfcast.errors import UsageError
from perfcast.evaluation import harness, report, tables
from perfcast.evaluation.metrics import summarize
from perfcast.spaces import nb201
from conftest import ROOT, SHARED_DATA

needs_shared = pytest.mark.skipif(not (SHARED_DATA / "hwnasbench_nb201.csv.gz").is_file(),
                                  reason="shared data folder absent")
LOCAL = ROOT / "data" / "local-ort-cpu"
DEVICES = ["hwnasbench:edgegpu", "hwnasbench:raspi4", "hwnasbench:eyeriss"]
FAST = ("flops", "paleo")


@pytest.fixture(scope="module")
def hw_tables():
    return tables.shared_tables(SHARED_DATA, ["hwnasbench_nb201"], DEVICES, max_rows=150, seed=0)


@pytest.fixture(scope="module")
def evaluated(hw_tables):
    settings = harness.Settings(methods=FAST, protocols=("a", "b"), train_sizes=(40, None), ks=(5,), draws=2)
    cache = tables.GraphCache()
    return harness.evaluate(hw_tables, settings, cache), cache


# --- tables ------------------------------------------------------------------------------------
def test_network_keys_group_nb201_strings_by_distinct_cell():
    a = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|none~2|"
    b = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"  # node 2 unused either way
    assert nb201.distinct_key(a) == nb201.distinct_key(b)
    split_a, rank_a = tables.network_keys(f"nb201:{a}", None)
    split_b, rank_b = tables.network_keys(f"nb201:{b}?dataset=cifar100", None)
    assert split_a == split_b
    assert rank_a == split_a and rank_b == split_b + "?dataset=cifar100"


@needs_shared
def test_hwnasbench_tables_pair_latency_and_energy_and_mark_estimates(hw_tables):
    by_name = {t.name: t for t in hw_tables}
    assert sorted(by_name) == sorted(DEVICES)
    assert set(by_name["hwnasbench:edgegpu"].targets) == {"latency_ms", "energy_mj"}
    assert set(by_name["hwnasbench:raspi4"].targets) == {"latency_ms"}
    assert by_name["hwnasbench:eyeriss"].kind == "estimated" and by_name["hwnasbench:edgegpu"].kind == "measured"
    # every table holds the same 150 drawn CSV rows; the first row of the file is arch_id 0 on cifar10
    assert len(by_name["hwnasbench:edgegpu"]) == 150
    full = tables.shared_tables(SHARED_DATA, ["hwnasbench_nb201"], ["hwnasbench:edgegpu"], max_rows=None)[0]
    assert len(full) == 46875
    assert full.specs[0] == ("nb201:|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
                             "|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
    assert full.targets["latency_ms"][0] == 5.80742 and full.targets["energy_mj"][0] == 24.2266


@needs_shared
def test_empty_cells_are_left_out():
    edgetpu = tables.shared_tables(SHARED_DATA, ["hwnasbench_nb201"], ["hwnasbench:edgetpu"])[0]
    assert 0 < len(edgetpu) < 46875
    assert not np.isnan(edgetpu.targets["latency_ms"]).any()


def test_local_tables_take_ok_rows_with_latency_and_peak_memory():
    found = tables.local_tables(LOCAL)
    assert [(t.device, t.batch_size) for t in found] == [("ort-cpu-1t@amd-epyc", 1)]
    t = found[0]
    assert set(t.targets) == {"latency_ms", "memory_bytes"}
    with gzip.open(LOCAL / "measurements.csv.gz", "rt", newline="") as f:
        first = next(r for r in csv.DictReader(f) if r["status"] == "ok")
    assert t.specs[0] == first["model"]
    assert t.targets["latency_ms"][0] == float(first["latency_ms_median"])
    assert t.targets["memory_bytes"][0] == float(first["peak_memory_bytes"])
    assert len({tables.space_of(s) for s in t.specs}) == 13
    # kernel profiles joined by measurement id, None where a network was not profiled
    with gzip.open(LOCAL / "kernels.csv.gz", "rt", newline="") as f:
        kernels = list(csv.DictReader(f))
    profiled = {r["measurement"] for r in kernels}
    assert sum(p is not None for p in t.profiles) == len(profiled)
    with gzip.open(LOCAL / "measurements.csv.gz", "rt", newline="") as f:
        ok = [r for r in csv.DictReader(f) if r["status"] == "ok" and r["latency_ms_median"]]
    i = next(i for i, r in enumerate(ok) if r["measurement"] in profiled)
    mine = [r for r in kernels if r["measurement"] == ok[i]["measurement"]]
    assert [k["kernel_name"] for k in t.profiles[i]] == [r["kernel_name"] for r in mine]
    assert t.subset([i]).profiles == (t.profiles[i],) and t.profiles_of([i]) == [t.profiles[i]]


def test_missing_data_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not a dataset folder"):
        tables.local_tables(tmp_path)
    with pytest.raises(UsageError, match="shared data folder not found"):
        tables.shared_tables(tmp_path / "nowhere")


# --- splits ------------------------------------------------------------------------------------
def test_test_keys_hold_out_a_fraction_of_distinct_keys():
    keys = [f"k{i % 10}" for i in range(100)]
    held = harness.test_keys(keys, 0.2, seed=0)
    assert len(held) == 2 and held <= set(keys)
    assert harness.test_keys(reversed(keys), 0.2, seed=0) == held
    train, test = harness.split_rows(keys, held)
    assert test.size == 20 and train.size == 80


def test_distinct_draw_never_repeats_a_key():
    keys = ["a", "a", "b", "b", "c", "d"]
    rows = harness.distinct_draw(keys, np.arange(6), 3, np.random.default_rng(1))
    assert len({keys[i] for i in rows}) == 3
    assert harness.distinct_draw(keys, np.arange(6), 9, np.random.default_rng(1)).size == 4


@needs_shared
def test_no_distinct_network_is_on_both_sides(evaluated, hw_tables):
    ev, cache = evaluated
    for table in hw_tables:
        keys = cache.split_keys(table)
        held = harness.test_keys((k for t in hw_tables for k in cache.split_keys(t)), 0.2, 0)
        train, test = harness.split_rows(keys, held)
        assert not {keys[i] for i in train} & {keys[i] for i in test}
        assert train.size + test.size == len(table)
    preds = [p for p in ev.predictions if p["protocol"] == "a"]
    test_cells = {nb201.distinct_key(s[len("nb201:"):].partition("?")[0]) for p in preds for s in p["specs"]}
    assert test_cells and all("nb201:" + c in held for c in test_cells)


# --- metrics ------------------------------------------------------------------------------------
@needs_shared
def test_protocol_a_records_equal_metrics_of_their_predictions(evaluated):
    ev, _ = evaluated
    recs = {(r["source"], r["device"], r["method"], r["train_size"], r["target"]): r
            for r in ev.records if r["protocol"] == "a"}
    assert {k[2] for k in recs} == set(FAST) and {k[3] for k in recs} == {"40", "all"}
    assert ("hwnasbench_nb201", "hwnasbench:edgegpu", "flops", "all", "energy_mj") in recs
    for p in (p for p in ev.predictions if p["protocol"] == "a"):
        r = recs[(p["source"], p["device"], p["method"], p["setting"], p["target"])]
        assert r == {**r, **summarize(p["y"], p["pred"], p["rank_keys"], p["lo"], p["hi"])}
        assert r["n_distinct"] <= r["n"]


@needs_shared
def test_protocol_b_averages_draws_and_runs_adapt_with_bases(evaluated):
    ev, _ = evaluated
    b = [r for r in ev.records if r["protocol"] == "b"]
    assert {r["method"] for r in b} == {*FAST, "adapt"}
    for r in b:
        assert r["k"] == 5 and len(r["draws"]) == 2
        assert r["mape_pct"] == pytest.approx(np.mean([d["mape_pct"] for d in r["draws"]]), rel=1e-12)
    adapt = [r for r in b if r["method"] == "adapt" and r["device"] == "hwnasbench:edgegpu"]
    assert adapt and adapt[0]["n_bases"] == 2  # raspi4 and eyeriss, never edgegpu itself


# --- report and CLI ----------------------------------------------------------------------------
@needs_shared
def test_cli_writes_report_metrics_predictions_and_plots(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "ev"
    code, stdout, stderr = run_cli("evaluate", "--data", str(SHARED_DATA), "--protocol", "a", "--methods",
                                   "flops,paleo", "--sources", "hwnasbench_nb201", "--devices",
                                   "hwnasbench:edgegpu", "--max-rows", "90", "--train-sizes", "30,all",
                                   "--out", str(out))
    assert code == 0, stderr
    text = (out / "report.md").read_text()
    assert "perfcast evaluate --data" in text.splitlines()[2]
    assert "## Protocol a: in-distribution" in text and "### latency_ms, measured devices" in text
    assert "| flops | 1 |" in text and "| paleo | 1 |" in text
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["train_sizes"] == "30,all"
    recomputed = report.read_predictions(out / "predictions.csv.gz")
    recs = [r for r in doc["records"] if r["protocol"] == "a"]
    assert len(recs) == len(recomputed) == 2 * 2 * 2  # methods x sizes x targets
    for r in recs:
        g = recomputed[("a", r["source"], r["device"], r["method"], r["train_size"], r["target"])]
        again = summarize(g["y_true"], g["y_pred"], g["rank_key"], g["lo"], g["hi"])
        for key, value in again.items():
            assert r[key] == (None if isinstance(value, float) and np.isnan(value) else value)
    assert doc["plots"]
    for name in doc["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text
    # the pooled coverage weighs each record by its test labels; the report renders again from metrics.json
    section = text.split("### Coverage of the 90% intervals, pooled over devices and settings")[1].split("##")[0]
    header = section.strip().splitlines()[0]
    for method in ("flops", "paleo"):
        row = next(line for line in section.splitlines() if line.startswith(f"| {method} |"))
        cells = dict(zip((c.strip() for c in header.split("|")), (c.strip() for c in row.split("|"))))
        for target in ("latency_ms", "energy_mj"):
            mine = [r for r in recs if r["method"] == method and r["target"] == target]
            pooled = sum(r["coverage"] * r["n"] for r in mine) / sum(r["n"] for r in mine)
            assert cells[f"{target}, measured"] == f"{100 * pooled:.1f}% of {sum(r['n'] for r in mine)}"
    assert report.render_metrics(out / "metrics.json") == text


def test_protocol_c_on_local_data_leaves_each_space_out(tmp_path):
    found = tables.local_tables(LOCAL)
    small = found[0].subset(np.flatnonzero([tables.space_of(s) in ("nb201", "fbnet", "kws")
                                            for s in found[0].specs])[::3])
    ev = harness.evaluate([small], harness.Settings(methods=("flops",), protocols=("c",)))
    recs = [r for r in ev.records if r["protocol"] == "c"]
    assert sorted({r["space"] for r in recs}) == ["fbnet", "kws", "nb201"]
    spaces = np.array([tables.space_of(s) for s in small.specs])
    for r in recs:
        assert r["n_train"] == int((spaces != r["space"]).sum())
        assert r["n"] == int((~np.isnan(small.targets[r["target"]][spaces == r["space"]])).sum())
    out = report.write_report(ev, tmp_path, "perfcast evaluate --data local", "today", "local", {})
    assert "## Protocol c: leave one space out" in (out / "report.md").read_text()
    with gzip.open(out / "predictions.csv.gz", "rt") as f:
        assert f.readline().startswith("protocol,source,device,kind,method,setting,target,spec")


def test_kernel_methods_learn_from_the_profiles_of_local_data():
    """With kernel profiles the kernel-level and operation-wise methods fit per-kernel models and
    no longer agree (without them both fall back to the same end-to-end fit)."""
    t = tables.local_tables(LOCAL)[0]
    rows = [i for i, s in enumerate(t.specs) if t.profiles[i] is not None and tables.space_of(s) == "nb201"]
    small = t.subset(rows[:60])
    ev = harness.evaluate([small], harness.Settings(methods=("kernel", "opwise"), protocols=("a",),
                                                    train_sizes=(None,)))
    pred = {p["method"]: p["pred"] for p in ev.predictions if p["target"] == "latency_ms"}
    assert set(pred) == {"kernel", "opwise"}
    assert not np.allclose(pred["kernel"], pred["opwise"], rtol=1e-3)
    bare = harness.evaluate([dataclasses.replace(small, profiles=None)],
                            harness.Settings(methods=("kernel", "opwise"), protocols=("a",), train_sizes=(None,)))
    same = {p["method"]: p["pred"] for p in bare.predictions if p["target"] == "latency_ms"}
    np.testing.assert_allclose(same["kernel"], same["opwise"])


@pytest.mark.parametrize("args, message", [
    (["--methods", "nosuch"], "nosuch: unknown method"),
    (["--protocol", "z"], "--protocol: unknown protocol 'z'"),
    (["--data", "/no/such/folder"], "/no/such/folder: shared data folder not found"),
    (["--train-sizes", "ten"], "--train-sizes: 'ten' is not a positive integer or 'all'"),
])
def test_cli_bad_input_exits_2_with_one_line(run_cli, tmp_path, args, message):
    code, stdout, stderr = run_cli("evaluate", "--out", str(tmp_path / "x"), "--data", "local", *args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"perfcast: {message}")
    assert not (tmp_path / "x").exists()
