"""Constant folding and dead-code elimination as predictors see it (perfcast.analysis.liveness)."""

from perfcast import api
from perfcast.analysis import analyze_graph
from perfcast.analysis.liveness import folded_graph, pruned_graph, read_graph, running_nodes
from perfcast.ir.builder import GraphBuilder
from perfcast.predictors.features import COLUMNS, graph_stats

STEM_REDUCTION_HEAD_MACS = 7_783_040  # NB201 CIFAR-10 network without cell convolutions


def _running_macs(graph) -> int:
    costs = analyze_graph(graph).node_costs
    return sum(c.macs for c, runs in zip(costs, running_nodes(graph)) if runs and c is not None)


def test_cut_off_network_runs_nothing():
    g = api.load("nb201:|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert not any(running_nodes(g))
    assert graph_stats(g).row[COLUMNS.index("live_macs")] == 0
    assert graph_stats(g).row[COLUMNS.index("macs")] == STEM_REDUCTION_HEAD_MACS


def test_branch_multiplied_by_zero_is_dead():
    dead = api.load("nb201:|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert analyze_graph(dead).macs > STEM_REDUCTION_HEAD_MACS
    assert _running_macs(dead) == STEM_REDUCTION_HEAD_MACS
    full = api.load("nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                    "nor_conv_3x3~2|")
    assert all(running_nodes(full)) and _running_macs(full) == analyze_graph(full).macs


def test_constant_subgraph_folds_and_bias_keeps_zero_from_propagating():
    b = GraphBuilder("t")
    x = b.input((1, 4, 8, 8))
    zero = b.mul(x, b.scalar("zero", 0.0))
    biased = b.conv(zero, 4, 3, bias=True)  # conv(0) + bias: a constant, not zero
    y = b.add(b.act(x, "relu"), b.act(biased, "relu"))
    b.output(y)
    g = b.build()
    ran = [n for n, r in zip(g.nodes, running_nodes(g)) if r]
    assert [n.op_type for n in ran] == ["Relu", "Add"]
    assert ran[0].inputs == (x,)  # the ReLU of the input runs; the ReLU of the constant is folded


def test_zoo_networks_run_every_operator():
    g = api.load("zoo:resnet18")
    assert all(running_nodes(g))


def test_folded_graph_keeps_what_runs():
    dead = api.load("nb201:|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    folded = folded_graph(dead)
    assert len(folded.nodes) == sum(running_nodes(dead)) < len(dead.nodes)
    assert analyze_graph(folded).macs == STEM_REDUCTION_HEAD_MACS
    assert folded.name == dead.name and folded.inputs == dead.inputs and folded.outputs == dead.outputs
    assert all(running_nodes(folded))
    assert folded_graph(dead) is folded  # cached per graph
    cut = folded_graph(api.load("nb201:|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    assert len(cut.nodes) == 0 and all(cut.tensors[o].constant for o in cut.outputs)
    full = api.load("zoo:resnet18")
    assert folded_graph(full) is full


def test_pruned_graph_drops_unused_branches_but_runs_operators_on_a_zero():
    """Dead-code elimination alone: a node read only through a ``none`` edge is dropped, as in
    folding, but a convolution of a zero still runs, and a cut-off network keeps the last cell."""
    dead = api.load("nb201:|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    # node 1 (a convolution) and node 2 (zero) reach the output only through `none` edges
    assert len(folded_graph(dead).nodes) == len(pruned_graph(dead).nodes) < len(dead.nodes)
    assert pruned_graph(dead) is pruned_graph(dead)  # cached per graph
    zero_fed = api.load("nb201:|none~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|"
                        "nor_conv_1x1~2|")
    runs_pruned = running_nodes(zero_fed, fold_constants=False)
    assert sum(running_nodes(zero_fed)) < sum(runs_pruned) < len(zero_fed.nodes)
    # what pruning keeps and folding drops is the ReLU-conv-BN chain that reads node 1's zero
    extra = [n.op_type for n, p, f in zip(zero_fed.nodes, runs_pruned, running_nodes(zero_fed)) if p and not f]
    assert set(extra) == {"Relu", "Conv", "BatchNormalization"} and len(extra) % 3 == 0
    cut = api.load("nb201:|none~0|+|none~0|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|avg_pool_3x3~2|")
    assert len(folded_graph(cut).nodes) == 0
    kept = pruned_graph(cut)
    assert 0 < len(kept.nodes) < 20 and kept.nodes[-1].op_type == cut.nodes[-1].op_type  # last cell and head
    full = api.load("zoo:resnet18")
    assert pruned_graph(full) is full and read_graph(full, 2) is full
    assert read_graph(dead, 0) is dead and read_graph(dead, 1) is folded_graph(dead)
