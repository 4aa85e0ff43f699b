"""Graph features (perfcast.predictors.graphdata), the compressed message-passing plan and the
graph-learning predictors: cs230, lstm_gbm, brpnas, tpu_cost and perfsage.

The structural target: a NAS-Bench-201 network's latency is a cost per operator of its kind plus
a cost per edge from an AveragePool to an Add (a pooled branch entering a node sum), which totals
of MACs and bytes do not express; every predictor must learn it better than the flops baseline.
"""

import math

import numpy as np
import pytest

from perfcast.api import load
from perfcast.ir.builder import GraphBuilder
from perfcast.predictors import Predictor, get_predictor
from perfcast.predictors import gnn
from perfcast.predictors.features import N_SUMMARY, graph_stats
from perfcast.predictors.graphdata import KIND_INDEX, KINDS, NODE_FEATURES, NUMERIC, NUMERIC_START, batch, graph_data
from perfcast.predictors.graphdata import stats_data as graph_data_of
from perfcast.spaces.registry import sample_specs

GRAPH_PREDICTORS = ("cs230", "lstm_gbm", "brpnas", "tpu_cost", "perfsage")
KIND_COST = {"Conv": 0.004, "BatchNormalization": 0.001, "Relu": 0.0005, "Add": 0.002, "AveragePool": 0.003}
PAIR = ("AveragePool", "Add")
PAIR_COST = 0.01
N_TRAIN, N_TEST = 150, 100


def _small_graph():
    """input 1x3x8x8 -> Conv(4, 3x3) -> Relu -> Add(relu, conv) -> GlobalAveragePool -> Flatten -> Gemm(10)."""
    b = GraphBuilder("small")
    x = b.input((1, 3, 8, 8))
    c = b.conv(x, 4, 3)
    r = b.op("Relu", [c])
    b.linear(b.flatten(b.global_avgpool(b.add(r, c))), 10)
    return b.build()


def test_small_graph_to_data():
    g = _small_graph()
    d = graph_data(g)
    kinds = [n.op_type for n in g.nodes]
    assert kinds == ["Conv", "Relu", "Add", "GlobalAveragePool", "Flatten", "Gemm"]
    assert d.num_nodes == len(g.nodes) == 6
    assert d.x.shape == (6, len(NODE_FEATURES)) and d.u.shape == (1, N_SUMMARY)
    assert d.kind.tolist() == [KIND_INDEX[k] for k in kinds]
    assert (d.x[:, :len(KINDS)].argmax(dim=1) == d.kind).all()
    # producer -> consumer pairs: conv->relu, conv->add, relu->add, add->gap, gap->flatten, flatten->gemm
    edges = sorted(map(tuple, d.edge_index.T.tolist()))
    assert edges == [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (4, 5)]
    sizes = {tuple(e): a for e, a in zip(d.edge_index.T.tolist(), d.edge_attr.tolist())}
    for (j, i), elems in {(0, 1): 4 * 8 * 8, (2, 3): 4 * 8 * 8, (3, 4): 4, (4, 5): 4}.items():
        assert sizes[(j, i)] == pytest.approx([math.log1p(elems), math.log1p(4 * elems)], rel=1e-6)
    conv = dict(zip(NUMERIC, d.x[0, NUMERIC_START:NUMERIC_START + len(NUMERIC)].tolist()))
    assert conv["kernel"] == pytest.approx(math.log1p(9))
    assert conv["macs"] == pytest.approx(math.log1p(4 * 64 * 27), rel=1e-6)
    assert conv["out_channels"] == pytest.approx(math.log1p(4))
    assert graph_data(g) is graph_data(_small_graph())  # cached by content hash


def test_batch_and_conversion_of_nas_bench_201():
    graphs = [load(s) for s in sample_specs("nb201", 4, 0)]
    datas = [graph_data(g) for g in graphs]
    b = batch(datas)
    assert b.num_graphs == 4 and b.num_nodes == sum(len(g.nodes) for g in graphs)
    for g, d in zip(graphs, datas):
        table = graph_stats(g).nodes
        assert d.num_nodes == len(table)
        assert d.edge_index.shape[1] == sum(len(p) for p in table.producers)


@pytest.fixture(scope="module")
def structural():
    graphs = [load(s) for s in sample_specs("nb201", N_TRAIN + N_TEST, 3)]
    y = []
    for g in graphs:
        t = graph_stats(g).nodes
        pairs = sum(t.kinds[j] == PAIR[0] and t.kinds[i] == PAIR[1] for i, ps in enumerate(t.producers) for j in ps)
        y.append(0.05 + sum(KIND_COST.get(k, 0.0) for k in t.kinds) + PAIR_COST * pairs)
    return graphs, np.array(y)


def _full_plan(stats, layers):
    """The plan without compression: every node its own class at every level."""
    datas = [graph_data_of(s) for s in stats]
    sizes = np.array([d.num_nodes for d in datas])
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    src, dst = np.hstack([d.edge_index.numpy() + o for d, o in zip(datas, offsets)])
    attr = np.vstack([d.edge_attr.numpy() for d in datas])
    n = int(sizes.sum())
    degree = np.bincount(dst, minlength=n).astype(np.float32)
    every = np.arange(n)
    members = (np.repeat(np.arange(len(datas)), sizes), every, np.ones(n, np.float32))
    levels = [gnn.Level(every, src, dst, attr, degree) for _ in range(layers)]
    return gnn.Plan(np.vstack([d.x.numpy() for d in datas]), np.concatenate([d.kind.numpy() for d in datas]),
                    degree, levels, [members] * (layers + 1), sizes, np.vstack([d.u.numpy() for d in datas]))


