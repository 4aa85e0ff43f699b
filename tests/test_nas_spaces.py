"""The NAS spaces behind spec strings: nb201, fbnet, ofa.

Reference figures:
- NAS-Bench-201: parameters (M) and "FLOPs" (M) from NAS-Bench-201's API data, which
  counts the classifier's bias additions as FLOPs: published FLOPs = MACs + classes.
  The extremes over the benchmark (per dataset: fewest / most parameters and FLOPs) are
  reached by every cell without convolutions and by the cell with six 3x3 convolutions.
- FBNet and OFA: plain-PyTorch re-implementations below (HW-NAS-Bench's ``FBNet_Infer``,
  OFA's ``OFAMobileNetV3`` subnets), counting ``sum(p.numel())`` and conv/linear MACs with
  forward hooks.
"""

from __future__ import annotations

import csv
import gc
import gzip
import json
import random
from contextlib import contextmanager

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from perfcast.analysis import analyze_graph
from perfcast.errors import SpecError
from perfcast.frontends.onnx import model_to_graph
from perfcast.frontends.onnx_writer import to_onnx
from perfcast.spaces import build_spec, fbnet, nb201, ofa

from conftest import SHARED_DATA, load_script

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data not available")

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_POOL = "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"
MIXED_NO_CONV = "|skip_connect~0|+|none~0|avg_pool_3x3~1|+|avg_pool_3x3~0|none~1|skip_connect~2|"
POOL_1X1 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

# (arch, dataset) -> (params M, FLOPs M) as NAS-Bench-201 publishes them.
NB201_PUBLISHED = {
    **{(arch, "cifar10"): (0.073306, 7.78305) for arch in (ALL_NONE, ALL_SKIP, ALL_POOL, MIXED_NO_CONV)},
    **{(arch, "cifar100"): (0.079156, 7.7889) for arch in (ALL_NONE, ALL_SKIP, ALL_POOL, MIXED_NO_CONV)},
    **{(arch, "ImageNet16-120"): (0.080456, 1.9534) for arch in (ALL_NONE, ALL_SKIP, ALL_POOL, MIXED_NO_CONV)},
    (ALL_3X3, "cifar10"): (1.531546, 220.11969),
    (ALL_3X3, "cifar100"): (1.537396, 220.12554),
    (ALL_3X3, "ImageNet16-120"): (1.538696, 55.03756),
    # cost_info of this arch in NAS-Bench-201's cifar10-valid data (NASLib's test fixture)
    (POOL_1X1, "cifar10"): (0.129306, 15.64737),
    # cost_info example of a cell with two nor_conv_3x3 and no nor_conv_1x1 edges
    (RESNET_CELL, "cifar10"): (0.559386, 78.56193),
}
CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}

FBNET_ROW0 = ("k5_e6 skip k3_e1_g2 skip k5_e1 skip skip skip k5_e6 k5_e1 k3_e1_g2 k5_e1 k5_e6 k3_e6 k3_e3 "
              "k5_e6 k3_e6 k3_e3 k5_e1 k3_e3 k5_e1 k5_e1_g2")
