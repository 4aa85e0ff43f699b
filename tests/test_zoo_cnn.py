"""Convolutional zoo entries: torchvision's params and MACs, ONNX round trips that
onnxruntime runs, plain-torch references exported through the PyTorch front end,
width/resolution variants and bad options."""

import functools
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from perfcast import api
from perfcast.analysis import analyze_graph
from perfcast.errors import SpecError
from perfcast.frontends.onnx import model_to_graph
from perfcast.frontends.onnx_writer import to_onnx
from perfcast.spaces import build_spec
from perfcast.spaces.zoo import zoo_names
from perfcast.spaces.zoo.cnn import NETS, make_divisible, regnet_stages

import torchnets

# Exact params and MACs of every entry at its default resolution, 1000 classes.
MEASURED = {
    "alexnet": (61_100_840, 714_188_480),
    "vgg16": (138_357_544, 15_470_264_320),
    "resnet18": (11_689_512, 1_814_073_344),
    "resnet34": (21_797_672, 3_663_761_408),
    "resnet50": (25_557_032, 4_089_184_256),
    "resnet101": (44_549_160, 7_801_405_440),
    "densenet121": (7_978_856, 2_834_161_664),
    "squeezenet1_1": (1_235_496, 349_151_936),
    "shufflenet_v2_x1_0": (2_278_604, 144_907_992),
    "mnasnet1_0": (4_383_312, 314_415_872),
    "mobilenet_v1": (4_231_976, 568_740_352),
    "mobilenet_v2": (3_504_872, 300_774_272),
    "mobilenet_v3_large": (5_483_032, 216_589_760),
    "mobilenet_v3_small": (2_542_856, 56_510_400),
    "mobilenet_v3_large_minimalistic": (3_924_288, 209_136_704),
    "mobilenet_v3_small_minimalistic": (2_044_736, 52_288_448),
    "efficientnet_b0": (5_288_548, 385_814_752),
    "efficientnet_b1": (7_794_184, 686_802_832),
    "efficientnet_b2": (9_109_994, 1_087_529_456),
    "efficientnet_b3": (12_233_232, 1_827_141_392),
    "efficientnet_lite0": (4_652_008, 385_187_552),
    "efficientnet_lite1": (5_416_680, 600_185_232),
    "efficientnet_lite2": (6_092_072, 859_736_272),
    "efficientnet_lite3": (8_197_096, 1_383_321_872),
    "efficientnet_lite4": (13_006_568, 2_553_034_336),
    "regnet_y_400mf": (4_344_144, 401_842_848),
}

# torchvision model docs: num_params (exact) and GFLOPS (GMACs, two decimals).
TORCHVISION = {
    "alexnet": (61_100_840, 0.71),
    "vgg16": (138_357_544, 15.47),
    "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "resnet101": (44_549_160, 7.80),
    "densenet121": (7_978_856, 2.83),
    "squeezenet1_1": (1_235_496, 0.35),
    "shufflenet_v2_x1_0": (2_278_604, 0.14),
    "mnasnet1_0": (4_383_312, 0.31),
    "mobilenet_v2": (3_504_872, 0.30),
    "mobilenet_v3_large": (5_483_032, 0.22),
    "mobilenet_v3_small": (2_542_856, 0.06),
    "efficientnet_b0": (5_288_548, 0.39),
    "efficientnet_b1": (7_794_184, 0.69),
    "efficientnet_b2": (9_109_994, 1.09),
    "efficientnet_b3": (12_233_232, 1.83),
    "regnet_y_400mf": (4_344_144, 0.40),
}

# Published figures for the entries outside torchvision: (M params, M MACs, tolerance on both).
# mobilenet_v1 1.0-224: Howard et al. 2017 Table / TF-slim (4.2 M, 569 M). EfficientNet-Lite:
# the PyTorch reproduction d-li14/efficientnet-lite.pytorch (4.652/5.417/6.092/8.197/13.007 M,
# 0.385/0.600/0.860/1.383/2.553 GMACs); the TF README's 407 M MACs for lite0 counts more than
# convolutions. TF-slim MobileNetV3 README: large minimalistic 3.9 M / 209 M, small minimalistic
# 2.0 M params (its 65 M MACs, like its 66 M for small, exceeds the released definition's count,
# which torchvision gives as 0.06 GFLOPS for small).
PUBLISHED = {
    "mobilenet_v1": (4.2, 569, 0.02),
    "efficientnet_lite0": (4.652, 385, 0.005),
    "efficientnet_lite1": (5.417, 600, 0.005),
    "efficientnet_lite2": (6.092, 860, 0.005),
    "efficientnet_lite3": (8.197, 1383, 0.005),
    "efficientnet_lite4": (13.007, 2553, 0.005),
    "mobilenet_v3_large_minimalistic": (3.9, 209, 0.02),
    "mobilenet_v3_small_minimalistic": (2.0, None, 0.03),
}

