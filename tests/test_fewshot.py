"""Multi-device methods on a small real subset of the shared data: HW-NAS-Bench's NAS-Bench-201
part (240 rows), the Edge TPU left out, the other five devices as sources; each method, adapted with
10 measured networks, ranks held-out networks at least as well as the FLOPs baseline fitted on the
same 10, and the graph-network methods (nnlqp, fewshot) clearly better (on this subset they reach
Spearman 0.76-0.77, HELP 0.59 and the hardware-vector model 0.49, where the baseline, which learns
that the Edge TPU runs folded graphs, reaches 0.49); saved and loaded models predict the same
numbers; bad input is refused."""

import numpy as np
import pytest

from perfcast.errors import ModelLoadError, UsageError
from perfcast.evaluation import harness, tables
from perfcast.evaluation.metrics import spearman
from perfcast.predictors import Predictor, get_predictor
from perfcast.predictors.fewshot import MIN_POOL, fit_fewshot_from_bases
from perfcast.predictors.hwfeat import HARDWARE, hardware_vector
from perfcast.predictors.multidevice import MultiDeviceModel, get_multidevice, multidevice_names
from conftest import SHARED_DATA

SOURCE = "hwnasbench_nb201"
LEFT_OUT = "hwnasbench:edgetpu"
METHODS = ("help", "nnlqp", "hwfeat", "fewshot")
FAST = {"steps": 150, "hidden": [32, 16]}
K = 10

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "hwnasbench_nb201.csv.gz").is_file(),
                                reason="shared data folder absent")


@pytest.fixture(scope="module")
def split():
    found = tables.shared_tables(SHARED_DATA, [SOURCE], max_rows=240, seed=0)
    cache = tables.GraphCache()
    held_out = harness.test_keys((k for t in found for k in cache.split_keys(t)), 0.25, 0)
    target = next(t for t in found if t.name == LEFT_OUT)
    train, test = harness.split_rows(cache.split_keys(target), held_out)
    rows = harness.distinct_draw(cache.split_keys(target), train, K, np.random.default_rng(0))
    graphs = cache.graphs(target)
    y = target.targets["latency_ms"]
    return {"data": harness.source_data(found, LEFT_OUT, cache, held_out),
            "sample": [graphs[i] for i in rows], "y": y[rows],
            "test": [graphs[i] for i in test], "y_test": y[test],
            "rank": [cache.rank_keys(target)[i] for i in test]}


@pytest.fixture(scope="module")
def models(split):
    return {m: get_multidevice(m, **FAST).fit_devices(split["data"]) for m in METHODS}


def test_registry():
    assert set(METHODS) <= set(multidevice_names())
    with pytest.raises(UsageError, match="unknown name 'nope'"):
        get_multidevice("nope")
    with pytest.raises(UsageError, match="hidden"):
        get_multidevice("nnlqp", hidden="wide").fit_devices({})


def test_sources_exclude_the_left_out_device(split):
    assert sorted(split["data"]) == ["hwnasbench:edgegpu", "hwnasbench:eyeriss", "hwnasbench:fpga",
                                     "hwnasbench:pixel3", "hwnasbench:raspi4"]


@pytest.mark.parametrize("method", METHODS)
def test_adapted_ranks_better_than_flops(method, models, split):
    pred = models[method].adapt(split["sample"], {"latency_ms": split["y"]}, device=LEFT_OUT)
    assert type(pred).name == method and pred.targets_ == ["latency_ms"]
    mine = spearman(split["y_test"], pred.predict(split["test"])["latency_ms"], split["rank"])
    flops = get_predictor("flops").fit(split["sample"], {"latency_ms": split["y"]})
    baseline = spearman(split["y_test"], flops.predict(split["test"])["latency_ms"], split["rank"])
    assert mine > baseline + (0.2 if method in ("nnlqp", "fewshot") else 0.0), (mine, baseline)
    lo, hi = pred.predict_interval(split["test"], alpha=0.1)["latency_ms"]
    assert (lo <= hi).all() and 0.5 <= np.mean((lo <= split["y_test"]) & (split["y_test"] <= hi)) <= 1.0


@pytest.mark.parametrize("method", METHODS)
def test_save_load_same_predictions(method, models, split, tmp_path):
    model = models[method]
    model.save(tmp_path / "m")
    back = MultiDeviceModel.load(tmp_path / "m")
    assert type(back) is type(model) and back.get_params() == model.get_params() and back.tasks == model.tasks
    pred = model.adapt(split["sample"], {"latency_ms": split["y"]}, device=LEFT_OUT)
    again = back.adapt(split["sample"], {"latency_ms": split["y"]}, device=LEFT_OUT)
    expected = pred.predict(split["test"])["latency_ms"]
    np.testing.assert_array_equal(again.predict(split["test"])["latency_ms"], expected)
    pred.save(tmp_path / "p")
    loaded = Predictor.load(tmp_path / "p")
    assert type(loaded) is type(pred)
    np.testing.assert_array_equal(loaded.predict(split["test"])["latency_ms"], expected)
    np.testing.assert_array_equal(loaded.predict_interval(split["test"])["latency_ms"][1],
                                  pred.predict_interval(split["test"])["latency_ms"][1])


def test_bad_input(models, split, tmp_path):
    model = models["fewshot"]
    few = split["sample"][:2]
    with pytest.raises(UsageError, match="need at least 3"):
        model.adapt(few, {"latency_ms": split["y"][:2]})
    with pytest.raises(UsageError, match="no target has any label"):
        model.adapt(split["sample"], {"latency_ms": np.full(K, np.nan)})
    # NaN marks a missing label: the labelled rows are used, the same as passing them alone
    y = split["y"].copy()
    y[:3] = np.nan
    with_nan = model.adapt(split["sample"], {"latency_ms": y}).predict(split["test"][:5])["latency_ms"]
    alone = model.adapt(split["sample"][3:], {"latency_ms": y[3:]}).predict(split["test"][:5])["latency_ms"]
    np.testing.assert_array_equal(with_nan, alone)
    with pytest.raises(UsageError, match="not fitted"):
        get_multidevice("help").adapt(split["sample"], {"latency_ms": split["y"]})
    with pytest.raises(UsageError, match="devices"):
        get_multidevice("help").fit_devices({"a": (split["sample"], {"latency_ms": split["y"]})})
    with pytest.raises(UsageError, match="backbone"):
        get_predictor("help").fit(split["sample"], {"latency_ms": split["y"]}, backbone="help")
    with pytest.raises(ModelLoadError):
        MultiDeviceModel.load(tmp_path / "missing")


def test_fewshot_from_bases(split):
    bases = [get_predictor("flops").fit(g, t) for g, t in list(split["data"].values())[:3]]
    pool = next(iter(split["data"].values()))[0]
    assert len(pool) >= MIN_POOL
    pred = fit_fewshot_from_bases(split["sample"], {"latency_ms": split["y"]}, bases, pool=pool, **FAST)
    out = pred.predict(split["test"])["latency_ms"]
    assert np.isfinite(out).all() and (out > 0).all()
    with pytest.raises(UsageError, match="pool"):
        fit_fewshot_from_bases(split["sample"], {"latency_ms": split["y"]}, bases)


def test_hardware_table():
    assert len(HARDWARE) == 17
    gpu, cpu = hardware_vector("help:titanx/b32"), hardware_vector("help:gold_6240")
    assert gpu[0] == 1.0 and cpu[1] == 1.0 and gpu[6] > cpu[6]  # class one-hot; GPU peak above CPU peak
    assert np.allclose(hardware_vector("unknown:device")[:6], 1 / 6)
