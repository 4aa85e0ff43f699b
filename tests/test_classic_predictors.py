"""The FBNet lookup table, TVM's boosted trees and SPORE on synthetic labels built from NAS-Bench-201
networks (CIFAR-10, 32x32), where the truth is known.

- lut: latency = sum over nodes of a known cost per table entry (a per-op-type constant plus
  per-MAC and per-byte terms), no noise;
- gbt: latency = 1e-9 ms/MAC + 2e-9 ms/byte + 0.05 ms;
- spore: log latency = 0.1 + 0.4 z(macs) + 0.25 z(macs) z(nodes), z = standardised log1p.
"""

import json

import numpy as np
import pytest

from perfcast.analysis.liveness import read_graph
from perfcast.api import load
from perfcast.errors import UsageError
from perfcast.evaluation.metrics import spearman
from perfcast.predictors import Predictor, get_predictor
from perfcast.predictors.features import graph_features
from perfcast.predictors.lut import graph_entries
from perfcast.spaces.registry import sample_specs

OP_BASE_MS = {"Conv": 0.004, "BatchNormalization": 0.002, "Relu": 0.001, "AveragePool": 0.003, "Add": 0.0015}


@pytest.fixture(scope="module")
def graphs():
    return [load(s) for s in sample_specs("nb201", 160, 1)]


def _entry_cost(key: str, macs: float, nbytes: float) -> float:
    return OP_BASE_MS.get(key.split("|", 1)[0], 0.0005) + 2e-9 * macs + 1e-9 * nbytes


def _lut_latency(graph) -> float:
    e = graph_entries(graph)
    return float(sum(n * _entry_cost(k, m, b) for k, n, m, b in zip(e.keys, e.counts, e.macs, e.nbytes)))


def _mape(pred, y) -> float:
    return float(np.mean(np.abs(pred - y) / y))


def test_lut_recovers_entry_costs_and_predicts_held_out(graphs, tmp_path):
    y = np.array([_lut_latency(g) for g in graphs])
    lut = get_predictor("lut").fit(graphs[:100], {"latency_ms": y[:100]})
    assert _mape(lut.predict(graphs[100:])["latency_ms"], y[100:]) < 0.05
    table = lut.table()
    truth = {k: _entry_cost(k, m, b) for g in graphs[:100] for k, m, b in
             zip(graph_entries(g).keys, graph_entries(g).macs, graph_entries(g).nbytes)}
    assert set(table) == set(truth)
    # the five cells of a network are alike, so the labels pin down sums over the three stages:
    # of the AveragePool 3x3 entries (avg_pool_3x3 edges) and of ReLU -> Conv -> BN (conv edges)
    stages = ("1x16x32x32", "1x32x16x16", "1x64x8x8")
    pools = [k for k in table if k.startswith("AveragePool|") and "strides=1x1" in k]
    assert len(pools) == 3
    assert sum(table[k] for k in pools) == pytest.approx(sum(truth[k] for k in pools), rel=0.03)
    for kernel in ("1x1", "3x3"):
        edges = [k for s in stages for k in (
            f"Relu|{s}|{s}", f"BatchNormalization|{s}|{s}",
            f"Conv|{s}|{s}|kernel_shape={kernel}|strides=1x1|pads={'1x1x1x1' if kernel == '3x3' else '0x0x0x0'}"
            "|dilations=1x1|group=1")]
        assert sum(table[k] for k in edges) == pytest.approx(sum(truth[k] for k in edges), rel=0.03), kernel
    lut.save(tmp_path / "lut")
    meta = json.loads((tmp_path / "lut" / "predictor.json").read_text())
    assert set(json.loads(meta["model_text"]["latency_ms"]["keys"])) == set(table)
    assert Predictor.load(tmp_path / "lut").table() == table


def test_lut_flags_unseen_entries(graphs):
    y = np.array([_lut_latency(g) for g in graphs[:60]])
    lut = get_predictor("lut").fit(graphs[:60], {"latency_ms": y})
    other = load("nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
                 "?dataset=cifar100")  # a 100-way classifier: new Gemm entry
    assert set(graph_entries(other).keys) - set(lut.table())
    assert lut.in_domain([other, graphs[0]]).tolist() == [False, True]
    assert np.isfinite(lut.predict([other])["latency_ms"]).all()
    with pytest.raises(UsageError, match="ridge"):
        get_predictor("lut", ridge=-1.0).fit(graphs[:5], {"latency_ms": y[:5]})