DEFAULT_RES = {"efficientnet_b1": 240, "efficientnet_b2": 288, "efficientnet_b3": 300, "efficientnet_lite1": 240,
               "efficientnet_lite2": 260, "efficientnet_lite3": 280, "efficientnet_lite4": 300}


@functools.cache
def analysis_of(spec: str):
    return analyze_graph(build_spec(spec))


def test_table_covers_every_entry():
    assert set(MEASURED) == set(NETS)
    assert set(NETS) <= set(zoo_names())


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_default_size_params_and_macs(name):
    spec = f"zoo:{name}"
    a = analysis_of(spec)
    res = DEFAULT_RES.get(name, 224)
    g = a.graph
    assert g.name == spec
    assert [g.tensors[i].shape for i in g.inputs] == [(1, 3, res, res)]
    assert [g.tensors[o].shape for o in g.outputs] == [(1, 1000)]
    assert a.unsupported_ops == [] and a.uncosted_nodes == []
    assert (a.params, a.macs) == MEASURED[name]


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_matches_torchvision_docs(name):
    params, gflops = TORCHVISION[name]
    a = analysis_of(f"zoo:{name}")
    assert a.params == params
    assert abs(a.macs / 1e9 - gflops) <= 0.005 or abs(a.macs / 1e9 / gflops - 1) <= 0.02


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_matches_published_figures(name):
    mparams, mmacs, tol = PUBLISHED[name]
    a = analysis_of(f"zoo:{name}")
    assert a.params / 1e6 == pytest.approx(mparams, rel=tol, abs=0.05 if tol >= 0.02 else 0)
    if mmacs is not None:
        assert a.macs / 1e6 == pytest.approx(mmacs, rel=tol)


def test_operator_choices():
    ops = {name: analysis_of(f"zoo:{name}").op_counts for name in
           ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_large_minimalistic", "efficientnet_b0",
            "efficientnet_lite0", "shufflenet_v2_x1_0", "mnasnet1_0", "regnet_y_400mf", "alexnet")}
    assert ops["mobilenet_v2"]["Clip"] == 35 and "Relu" not in ops["mobilenet_v2"]
    v3 = ops["mobilenet_v3_large"]
    # 8 SE blocks (global pool, two 1x1 convs, HardSigmoid gate, Mul); 12 hardswish in blocks + stem, head, classifier
    assert (v3["GlobalAveragePool"], v3["HardSigmoid"], v3["Mul"], v3["HardSwish"]) == (9, 8, 8, 21)
    minimal = ops["mobilenet_v3_large_minimalistic"]
    assert not {"HardSwish", "HardSigmoid", "Mul", "Sigmoid"} & set(minimal)
    assert all(n.attrs["kernel_shape"] in ((3, 3), (1, 1))
               for n in analysis_of("zoo:mobilenet_v3_large_minimalistic").graph.nodes if n.op_type == "Conv")
    b0 = ops["efficientnet_b0"]  # 49 SiLU = x * sigmoid(x) (stem, 15 expansions, 16 depthwise, 16 SE, head)
    assert (b0["Sigmoid"], b0["Mul"], b0["GlobalAveragePool"]) == (49 + 16, 49 + 16, 16 + 1)
    assert "Sigmoid" not in ops["efficientnet_lite0"] and ops["efficientnet_lite0"]["Clip"] == 33
    shuffle = ops["shufflenet_v2_x1_0"]
    assert (shuffle["Split"], shuffle["Transpose"], shuffle["ReduceMean"]) == (13, 16, 1)
    assert ops["mnasnet1_0"]["ReduceMean"] == 1 and "GlobalAveragePool" not in ops["mnasnet1_0"]
    assert ops["regnet_y_400mf"]["Sigmoid"] == 16
    assert "Dropout" not in ops["alexnet"] and ops["alexnet"]["AveragePool"] == 1


# VGG16 and AlexNet carry 138 M and 61 M random weights through the writer and onnxruntime.
HEAVY = {"vgg16", "alexnet"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in sorted(MEASURED)])
def test_onnx_round_trip_runs_in_onnxruntime(name):
    spec = f"zoo:{name}?res=64&classes=10"
    g = build_spec(spec)
    model = to_onnx(g)
    back = model_to_graph(model, source=spec)
    assert back.content_hash == g.content_hash
    a, b = analyze_graph(g), analyze_graph(back)
    assert (b.macs, b.params) == (a.macs, a.params)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out = sess.run(None, {g.inputs[0]: np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)})[0]
    assert out.shape == (1, 10)
    assert np.isfinite(out).all()