FBNET_CASES = [FBNET_ROW0, " ".join(["k5_e6"] * 22), " ".join(["k3_e1_g2", "skip"] * 11)]
OFA_CASES = [
    {"ks": [7, 5, 5, 5, 7, 7, 5, 7, 5, 7, 3, 7, 5, 3, 7, 3, 5, 3, 5, 3],
     "e": [6, 4, 4, 6, 6, 3, 4, 3, 3, 6, 3, 3, 3, 6, 3, 4, 6, 4, 3, 6], "d": [2, 2, 2, 2, 3], "r": 204},
    {"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5, "r": 224},
    {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 128},
]


def ofa_spec(cfg: dict) -> str:
    return "ofa:" + json.dumps(cfg)


# -- NAS-Bench-201 ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch,dataset", sorted(NB201_PUBLISHED))
def test_nb201_matches_published_params_and_flops(arch, dataset):
    params_m, flops_m = NB201_PUBLISHED[(arch, dataset)]
    a = analyze_graph(build_spec(nb201.spec_from_arch(arch, dataset)))
    assert a.params == round(params_m * 1e6)
    assert a.macs + CLASSES[dataset] == round(flops_m * 1e6)
    assert a.unsupported_ops == [] and a.uncosted_nodes == []


def test_nb201_shapes_and_dataset_option():
    for dataset, (res, classes) in {"cifar10": (32, 10), "cifar100": (32, 100), "ImageNet16-120": (16, 120)}.items():
        g = build_spec(f"nb201:{ALL_3X3}?dataset={dataset}", batch_size=2)
        assert g.tensors[g.inputs[0]].shape == (2, 3, res, res)
        assert g.tensors[g.outputs[0]].shape == (2, classes)
    assert build_spec(f"nb201:{ALL_3X3}?dataset=imagenet16-120").content_hash == \
        build_spec(f"nb201:{ALL_3X3}?dataset=ImageNet16-120").content_hash


def _zero_muls(g) -> int:
    return sum(1 for n in g.nodes if n.op_type == "Mul" and g.tensors[n.inputs[1]].value == (0.0,))


def test_nb201_none_edges_are_multiplications_by_zero():
    # NAS-Bench-201's Zero layer returns x.mul(0.): every none edge is one Mul by the literal 0
    g = build_spec(f"nb201:{ALL_NONE}")
    assert _zero_muls(g) == 6 * 15
    assert [n.op_type for n in g.nodes].count("Add") == 3 * 15 + 2  # node sums; two reduction blocks
    # a conv whose output every later edge drops still runs (and is counted) in NAS-Bench-201
    dead = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    a = analyze_graph(build_spec(f"nb201:{dead}"))
    assert a.params == 73306 + 243040  # one 3x3 conv edge per cell: 5 * (2336 + 9280 + 36992)
    assert _zero_muls(a.graph) == 4 * 15
    live = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    g = build_spec(f"nb201:{live}")
    assert _zero_muls(g) == 5 * 15 and analyze_graph(g).params == 73306
    # strings that compute the same function but differ in their zero edges are different graphs
    assert build_spec(f"nb201:{dead}").content_hash != g.content_hash


@needs_data
def test_nb201_cut_off_architectures_are_valid_graphs():
    archs = {r["arch_str"] for r in _rows("hwnasbench_nb201.csv.gz")}
    cut = sorted(a for a in archs if _cut_off(nb201.parse_arch(a)))
    assert len(cut) == 341
    for arch in cut[:20]:
        g = build_spec(f"nb201:{arch}")
        assert g.tensors[g.outputs[0]].shape == (1, 10)
        assert analyze_graph(g).macs >= 7783040  # stem, reduction blocks and head still run


def _cut_off(cell) -> bool:
    reach = {0}
    for i, edges in enumerate(cell, start=1):
        if any(op != "none" and j in reach for op, j in edges):
            reach.add(i)
    return 3 not in reach


@pytest.mark.parametrize("arch,problem", [
    ("|bad|", "3 nodes separated by '+'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "3 nodes separated by '+'"),
    ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 incoming edge(s), found 1"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|", "node 3 needs 3 incoming edge(s), found 4"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "source '1'"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "one edge from each node 0..1"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "'|' at both ends"),
    ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "not op~source"),
])
def test_nb201_rejects_malformed_arch_strings(arch, problem):
    with pytest.raises(SpecError) as info:
        build_spec(f"nb201:{arch}")
    assert problem in info.value.problem and info.value.subject == f"nb201:{arch}"


def test_nb201_rejects_bad_options():
    with pytest.raises(SpecError, match="unknown dataset"):
        build_spec(f"nb201:{ALL_3X3}?dataset=mnist")
    with pytest.raises(SpecError, match="unknown option 'res'"):
        build_spec(f"nb201:{ALL_3X3}?res=64")


# -- FBNet and OFA against plain PyTorch -------------------------------------------------------
def _conv_bn(cin, cout, k, stride=1, groups=1, act=None):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act()] if act else []))