def _linear_latency(graphs) -> np.ndarray:
    ft = graph_features(graphs)
    return 1e-9 * ft.column("macs") + 2e-9 * (ft.column("bytes_read") + ft.column("bytes_written")) + 0.05


def test_gbt_ranks_and_learns_from_updates(graphs, tmp_path):
    y = _linear_latency(graphs)
    order = np.argsort(y)
    low, high = order[:100], order[100:]
    high_new, high_test = high[::2], high[1::2]
    # TVM's plain model: without the linear prior the trees cannot reach beyond the training range
    gbt = get_predictor("gbt", prior="none").fit([graphs[i] for i in low], {"latency_ms": y[low]})
    again = get_predictor("gbt", prior="none").fit([graphs[i] for i in low], {"latency_ms": y[low]})
    assert again.models_["latency_ms"]["booster"] == gbt.models_["latency_ms"]["booster"]  # deterministic
    test_g = [graphs[i] for i in high_test]
    assert spearman(y[low], gbt.predict([graphs[i] for i in low])["latency_ms"], [str(i) for i in low]) > 0.95
    before = _mape(gbt.predict(test_g)["latency_ms"], y[high_test])
    gbt.update([graphs[i] for i in high_new], {"latency_ms": y[high_new]})
    after = _mape(gbt.predict(test_g)["latency_ms"], y[high_test])
    assert gbt.n_train_ == 130 and gbt.models_["latency_ms"]["train_y"].size == 130
    assert after < before / 2, (before, after)
    gbt.save(tmp_path / "gbt")
    back = Predictor.load(tmp_path / "gbt")
    np.testing.assert_array_equal(back.predict(test_g)["latency_ms"], gbt.predict(test_g)["latency_ms"])
    with pytest.raises(UsageError, match="num_leaves"):
        get_predictor("gbt", num_leaves=1).fit(test_g[:5], {"latency_ms": y[:5]})
    with pytest.raises(UsageError, match="prior"):
        get_predictor("gbt", prior="cubic").fit(test_g[:5], {"latency_ms": y[:5]})


def test_gbt_linear_prior_extrapolates_beyond_the_training_range(graphs, tmp_path):
    y = _linear_latency(graphs)
    order = np.argsort(y)
    low, high = order[:100], order[100:]
    test_g = [graphs[i] for i in high]
    errors = {}
    for prior in ("linear", "none"):
        gbt = get_predictor("gbt", prior=prior).fit([graphs[i] for i in low], {"latency_ms": y[low]})
        errors[prior] = _mape(gbt.predict(test_g)["latency_ms"], y[high])
    # the baseline is the planted linear law, so the trees have nothing left to correct
    assert errors["linear"] < 1e-6 < 0.1 < errors["none"], errors
    # "auto" (the default) keeps the variant with the lower cross-fitted error: here the prior, and its
    # residuals are the ones the intervals use
    noisy = y * np.exp(np.random.default_rng(0).normal(0.0, 0.02, y.size))
    gbt = get_predictor("gbt").fit([graphs[i] for i in low], {"latency_ms": noisy[low]})
    assert gbt.get_params()["prior"] == "auto" and gbt.models_["latency_ms"]["prior_coef"].shape == (3,)
    plain = get_predictor("gbt", prior="none").fit([graphs[i] for i in low], {"latency_ms": noisy[low]})
    assert gbt.residuals_["latency_ms"].mean() < plain.residuals_["latency_ms"].mean()
    assert _mape(gbt.predict(test_g)["latency_ms"], y[high]) < errors["none"] / 2
    gbt.save(tmp_path / "prior")
    back = Predictor.load(tmp_path / "prior")
    np.testing.assert_array_equal(back.predict(test_g)["latency_ms"], gbt.predict(test_g)["latency_ms"])
    back.update(test_g[:10], {"latency_ms": noisy[high[:10]]})  # keeps the chosen prior
    assert back.models_["latency_ms"]["prior_coef"].shape == (3,)


def test_gbt_auto_prior_keeps_the_plain_trees_where_the_baseline_misleads(graphs):
    # latency set by the node count alone, against which a MACs-and-bytes baseline is noise
    ft = graph_features(graphs)
    y = 0.01 * ft.column("nodes") * np.exp(np.sin(np.log1p(ft.column("macs"))))
    gbt = get_predictor("gbt").fit(graphs[:150], {"latency_ms": y[:150]})
    linear = get_predictor("gbt", prior="linear").fit(graphs[:150], {"latency_ms": y[:150]})
    plain = get_predictor("gbt", prior="none").fit(graphs[:150], {"latency_ms": y[:150]})
    chosen = "linear" if "prior_coef" in gbt.models_["latency_ms"] else "none"
    better = "linear" if linear.residuals_["latency_ms"].mean() < plain.residuals_["latency_ms"].mean() else "none"
    assert chosen == better
    reference = linear if chosen == "linear" else plain
    np.testing.assert_array_equal(gbt.residuals_["latency_ms"], reference.residuals_["latency_ms"])