# spec -> exact (params, MACs); the ONNX round trip checks that every shape is consistent.
VARIANTS = {
    "zoo:mobilenet_v2?width=0.75&res=160": (2_636_424, 107_295_200),
    "zoo:mobilenet_v2?width=1.4": (6_108_776, 582_195_824),
    "zoo:mobilenet_v2?width=0.35&res=96": (1_677_128, 11_934_128),
    "zoo:mobilenet_v1?width=0.5&res=160": (1_331_592, 76_524_800),
    "zoo:mobilenet_v1?width=0.25&res=128": (470_072, 13_570_048),
    "zoo:mobilenet_v3_large?width=0.75": (3_377_576, 140_033_816),
    "zoo:mobilenet_v3_small_minimalistic?width=0.5&res=96&classes=100": (318_804, 3_192_560),
    "zoo:resnet50?res=32": (25_557_032, 85_458_944),
    "zoo:efficientnet_b0?res=256&classes=10": (4_020_358, 502_070_272),
}


@pytest.mark.parametrize("spec", sorted(VARIANTS))
def test_width_and_resolution_variants(spec):
    g = build_spec(spec)
    a = analyze_graph(g)
    assert (a.params, a.macs) == VARIANTS[spec]
    assert model_to_graph(to_onnx(g)).content_hash == g.content_hash


def _gemm_weights(spec: str) -> list[tuple[int, ...]]:
    g = build_spec(spec)
    return [g.tensors[n.inputs[1]].shape for n in g.nodes if n.op_type == "Gemm"]


def test_last_channel_rules():
    assert [make_divisible(c * 0.75) for c in (32, 16, 24, 96, 160)] == [24, 16, 24, 72, 120]
    # MobileNetV2: make_divisible(1280 * max(1, width)); MobileNetV3 scales 1280 by the width
    assert _gemm_weights("zoo:mobilenet_v2?width=1.4") == [(1000, 1792)]
    assert _gemm_weights("zoo:mobilenet_v2?width=0.5") == [(1000, 1280)]
    assert _gemm_weights("zoo:mobilenet_v3_large?width=0.5") == [(640, 480), (1000, 640)]


def test_regnet_stages_follow_torchvision():
    stages = regnet_stages(16, 48, 27.89, 2.09, 8)
    assert [(s.width, s.depth, s.group_width) for s in stages] == [(48, 1, 8), (104, 3, 8), (208, 6, 8), (440, 6, 8)]


def test_batch_size_scales_macs_not_params():
    one = analysis_of("zoo:resnet18")
    four = analyze_graph(build_spec("zoo:resnet18", batch_size=4))
    assert four.graph.tensors[four.graph.inputs[0]].shape == (4, 3, 224, 224)
    assert (four.macs, four.params) == (4 * one.macs, one.params)


# -- plain-torch references through the PyTorch front end ------------------------------------
TORCH_NETS = {"resnet18": torchnets.resnet18, "resnet50": torchnets.resnet50, "mobilenet_v2": torchnets.mobilenet_v2}


@pytest.mark.parametrize("name", sorted(TORCH_NETS))
def test_torch_reference_has_torchvision_params(name):
    module = TORCH_NETS[name]()
    assert sum(p.numel() for p in module.parameters()) == TORCHVISION[name][0]


@functools.cache
def exported(name: str) -> dict:
    torch.manual_seed(0)
    return api.analyze(TORCH_NETS[name](), torch.randn(1, 3, 224, 224))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORCH_NETS))
def test_torch_reference_macs_equal_zoo(name):
    r = exported(name)
    assert r["unsupported_ops"] == []
    assert r["macs"] == MEASURED[name][1]
    assert r["op_counts"]["Conv"] == analysis_of(f"zoo:{name}").op_counts["Conv"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORCH_NETS))
def test_torch_reference_params_equal_zoo(name):
    assert exported(name)["params"] == TORCHVISION[name][0] == MEASURED[name][0]


# -- bad options --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, words", [
    ("zoo:resnet50?res=abc", "not an integer"),
    ("zoo:resnet50?res=5", "out of range"),
    ("zoo:resnet50?res=2000", "out of range"),
    ("zoo:resnet50?classes=0", "out of range"),
    ("zoo:mobilenet_v2?width=9", "out of range"),
    ("zoo:mobilenet_v2?width=nan", "finite"),
    ("zoo:resnet50?width=0.5", "unknown option 'width'"),
    ("zoo:resnet50?foo=1", "unknown option 'foo'"),
    ("zoo:resnet51", "unknown zoo network"),
    ("zoo:alexnet?res=32", "smallest res: 63"),
])
def test_bad_options_raise_spec_error(spec, words):
    with pytest.raises(SpecError) as err:
        build_spec(spec)
    assert err.value.subject == spec
    assert words in err.value.problem


def test_smallest_resolution_builds():
    assert build_spec("zoo:alexnet?res=63").tensors[build_spec("zoo:alexnet?res=63").outputs[0]].shape == (1, 1000)


def test_cli_analyze_json(run_cli):
    code, out, err = run_cli("analyze", "zoo:resnet50", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["params"], report["macs"]) == MEASURED["resnet50"]
    code, out, err = run_cli("analyze", "zoo:resnet50?res=abc")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "zoo:resnet50?res=abc" in err
