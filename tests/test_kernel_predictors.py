"""The kernel-level (nn-Meter), op-wise (Li et al.) and Halide predictors on the local dataset
(data/local-ort-cpu: onnxruntime on this CPU, measured, with kernel profiles), and fusion rules
learned from its profiles.

Accuracy is checked on held-out networks of the spaces seen in training: the networks of four
spaces (kws, sr, rnn, ofa), split 80/20 by content hash with a fixed seed; every method must beat
the MACs-and-bytes baseline ("flops") on the same split.
"""

from pathlib import Path

import numpy as np
import pytest

from perfcast.ir.builder import GraphBuilder
from perfcast.predictors import Predictor, get_predictor
from perfcast.predictors.features import graph_stats
from perfcast.predictors.kernel import graph_kernels
from perfcast.predictors.profiles import FusionRules, group_kernels, learn_rules, load_local_dataset

DATA = Path(__file__).resolve().parent.parent / "data" / "local-ort-cpu"
SPACES = ("kws", "sr", "rnn", "ofa")
FAST = {"halide": {"steps": 150}}


@pytest.fixture(scope="module")
def local():
    d = load_local_dataset(DATA, spaces=SPACES)
    hashes = sorted({g.content_hash for g in d.graphs})
    held = set(np.random.default_rng(0).permutation(hashes)[: len(hashes) // 5].tolist())
    test = np.array([g.content_hash in held for g in d.graphs])
    return d, ~test, test


def _pick(seq, mask):
    return [x for x, keep in zip(seq, mask) if keep]


def _mape(pred, y) -> float:
    return float(np.mean(np.abs(pred - y) / y))


@pytest.fixture(scope="module")
def rules(local):
    d, _, _ = local
    return learn_rules([graph_stats(g).nodes for g in d.graphs], d.kernel_profiles)


def test_fusion_rules_learned_from_profiles(local, rules):
    d, _, _ = local
    assert sum(p is not None for p in d.kernel_profiles) >= 100
    learned = set(rules.rules())
    # onnxruntime folds BatchNorm into Conv and fuses the activation that follows (FusedConv)
    assert {("Conv", "BatchNormalization"), ("BatchNormalization", "Relu"), ("BatchNormalization", "HardSwish"),
            ("Conv", "HardSigmoid")} <= learned
    fused, seen = rules.pairs[("Conv", "BatchNormalization")]
    assert fused == seen >= 100
    # a ReLU feeding a convolution is seen often and not fused; GRU -> Transpose never
    assert rules.pairs[("Relu", "Conv")][1] >= rules.min_support and ("Relu", "Conv") not in learned
    assert rules.pairs[("GRU", "Transpose")][0] == 0 and ("GRU", "Transpose") not in learned
    # a pair the data never shows is no rule
    assert ("Softmax", "Conv") not in rules.pairs and not rules.fuses("Softmax", "Conv")
    back = FusionRules.from_text(rules.to_text())
    assert back.rules() == rules.rules() and back.vanishing() == rules.vanishing()


def _small_graph():
    """conv -> bn -> relu -> conv -> bn -> add(with the relu output) -> relu."""
    b = GraphBuilder("block")
    x = b.input((1, 8, 8, 8))
    r = b.act(b.bn(b.conv(x, 8, 3)), "relu")
    y = b.bn(b.conv(r, 8, 3))
    b.output(b.act(b.add(y, r), "relu"))
    return b.build()


def test_grouping_of_a_small_graph():
    g = _small_graph()
    rules = FusionRules({("Conv", "BatchNormalization"): (9, 10), ("BatchNormalization", "Relu"): (6, 10),
                         ("BatchNormalization", "Add"): (5, 5), ("Add", "Relu"): (2, 10),
                         ("Relu", "Conv"): (1, 10)}, {}, min_support=5, min_share=0.5)
    k = group_kernels(graph_stats(g).nodes, rules)
    # the first ReLU has two consumers, so it ends its kernel; Add -> Relu is fused in only 2 of 10
    assert k.types == ("Conv+BatchNormalization+Relu", "Conv+BatchNormalization+Add", "Relu")
    assert k.groups == ((0, 1, 2), (3, 4, 5), (6,))
    units = graph_kernels(graph_stats(g), rules)
    macs = 8 * 8 * 8 * 8 * 9
    np.testing.assert_array_equal(units.features[:, 0], [macs, macs, 0])
    # the fused kernel reads the input and the weights, writes one 8x8x8 output: the BN and ReLU
    # outputs it computes internally are neither written nor read back
    weights = 8 * 8 * 9 * 4 + 4 * 8 * 4  # conv weight + BN scale, bias, mean, variance
    assert units.features[0, 2] == 4 * (8 * 8 * 8) * 2 + weights
    none = group_kernels(graph_stats(g).nodes, FusionRules())
    assert none.groups == tuple((i,) for i in range(7))


@pytest.mark.parametrize("name", ["kernel", "opwise", "halide"])
def test_beats_flops_on_held_out_networks(name, local, tmp_path):
    d, train, test = local
    y = d.targets["latency_ms"]
    baseline = get_predictor("flops").fit(_pick(d.graphs, train), {"latency_ms": y[train]})
    base_mape = _mape(baseline.predict(_pick(d.graphs, test))["latency_ms"], y[test])
    pred = get_predictor(name, **FAST.get(name, {})).fit(
        _pick(d.graphs, train), {"latency_ms": y[train]}, kernel_profiles=_pick(d.kernel_profiles, train))
    out = pred.predict(_pick(d.graphs, test))["latency_ms"]
    assert _mape(out, y[test]) < base_mape
    pred.save(tmp_path / name)
    back = Predictor.load(tmp_path / name)
    np.testing.assert_array_equal(back.predict(_pick(d.graphs, test))["latency_ms"], out)


@pytest.mark.parametrize("name", ["kernel", "opwise"])
def test_end_to_end_labels_only(name, local, rules):
    d, train, test = local
    y = d.targets["latency_ms"]
    plain = get_predictor(name).fit(_pick(d.graphs, train), {"latency_ms": y[train]})
    assert plain.rules().rules() == []
    assert plain.models_["latency_ms"]["mode"] == "aggregate"
    informed = get_predictor(name, fusion_rules=rules.to_text()).fit(_pick(d.graphs, train), {"latency_ms": y[train]})
    assert informed.rules().rules() == rules.rules()
    baseline = get_predictor("flops").fit(_pick(d.graphs, train), {"latency_ms": y[train]})
    base_mape = _mape(baseline.predict(_pick(d.graphs, test))["latency_ms"], y[test])
    for pred in (plain, informed):
        assert _mape(pred.predict(_pick(d.graphs, test))["latency_ms"], y[test]) < base_mape


def test_profiles_are_validated(local):
    d, train, _ = local
    graphs = _pick(d.graphs, train)[:5]
    y = {"latency_ms": d.targets["latency_ms"][train][:5]}
    from perfcast.errors import UsageError

    with pytest.raises(UsageError, match="kernel_profiles"):
        get_predictor("kernel").fit(graphs, y, kernel_profiles=[None] * 4)
    with pytest.raises(UsageError, match=r"kernel_profiles\[0\]\[0\]"):
        get_predictor("kernel").fit(graphs, y, kernel_profiles=[[{"node_names": ["a"], "duration_us": -1}]] + [None] * 4)
    with pytest.raises(UsageError, match="fusion_rules"):
        get_predictor("opwise", fusion_rules="{}").fit(graphs, y)


def test_a_kernel_fed_only_by_constants_has_no_negative_traffic(tmp_path):
    """A learned query (a parameter expanded to the batch, then through a linear layer, as in a
    Perceiver exported with a static batch) is a MatMul + Add kernel whose inputs are all computed
    from constants: nothing outside it is read, and its external traffic and element counts are zero or
    more, never negative (log features of a negative count are NaN)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from perfcast import api

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in
             (("latent", rng.normal(size=(1, 4, 16))), ("w", rng.normal(size=(16, 16))), ("b", rng.normal(size=16)))]
    inits.append(numpy_helper.from_array(np.array([1, 4, 16], np.int64), "target"))  # the batch, exported static
    nodes = [helper.make_node("Expand", ["latent", "target"], ["queries"]),
             helper.make_node("MatMul", ["queries", "w"], ["projected"]),
             helper.make_node("Add", ["projected", "b"], ["query"]),
             helper.make_node("Add", ["x", "query"], ["y"])]
    graph = helper.make_graph(nodes, "learned_query", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "q.onnx"))
    g = api.load(tmp_path / "q.onnx")
    rules = FusionRules({("MatMul", "Add"): (9, 10)}, {}, min_support=5, min_share=0.5)
    units = graph_kernels(graph_stats(g), rules)
    assert "MatMul+Add" in units.types
    assert (units.features >= 0).all()


def test_halide_terms_without_least_squares_weight_start_small_for_every_network():
    from perfcast.predictors.halide import _modest_scale

    # two networks, 100x apart: a term worth a tenth of the median label would be 5x the small one
    columns = np.array([[1.0, 10.0, 0.0], [1.0, 30.0, 0.0]])
    y = np.array([0.01, 1.0])
    scale = _modest_scale(columns, y)
    start = columns * scale
    assert np.all(start <= 0.1 * y[:, None] + 1e-15)
    np.testing.assert_allclose(start[0, :2], [0.001, 0.001])
    # a column that is zero in every training network gets no weight, not an unbounded one
    assert scale[2] == 0.0


def test_halide_node_terms_start_at_the_median_network_and_never_unbounded():
    from perfcast.predictors.halide import _typical_scale

    columns = np.array([[10.0, 0.0, 0.0], [30.0, 0.0, 4.0], [20.0, 0.0, 0.0]])
    y = np.array([1.0, 3.0, 2.0])
    scale = _typical_scale(columns, y)
    assert scale[0] == pytest.approx(0.1 * 2.0 / 20.0)
    # a column that is zero in most networks: the modest start (a tenth of 3.0 over 4.0), not
    # the median label over a zero median; a column zero everywhere gets no weight
    assert scale[2] == pytest.approx(0.1 * 3.0 / 4.0) and scale[1] == 0.0