class _Shuffle(nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class _Residual(nn.Module):
    def __init__(self, body, residual):
        super().__init__()
        self.body, self.residual = body, residual

    def forward(self, x):
        return self.body(x) + x if self.residual else self.body(x)


def torch_fbnet(names: list[str], classes: int = 100) -> nn.Module:
    """HW-NAS-Bench FBNet_Infer, CIFAR setting."""
    layers, cin = [_conv_bn(3, 16, 3, act=nn.ReLU)], 16
    stages = zip((1, 4, 4, 4, 4, 4, 1), (16, 24, 32, 64, 112, 184, 352), (1, 1, 2, 2, 1, 2, 1))
    plan = [(cout, s if i == 0 else 1) for d, cout, s in stages for i in range(d)]
    for name, (cout, s) in zip(names, plan):
        if name == "skip":
            same = s == 1 and cin == cout
            layers.append(nn.Identity() if same else _conv_bn(cin, cout, 1, s, act=nn.ReLU))
        else:
            k, e, g = int(name[1]), int(name[4]), 2 if name.endswith("g2") else 1
            mid = cin * e
            body = [_conv_bn(cin, mid, 1, groups=g, act=nn.ReLU), *([_Shuffle()] if g == 2 else []),
                    _conv_bn(mid, mid, k, s, groups=mid, act=nn.ReLU), _conv_bn(mid, cout, 1, groups=g)]
            layers.append(_Residual(nn.Sequential(*body), s == 1 and cin == cout))
        cin = cout
    layers += [_conv_bn(352, 1504, 1, act=nn.ReLU), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1504, classes)]
    return nn.Sequential(*layers)


class _SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        mid = ofa.make_divisible(c // 4, 8)
        self.fc = nn.Sequential(nn.Conv2d(c, mid, 1), nn.ReLU(), nn.Conv2d(mid, c, 1), nn.Hardsigmoid())

    def forward(self, x):
        return x * self.fc(x.mean((2, 3), keepdim=True))


def _mbconv(cin, cout, k, s, e, act, se):
    mid = ofa.make_divisible(round(cin * e), 8)
    body = [_conv_bn(cin, mid, 1, act=act)] if e != 1 else []
    body += [_conv_bn(mid, mid, k, s, groups=mid, act=act), *([_SE(mid)] if se else []), _conv_bn(mid, cout, 1)]
    return _Residual(nn.Sequential(*body), s == 1 and cin == cout)


def torch_ofa(cfg: dict) -> nn.Module:
    """OFA MobileNetV3 w1.2 subnet (widths 24, 24, 32, 48, 96, 136, 192, 1152, 1536)."""
    layers = [_conv_bn(3, 24, 3, 2, act=nn.Hardswish), _mbconv(24, 24, 3, 1, 1, nn.ReLU, False)]
    cin = 24
    stages = zip((32, 48, 96, 136, 192), (2, 2, 2, 1, 2), (nn.ReLU, nn.ReLU, nn.Hardswish, nn.Hardswish, nn.Hardswish),
                 (False, True, False, True, True))
    for i, (cout, s, act, se) in enumerate(stages):
        for j in range(cfg["d"][i]):
            layers.append(_mbconv(cin, cout, cfg["ks"][4 * i + j], s if j == 0 else 1, cfg["e"][4 * i + j], act, se))
            cin = cout
    layers += [_conv_bn(192, 1152, 1, act=nn.Hardswish), nn.AdaptiveAvgPool2d(1),
               nn.Conv2d(1152, 1536, 1, bias=False), nn.Hardswish(), nn.Flatten(), nn.Linear(1536, 1000)]
    return nn.Sequential(*layers)


def torch_counts(model: nn.Module, res: int) -> tuple[int, int]:
    """(sum of parameter sizes, conv + linear MACs) of one forward pass at batch 1."""
    macs = [0]

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            macs[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            macs[0] += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, res, res))
    for h in handles:
        h.remove()
    return sum(p.numel() for p in model.parameters()), macs[0]


@pytest.mark.parametrize("blocks", FBNET_CASES)
def test_fbnet_matches_torch(blocks):
    a = analyze_graph(build_spec(f"fbnet:{blocks}"))
    assert (a.params, a.macs) == torch_counts(torch_fbnet(blocks.split()), 32)
    assert a.unsupported_ops == []