@pytest.mark.parametrize("conv, readout", [("sage", "mean"), ("gcn", "global"), ("sage", "node_sum")])
def test_compressed_plan_equals_the_full_graphs(structural, conv, readout):
    """Message passing over node classes gives the outputs of message passing over every node."""
    import torch

    stats = [graph_stats(g) for g in structural[0][:12]]
    plan = gnn.make_plan(stats, 3)
    assert plan.levels[-1].self_index.size < sum(plan.nodes) / 3  # NAS-Bench-201 repeats its cells
    model = {"x_mean": 0.0, "x_std": 1.0, "u_mean": 0.0, "u_std": 1.0}
    net = gnn.build_net(conv, readout, 3, 16, 4, 1, True, N_SUMMARY, 0)
    with torch.no_grad():
        compressed = net(gnn._torch_plan(plan, model)).numpy()
        full = net(gnn._torch_plan(_full_plan(stats, 3), model)).numpy()
    np.testing.assert_allclose(compressed, full, rtol=1e-5)


def _mape(pred, y):
    return float(np.mean(np.abs(pred - y) / y))


@pytest.mark.parametrize("name", GRAPH_PREDICTORS)
def test_learns_structure_better_than_flops(name, structural):
    graphs, y = structural
    stats = [graph_stats(g) for g in graphs]
    train, test = stats[:N_TRAIN], stats[N_TRAIN:]
    baseline = get_predictor("flops")
    flops_error = _mape(baseline._predict_target("latency_ms", baseline._fit_target("latency_ms", train, y[:N_TRAIN]),
                                                 test), y[N_TRAIN:])
    pred = get_predictor(name)
    model = pred._fit_target("latency_ms", train, y[:N_TRAIN])
    error = _mape(pred._predict_target("latency_ms", model, test), y[N_TRAIN:])
    assert error < 0.5 * flops_error, (error, flops_error)


def test_save_load_identical_and_bad_parameters(structural, tmp_path):
    graphs, y = structural
    pred = get_predictor("brpnas", hidden=16, steps=20).fit(graphs[:40], {"latency_ms": y[:40]})
    back = Predictor.load(pred.save(tmp_path / "p"))
    np.testing.assert_array_equal(back.predict(graphs[40:60])["latency_ms"], pred.predict(graphs[40:60])["latency_ms"])
    from perfcast.errors import UsageError

    for name, params in (("brpnas", {"hidden": 0}), ("tpu_cost", {"embed": -1}), ("cs230", {"flat_l2": -1.0}),
                         ("lstm_gbm", {"chunk": 0}), ("perfsage", {"learning_rate": 2.0})):
        with pytest.raises(UsageError):
            get_predictor(name, **params).fit(graphs[:5], {"latency_ms": y[:5]})


def test_masked_loss_ignores_missing_labels():
    import torch

    out = torch.tensor([[0.5, -1.0], [0.2, 3.0], [1.0, 0.0]], requires_grad=True)
    y = torch.tensor([[2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    mask = torch.tensor([[True, False], [True, True], [False, False]])
    mean, std, scale = torch.zeros(2), torch.ones(2), torch.ones(2)
    loss = gnn._loss(torch, "log", out, y, mask, mean, std, scale)
    expected = ((0.5 - math.log(2.0)) ** 2 + (0.2 - math.log(3.0)) ** 2 + (3.0 - 0.0) ** 2) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert out.grad[~mask].abs().max() == 0.0


def test_perfsage_learns_a_sparsely_labelled_target_jointly(structural):
    graphs, y = structural
    energy = 2.5 * y[:N_TRAIN] * (1 + 0.3 * (np.arange(N_TRAIN) % 2))  # the even ones are labelled
    energy[1::2] = np.nan
    energy[::6] = np.nan  # and not every even one: 50 labels of 150
    pred = get_predictor("perfsage").fit(graphs[:N_TRAIN], {"latency_ms": y[:N_TRAIN], "energy_mj": energy})
    assert pred.targets_ == ["latency_ms", "energy_mj"]
    assert pred.residuals_["energy_mj"].size == 50 and pred.residuals_["latency_ms"].size == N_TRAIN
    out = pred.predict(graphs[N_TRAIN:])
    assert _mape(out["latency_ms"], y[N_TRAIN:]) < 0.05
    assert _mape(out["energy_mj"], 2.5 * y[N_TRAIN:]) < 0.08
    # one network: both targets hold the same shared weights, each its own head
    shared = [k for k in pred.models_["latency_ms"] if k.startswith(gnn.WEIGHT_PREFIX)]
    for k in shared:
        np.testing.assert_array_equal(pred.models_["latency_ms"][k], pred.models_["energy_mj"][k])
    assert [float(pred.models_[t]["head"][0]) for t in pred.targets_] == [0.0, 1.0]