def test_spore_selects_few_terms_and_finds_the_planted_one(graphs, tmp_path):
    ft = graph_features(graphs)
    z = {c: np.log1p(ft.column(c)[:100]) for c in ("macs", "nodes")}
    mean = {c: v.mean() for c, v in z.items()}
    std = {c: v.std() for c, v in z.items()}
    zs = {c: (np.log1p(ft.column(c)) - mean[c]) / std[c] for c in z}
    y = np.exp(0.1 + 0.4 * zs["macs"] + 0.25 * zs["macs"] * zs["nodes"])
    sp = get_predictor("spore").fit(graphs[:100], {"latency_ms": y[:100]})
    model = sp.models_["latency_ms"]
    terms = dict(sp.selected_terms())
    assert len(terms) < 0.25 * model["n_terms"][0]
    assert terms["z(macs) * z(nodes)"] > 0.1  # params nearly copies macs in NAS-Bench-201: shared weight
    assert _mape(sp.predict(graphs[100:])["latency_ms"], y[100:]) < 0.03
    linear = get_predictor("spore", degree=1).fit(graphs[:100], {"latency_ms": y[:100]})
    assert _mape(linear.predict(graphs[100:])["latency_ms"], y[100:]) > 0.05
    sp.save(tmp_path / "spore")
    meta = json.loads((tmp_path / "spore" / "predictor.json").read_text())
    assert {t["term"] for t in json.loads(meta["model_text"]["latency_ms"]["terms"])["terms"]} == set(terms)
    with pytest.raises(UsageError, match="degree"):
        get_predictor("spore", degree=0).fit(graphs[:5], {"latency_ms": y[:5]})


CUT_OFF = ("nb201:|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
           "nb201:|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|none~2|")


@pytest.mark.parametrize("reading", [0, 1, 2])
def test_lut_learns_whether_the_device_folds(graphs, reading, tmp_path):
    """A device that runs every operator, one that runs the folded graphs (a cut-off network costs
    nothing) and one that runs the pruned graphs (dead-code elimination alone: the operators that
    read a zero still run): the table learns which from end-to-end labels, and prices each exactly."""
    pool = graphs + [load(s) for s in CUT_OFF]
    y = np.array([_lut_latency(read_graph(g, reading)) for g in pool]) + 0.002  # + a launch
    test = list(range(120, len(pool)))
    train = list(range(120))
    lut = get_predictor("lut").fit([pool[i] for i in train], {"latency_ms": y[train]})
    assert float(lut.models_["latency_ms"]["folded"][0]) == float(reading)
    pred = lut.predict([pool[i] for i in test])["latency_ms"]
    # pruned graphs hold a few operators on a zero that no training graph had: priced by their type's rate
    assert _mape(pred, y[test]) < (1e-6 if reading < 2 else 1e-3)
    assert lut.in_domain([pool[i] for i in test[:-2]]).mean() > 0.9  # the entries it priced are known
    if reading == 1:
        assert np.allclose(pred[-2:], 0.002)  # the cut-off networks cost the launch alone
    if reading == 2:
        assert (pred[-2:] > 0.002).all()  # the last cell's operators on a zero still run
    again = Predictor.load(lut.save(tmp_path / "lut"))
    assert np.allclose(again.predict([pool[i] for i in test])["latency_ms"], pred, rtol=1e-12)


def test_flops_baseline_on_a_folding_device_predicts_cut_off_networks(graphs):
    """Labels linear in the MACs that still run after folding: the plain MACs fit collapses on the
    cut-off networks (relative error), the folded one recovers the line."""
    pool = graphs + [load(s) for s in CUT_OFF]
    live = graph_features(pool).column("live_macs")
    y = 2e-9 * live + 0.01
    model = get_predictor("flops").fit(pool[:120], {"latency_ms": y[:120]})
    assert float(model.models_["latency_ms"]["folded"][0]) == 1.0
    pred = model.predict(pool[120:])["latency_ms"]
    assert _mape(pred, y[120:]) < 1e-6