def test_fbnet_known_counts_and_options():
    a = analyze_graph(build_spec(f"fbnet:{FBNET_ROW0}"))
    assert (a.params, a.macs) == (1790500, 67605376)
    g = build_spec(f"fbnet:{FBNET_ROW0}?classes=10&res=64", batch_size=3)
    assert g.tensors[g.inputs[0]].shape == (3, 3, 64, 64) and g.tensors[g.outputs[0]].shape == (3, 10)
    assert build_spec("fbnet:" + FBNET_ROW0.replace(" ", ",")).content_hash == \
        build_spec(f"fbnet:{FBNET_ROW0}").content_hash


@pytest.mark.parametrize("cfg", OFA_CASES)
def test_ofa_matches_torch(cfg):
    a = analyze_graph(build_spec(ofa_spec(cfg)))
    assert (a.params, a.macs) == torch_counts(torch_ofa(cfg), cfg["r"])
    assert a.unsupported_ops == []


def test_ofa_known_counts_and_widths():
    assert ofa.WIDTHS == (24, 24, 32, 48, 96, 136, 192, 1152, 1536)
    a = analyze_graph(build_spec(ofa_spec(OFA_CASES[0])))
    assert (a.params, a.macs) == (6132040, 305047776)
    g = build_spec(ofa_spec(OFA_CASES[2]), batch_size=2)
    assert g.tensors[g.inputs[0]].shape == (2, 3, 128, 128) and g.tensors[g.outputs[0]].shape == (2, 1000)


# -- every space through ONNX ----------------------------------------------------------------------
ROUND_TRIP = [f"nb201:{ALL_3X3}", f"nb201:{ALL_NONE}?dataset=ImageNet16-120", f"nb201:{POOL_1X1}?dataset=cifar100",
              f"fbnet:{FBNET_CASES[2]}", f"fbnet:{FBNET_ROW0}", ofa_spec(OFA_CASES[2])]


