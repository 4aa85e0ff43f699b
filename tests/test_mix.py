"""perfcast's own single-device predictor (``mix``): the members' weights in and out of domain."""

import numpy as np
import pytest

from perfcast.api import load
from perfcast.errors import UsageError
from perfcast.predictors import Predictor, get_predictor
from perfcast.predictors.features import graph_features, graph_stats
from perfcast.predictors.mix import simplex_weights, sparse_simplex_weights
from perfcast.spaces.registry import sample_specs


def test_simplex_weights_recover_a_geometric_mix_and_ignore_a_few_gross_errors():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=400) for _ in range(3))
    t = 0.3 * a + 0.7 * b
    w = simplex_weights(np.column_stack([a, b, c]), t)
    np.testing.assert_allclose(w, [0.3, 0.7, 0.0], atol=1e-6)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    # member 0 is exact on 98 % of the rows and off by a factor of e^5 on 2 % of them; member 1 is off
    # by a factor of e^0.2 everywhere: least absolute error keeps member 0 alone, least squares would
    # give member 1 weight (the gross errors' squares outweigh the small ones)
    good = t + np.where(np.arange(400) < 8, 5.0, 0.0)
    w = simplex_weights(np.column_stack([good, t + 0.2]), t)
    assert w[0] == pytest.approx(1.0)
    # members that all err alike: any split is optimal, and the weights still sum to one
    w = simplex_weights(np.column_stack([t + 0.5, t + 0.5]), t)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()


@pytest.fixture(scope="module")
def two_families():
    """NAS-Bench-201 and once-for-all networks; planted: an OFA network runs twice as slow per MAC
    (a step between families that trees learn and a line through the origin cannot), and every
    OFA network has more MACs than every NAS-Bench-201 network (so a family left out lies outside
    the other's range, where trees cannot follow)."""
    specs = sample_specs("nb201", 40, 5) + sample_specs("ofa", 40, 5)
    graphs = [load(s) for s in specs]
    macs = graph_features(graphs).column("macs")
    slow = np.r_[np.ones(40), 2.0 * np.ones(40)]
    latency = 1e-9 * macs * slow * (1.0 + 0.03 * np.random.default_rng(2).standard_normal(80))
    return graphs, latency


def test_mix_trusts_trees_in_domain_and_the_line_on_a_new_family(two_families, tmp_path):
    graphs, latency = two_families
    members = {"members": ["gbt", "flops"], "member_params": {"gbt": {"prior": "none"}}}
    mix = get_predictor("mix", **members).fit(graphs, {"latency_ms": latency})
    weights = mix.weights("latency_ms")
    assert weights["in"]["gbt"] > 0.5  # the step between families: only the trees see it
    assert weights["out"]["flops"] > 0.5  # a left-out family lies beyond every leaf of the trees
    assert sum(weights["in"].values()) == pytest.approx(1.0) and sum(weights["out"].values()) == pytest.approx(1.0)

    # networks of a family in neither space, far larger than any trained one: out of domain, the mix
    # keeps scaling with the work where the trees stop at their largest leaf
    big = [g for g in (load(s) for s in sample_specs("imgcls", 40, 1))
           if graph_features([g]).column("macs")[0] > 1.5e9][:5]
    assert len(big) >= 3
    truth = 1.5e-9 * graph_features(big).column("macs")
    trees = get_predictor("gbt", prior="none").fit(graphs, {"latency_ms": latency})
    assert not mix.in_domain(big).any()
    mix_error = np.abs(np.log(mix.predict(big)["latency_ms"] / truth))
    tree_error = np.abs(np.log(trees.predict(big)["latency_ms"] / truth))
    assert np.median(mix_error) < 0.5 * np.median(tree_error)

    # in domain it is as accurate as the trees on networks of the trained families
    test = [load(s) for s in sample_specs("nb201", 20, 50)]
    truth = 1e-9 * graph_features(test).column("macs")
    assert mix.in_domain(test).mean() >= 0.9
    mape = np.mean(np.abs(mix.predict(test)["latency_ms"] / truth - 1.0))
    assert mape <= 1.2 * np.mean(np.abs(trees.predict(test)["latency_ms"] / truth - 1.0)) + 0.01

    # the gate is part of the model: a copy of the model alone (as a transfer device holds it)
    # predicts the same, and the saved predictor too
    alone = mix.predict_model("latency_ms", mix.models_["latency_ms"], [graph_stats(g) for g in big + test])
    np.testing.assert_allclose(alone, mix.predict(big + test)["latency_ms"])
    mix.save(tmp_path / "mix")
    back = Predictor.load(tmp_path / "mix")
    np.testing.assert_array_equal(back.predict(big + test)["latency_ms"], mix.predict(big + test)["latency_ms"])


@pytest.mark.parametrize("params, problem", [
    ({"members": []}, "members"),
    ({"members": ["gbt", "gbt"]}, "twice"),
    ({"members": ["gbt", "mix"]}, "cannot hold a mix"),
    ({"members": ["gbt", "nope"]}, "unknown name"),
    ({"member_params": {"paleo": {}}}, "member_params"),
    ({"member_params": {"gbt": {"n_estimators": 0}}}, "n_estimators"),
    ({"gate_rows": 1}, "gate_rows"),
    ({"min_weight": 0.7}, "min_weight"),
])
def test_bad_mix_parameters_are_usage_errors(two_families, params, problem):
    graphs, latency = two_families
    with pytest.raises(UsageError, match=problem):
        get_predictor("mix", **{"members": ["gbt", "flops"], **params}).fit(graphs[:10], {"latency_ms": latency[:10]})


def test_members_under_the_least_weight_are_dropped_and_the_rest_refitted():
    rng = np.random.default_rng(3)
    t = rng.normal(size=300)
    # member 2 carries a little signal the others miss; kept at min_weight 0, dropped at 0.1
    logs = np.column_stack([t + 0.3 * rng.normal(size=300), t + 0.3 * rng.normal(size=300),
                            t + 2.0 * rng.normal(size=300)])
    full = simplex_weights(logs, t)
    assert 0 < full[2] < 0.1
    sparse = sparse_simplex_weights(logs, t, 0.1)
    assert sparse[2] == 0 and sparse.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(sparse[:2], simplex_weights(logs[:, :2], t), atol=1e-9)
    np.testing.assert_allclose(sparse_simplex_weights(logs, t, 0.0), full)


def test_a_gate_of_a_few_drawn_graphs_admits_the_training_graphs_and_knows_every_family(two_families):
    from perfcast.predictors.base import family_code, fit_domain, graph_family, in_domain_mask
    from perfcast.predictors.mix import gate_domain

    graphs, _ = two_families
    stats = [graph_stats(g) for g in graphs]
    gate = gate_domain(stats, 12, 0)
    assert gate["train"].shape[0] == 12
    # the threshold is set on the 68 graphs left out of the draw: nearly all of them are inside
    assert in_domain_mask(gate, stats).mean() >= 0.95
    # the draw's own leave-one-out threshold (a sparser set) is another number
    assert gate["threshold"][0] != fit_domain([stats[i] for i in range(12)])["threshold"][0]
    # every family is known, also one the draw may miss (one OFA graph among 41); a third is new
    assert graph_family(stats[40]) == "ofa"
    few = gate_domain(stats[:41], 5, 0)
    assert family_code("ofa") in few["families"] and family_code("nb201") in few["families"]
    newcomer = graph_stats(load(sample_specs("fbnet", 1, 0)[0]))
    assert in_domain_mask(gate, [newcomer]).tolist() == [False]