@pytest.mark.parametrize("spec", ROUND_TRIP)
def test_onnx_round_trip_and_onnxruntime(spec):
    g = build_spec(spec)
    model = to_onnx(g)
    back = model_to_graph(model)
    a, b = analyze_graph(g), analyze_graph(back)
    assert back.content_hash == g.content_hash
    assert (b.macs, b.params) == (a.macs, a.params)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros(g.tensors[g.inputs[0]].shape, np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    assert y.shape == g.tensors[g.outputs[0]].shape and np.isfinite(y).all()


# -- the shared data -------------------------------------------------------------------------------
def _rows(name: str) -> list[dict[str, str]]:
    with gzip.open(DATA / name, "rt", newline="") as f:
        return list(csv.DictReader(f))


@contextmanager
def _gc_paused():
    """Bulk builds make short-lived graphs without reference cycles: reference counting
    frees them, and the cyclic collector's passes over them are pure overhead here."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_builds(specs: set[str], out_shape: tuple[int, ...]) -> None:
    with _gc_paused():
        shapes = {(g := build_spec(spec)).tensors[g.outputs[0]].shape for spec in specs}
    assert shapes == {out_shape}


@needs_data
@pytest.mark.slow
def test_every_nb201_row_builds():
    hw = _rows("hwnasbench_nb201.csv.gz")
    help_rows = _rows("help_nasbench201_latency.csv.gz")
    specs = {nb201.spec_for_row("hwnasbench_nb201.csv.gz", r) for r in hw}
    specs |= {nb201.spec_for_row("help_nasbench201_latency.csv.gz", r) for r in help_rows}
    assert len(specs) == 3 * 15625
    cifar10 = {s for s in specs if "?" not in s}
    assert len(cifar10) == 15625
    _check_builds(cifar10, (1, 10))
    rng = random.Random(0)
    for dataset, classes in (("cifar100", 100), ("ImageNet16-120", 120)):
        others = sorted(s for s in specs if s.endswith(f"?dataset={dataset}"))
        _check_builds(set(rng.sample(others, 200)), (1, classes))


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("module,source,out_shape", [
    (fbnet, "help_fbnet_latency.csv.gz", (1, 100)),
    (ofa, "help_ofa_latency.csv.gz", (1, 1000)),
])
def test_every_fbnet_and_ofa_row_builds(module, source, out_shape):
    specs = {module.spec_for_row(source, r) for r in _rows(source)}
    assert len(specs) == 5000
    _check_builds(specs, out_shape)


def test_spec_for_row_rejects_other_files():
    with pytest.raises(ValueError, match="no FBNet"):
        fbnet.spec_for_row("help_ofa_latency.csv.gz", {})
    assert ofa.spec_from_config(json.dumps(OFA_CASES[2])) == (
        'ofa:{"ks":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"e":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],'
        '"d":[2,2,2,2,2],"r":128}')


# -- bad specs --------------------------------------------------------------------------------------
BAD_SPECS = [
    ("fbnet:" + " ".join(["k3_e1"] * 21), "22 blocks, found 21"),
    ("fbnet:" + " ".join(["k3_e1"] * 21 + ["k7_e6"]), "unknown block 'k7_e6' at position 21"),
    ("fbnet:" + " ".join(["k3_e1"] * 22) + "?res=4", "out of range"),
    ("ofa:{ks: [3]}", "not valid JSON"),
    ("ofa:[1, 2]", "expected a JSON object"),
    ('ofa:{"ks": [3], "e": [3], "d": [2]}', "missing key 'r'"),
    (ofa_spec({**OFA_CASES[2], "w": 1.2}), "unknown key 'w'"),
    (ofa_spec({**OFA_CASES[2], "ks": [3] * 19}), "'ks' must be a list of 20 integers, found 19 values"),
    (ofa_spec({**OFA_CASES[2], "ks": [3] * 19 + [9]}), "ks[19] = 9 is out of range"),
    (ofa_spec({**OFA_CASES[2], "e": [3] * 19 + [2]}), "e[19] = 2 is out of range"),
    (ofa_spec({**OFA_CASES[2], "d": [2, 2, 2, 2, 5]}), "d[4] = 5 is out of range"),
    (ofa_spec({**OFA_CASES[2], "r": 130}), "r = 130 is out of range (allowed: 128..224 step 4)"),
    (ofa_spec({**OFA_CASES[2], "r": "128"}), "r = '128' is out of range"),
    (ofa_spec(OFA_CASES[2]) + "?classes=10", "unknown option 'classes'"),
]


@pytest.mark.parametrize("spec,problem", BAD_SPECS)
def test_bad_specs_raise_spec_error(spec, problem):
    with pytest.raises(SpecError) as info:
        build_spec(spec)
    assert problem in info.value.problem


@pytest.mark.parametrize("spec", ["nb201:|bad|", "fbnet:k3_e1 skip", "ofa:{not json"])
def test_cli_rejects_bad_spec_with_one_line(run_cli, spec):
    code, out, err = run_cli("analyze", spec)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and spec in err


@needs_data
def test_distinct_key_finds_the_6466_networks_of_nas_bench_201():
    with gzip.open(DATA / "help_nasbench201_latency.csv.gz", "rt", newline="") as f:
        arches = {row["arch_str"] for row in csv.DictReader(f)}
    assert len(arches) == 15_625
    assert len({nb201.distinct_key(a) for a in arches}) == 6_466
    # a dead branch does not change the function: node 1 feeds only through `none`
    a = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|skip_connect~2|"
    b = "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|skip_connect~2|"
    assert nb201.distinct_key(a) == nb201.distinct_key(b)
    assert nb201.distinct_key(a) != nb201.distinct_key(ALL_3X3)


def test_the_diagnostic_cell_encoding_marks_each_edge_operation_once():
    module = load_script("fewshot_ceiling")
    cells = ["nb201:|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|",
             "nb201:|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
             "?dataset=ImageNet16-120"]
    out = module.cell_encoding(cells)
    assert out.shape == (2, 30)
    assert (out.sum(axis=1) == 6).all()
    edges = ["nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "none"]
    for j, op in enumerate(edges):
        assert out[0, j * 5 + nb201.OPS.index(op)] == 1.0
    assert (out[0] == out[1]).all()  # the dataset changes the network, not the cell
