"""The sampled task spaces (``<space>:<seed>``): determinism, ONNX round trip and
onnxruntime, costing, the MAC budget, options, and reference networks that lie inside
the spaces (parameter counts of torchvision / timm / Hugging Face models)."""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from perfcast.analysis import analyze_graph
from perfcast.errors import SpecError
from perfcast.frontends.onnx import model_to_graph
from perfcast.frontends.onnx_writer import to_onnx
from perfcast.spaces import build_spec, spaces
from perfcast.spaces.tasks import TASK_SPACES, bert, det, gpt, imgcls, kws, rnn, seg, sr, vit
from perfcast.spaces.tasks._cnn import MOBILE_LAYOUT, Backbone, Stage
from perfcast.spaces.tasks._common import MAX_MACS

PREFIXES = ("imgcls", "kws", "sr", "det", "seg", "vit", "bert", "gpt", "rnn")
NP_DTYPES = {"float32": np.float32, "int64": np.int64}


@lru_cache(maxsize=None)
def graph(prefix: str, seed: int):
    return build_spec(f"{prefix}:{seed}")


@lru_cache(maxsize=None)
def analysis(prefix: str, seed: int):
    return analyze_graph(graph(prefix, seed))


def expected_output_shapes(prefix: str, seed: int) -> list[tuple[int, ...]]:
    """Output shapes derived from the sampled config alone."""
    cfg = TASK_SPACES[prefix].sample(seed)
    if prefix in ("imgcls", "kws", "vit", "rnn"):
        return [(1, cfg.classes)]
    if prefix == "sr":
        return [(1, cfg.channels, cfg.height * cfg.scale, cfg.width * cfg.scale)]
    if prefix == "seg":
        return [(1, cfg.classes, cfg.resolution, cfg.resolution)]
    if prefix == "bert":
        return [(1, cfg.seq, cfg.width)]
    if prefix == "gpt":
        return [(1, cfg.seq, cfg.vocab)]
    sizes = [cfg.resolution // 16, cfg.resolution // 32]
    for _ in cfg.extras:
        sizes.append((sizes[-1] - 1) // 2 + 1)
    anchors = cfg.anchors * sum(s * s for s in sizes)
    return [(1, anchors, cfg.classes), (1, anchors, 4)]


# -- registration and determinism ------------------------------------------------------------
def test_every_space_is_registered_as_sampled():
    registered = spaces()
    assert sorted(TASK_SPACES) == sorted(PREFIXES)
    for prefix in PREFIXES:
        assert registered[prefix].sampled, prefix


@pytest.mark.parametrize("prefix", PREFIXES)
def test_same_seed_same_network(prefix):
    module = TASK_SPACES[prefix]
    first = build_spec(f"{prefix}:11")
    again = module.SPACE.graph(11)
    assert first.name == f"{prefix}:11"
    assert first.content_hash == again.content_hash
    described = module.describe(11)
    assert json.loads(json.dumps(described)) == described
    assert described == json.loads(json.dumps(asdict(module.sample(11))))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_different_seeds_give_different_networks(prefix):
    hashes = {graph(prefix, seed).content_hash for seed in range(100)}
    assert len(hashes) >= 95


@pytest.mark.parametrize("prefix", ["kws", "sr", "seg"])
def test_budget_redraws_keep_the_family_distribution(prefix):
    module = TASK_SPACES[prefix]
    families = [module.sample(seed).family for seed in range(100)]
    n_families = len(module.OPTIONS["family"].values)
    for family in module.OPTIONS["family"].values:
        assert families.count(family) >= 100 / n_families / 2, (family, families.count(family))


def test_sampled_config_is_pinned():
    # Generated data sets name networks by spec string: the draw for a seed must not drift.
    assert rnn.describe(0) == {"cell": "gru", "layers": 2, "hidden": 352, "features": 14, "seq": 171,
                               "bidirectional": False, "classes": 3}


# -- ONNX, onnxruntime, costs ------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_onnx_round_trip_and_onnxruntime(prefix, seed):
    g = graph(prefix, seed)
    model = to_onnx(g)
    back = model_to_graph(model)
    a, b = analysis(prefix, seed), analyze_graph(back)
    assert back.content_hash == g.content_hash
    assert (b.macs, b.params) == (a.macs, a.params)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {n: np.zeros(g.tensors[n].shape, NP_DTYPES[g.tensors[n].dtype]) for n in g.inputs}
    outputs = session.run(None, feeds)
    expected = expected_output_shapes(prefix, seed)
    assert [tuple(o.shape) for o in outputs] == expected
    assert [g.tensors[n].shape for n in g.outputs] == expected


@pytest.mark.parametrize("prefix", PREFIXES)
def test_seeds_are_fully_costed_and_within_budget(prefix):
    for seed in range(50):
        a = analysis(prefix, seed)
        assert a.unsupported_ops == [] and a.uncosted_nodes == [], (seed, a.unsupported_ops, a.uncosted_nodes)
        assert 0 < a.macs <= MAX_MACS


def test_spaces_span_three_orders_of_magnitude_of_macs():
    macs = [analysis(prefix, seed).macs for prefix in PREFIXES for seed in range(50)]
    assert max(macs) / min(macs) >= 1000


@pytest.mark.parametrize("prefix", PREFIXES)
def test_batch_size_scales_inputs_and_macs(prefix):
    g = build_spec(f"{prefix}:0", batch_size=2)
    batch_axis = 1 if prefix == "rnn" else 0
    assert g.tensors[g.inputs[0]].shape[batch_axis] == 2
    assert analyze_graph(g).macs == 2 * analysis(prefix, 0).macs


# -- spec strings and options ---------------------------------------------------------------------
@pytest.mark.parametrize("spec, problem", [
    ("kws:abc", "not a non-negative integer"),
    ("kws:-1", "not a non-negative integer"),
    ("kws:1.5", "not a non-negative integer"),
    ("kws:2147483648", "larger than"),
    ("imgcls:3?family=nope", "not one of resnet, mobilenet, efficientnet, regnet"),
    ("vit:1?foo=2", "unknown option 'foo'"),
    ("rnn:1?layers=4", "out of range [1, 3]"),
    ("sr:1?h=33", "in steps of 8"),
    ("rnn:1?bidirectional=maybe", "not one of False, True"),
    ("bert:1?width=64&heads=5", "width 64 is not divisible by 5 heads"),
    ("vit:1?patch=16&res=100", "res 100 is not a multiple of patch 16"),
])
def test_bad_specs_raise_spec_error(spec, problem):
    with pytest.raises(SpecError) as err:
        build_spec(spec)
    assert err.value.subject == spec
    assert problem in err.value.problem


def test_describe_checks_the_seed():
    with pytest.raises(SpecError):
        kws.describe(-1)


def test_options_fix_dimensions():
    cfg = imgcls.sample(5, {"family": "resnet", "res": "128"})
    assert (cfg.family, cfg.resolution, cfg.backbone.stem_style) == ("resnet", 128, "resnet")
    g = build_spec("imgcls:5?family=resnet&res=128")
    assert g.name == "imgcls:5?family=resnet&res=128"
    assert "MaxPool" in {n.op_type for n in g.nodes}

    g = build_spec("sr:1?scale=3&h=40&w=48&channels=1")
    assert g.tensors[g.outputs[0]].shape == (1, 1, 120, 144)

    g = build_spec("rnn:3?cell=gru&layers=2&bidirectional=true")
    grus = [n for n in g.nodes if n.op_type == "GRU"]
    assert len(grus) == 2 and all(n.attrs["direction"] == "bidirectional" for n in grus)

    g = build_spec("kws:4?family=raw1d")
    assert g.tensors[g.inputs[0]].shape == (1, 1, 16000)
    g = build_spec("kws:4?family=dscnn")
    assert g.tensors[g.inputs[0]].shape == (1, 1, 49, 10)

    g = build_spec("bert:2?seq=64")
    assert g.tensors[g.inputs[0]].shape == (1, 64) and g.tensors[g.inputs[0]].dtype == "int64"


def test_fixing_one_option_keeps_the_other_draws():
    free, fixed = vit.sample(3), vit.sample(3, {"classes": "17"})
    assert fixed.classes == 17
    assert asdict(fixed) | {"classes": free.classes} == asdict(free)


def test_gpt_uses_a_causal_mask_and_a_tied_head():
    g = build_spec("gpt:0")
    cfg = gpt.sample(0)
    assert sum(n.op_type == "Where" for n in g.nodes) == cfg.layers
    gather, gemm = next(n for n in g.nodes if n.op_type == "Gather"), next(n for n in g.nodes if n.op_type == "Gemm")
    assert gemm.inputs[1] == gather.inputs[0] and gemm.attrs["transB"] == 1


def test_docs_list_every_option_range():
    text = (Path(__file__).resolve().parents[1] / "docs" / "spaces.md").read_text()
    sections = {part.split("`")[0]: part for part in text.split("\n## `")[1:]}
    for prefix in PREFIXES:
        for name, domain in TASK_SPACES[prefix].OPTIONS.items():
            assert f"| `{name}` | {domain.describe()} | option |" in sections[prefix], (prefix, name)


# -- reference networks inside the spaces ----------------------------------------------------------
def _mobilenet_v2() -> Backbone:
    depths = (1, 2, 3, 4, 3, 3, 1)
    stages = tuple(Stage("ir", d, w, s, 3, 1.0 if i == 0 else 6.0, act="relu6")
                   for i, ((w, s), d) in enumerate(zip(MOBILE_LAYOUT, depths)))
    return Backbone("plain", 32, "relu6", stages, 1280, "relu6")


def _imgcls(family: str, net: Backbone, res: int = 224):
    return imgcls.build(imgcls.ImgClsConfig(family, res, 1000, net))


# (graph, params, MACs): params as torchvision / timm / Hugging Face count them; MACs of
# the torchvision models agree with the GFLOPS column of its model table.
REFERENCES = {
    "resnet18": (lambda: _imgcls("resnet", imgcls.resnet_backbone("basic", 64, (2, 2, 2, 2))),
                 11_689_512, 1_814_073_344),
    "resnet50": (lambda: _imgcls("resnet", imgcls.resnet_backbone("bottleneck", 64, (3, 4, 6, 3))),
                 25_557_032, 4_089_184_256),
    "mobilenet_v2": (lambda: _imgcls("mobilenet", _mobilenet_v2()), 3_504_872, 300_774_272),
    "efficientnet_b0": (lambda: _imgcls("efficientnet", imgcls.efficientnet_backbone(1.0, 1.0)),
                        5_288_548, 385_814_752),
    "regnet_x_400mf": (lambda: _imgcls("regnet", imgcls.regnet_backbone(22, 24, 24.48, 2.54, 16)),
                       5_495_976, 413_812_608),
    "regnet_y_400mf": (lambda: _imgcls("regnet", imgcls.regnet_backbone(16, 48, 27.89, 2.09, 8, se=True)),
                       4_344_144, 401_842_848),
    # timm deit_tiny_patch16_224
    "deit_tiny": (lambda: vit.build(vit.ViTConfig(16, 224, 12, 192, 3, 4.0, 1000)), 5_717_416, 1_253_683_200),
    # Hugging Face bert-base-uncased without the pooler (590,592) and token types (1,536)
    "bert_base": (lambda: bert.build(bert.BertConfig(12, 768, 12, 128)), 108_890_112, 11_173_625_856),
    # Hugging Face gpt2 (LM head tied to the word embeddings)
    "gpt2": (lambda: gpt.build(gpt.GptConfig(12, 768, 12, 128, 50257)), 124_439_808, 16_114_089_984),
    # EDSR-baseline x2 (1.37M without the fixed MeanShift layers)
    "edsr_baseline_x2": (lambda: sr.build(sr.SrConfig("edsr", 2, 3, 48, 48, (64,), 16)), 1_369_859, 3_162_488_832),
    # FSRCNN(56, 12, 4): 12,464 weights (Dong et al.) + 233 biases + 112 PReLU slopes
    "fsrcnn": (lambda: sr.build(sr.SrConfig("fsrcnn", 3, 1, 32, 32, (56, 12), 4, "prelu")), 12_809, 12_763_136),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_networks(name):
    build, params, macs = REFERENCES[name]
    a = analyze_graph(build())
    assert (a.params, a.macs) == (params, macs)


def test_transformer_macs_follow_the_closed_form():
    cfg = gpt.GptConfig(layers=3, width=96, heads=4, seq=48, vocab=4096)
    d, s = cfg.width, cfg.seq
    expected = cfg.layers * (12 * s * d * d + 2 * s * s * d) + s * d * cfg.vocab
    assert analyze_graph(gpt.build(cfg)).macs == expected


def test_rnn_params_and_macs_follow_the_closed_form():
    cfg = rnn.RnnConfig("lstm", layers=2, hidden=64, features=40, seq=30, bidirectional=True, classes=12)
    a = analyze_graph(rnn.build(cfg))
    h, dirs = cfg.hidden, 2
    layer_in = (cfg.features, dirs * h)
    params = sum(dirs * (4 * h * (f + h) + 8 * h) for f in layer_in) + dirs * h * cfg.classes + cfg.classes
    macs = sum(dirs * cfg.seq * 4 * h * (f + h) for f in layer_in) + dirs * h * cfg.classes
    assert (a.params, a.macs) == (params, macs)


def test_ssdlite_anchor_count():
    cfg = det.DetConfig(320, 21, 6, 6, _mobilenet_v2(), (256, 128, 128, 64))
    g = det.build(cfg)
    sizes = (20, 10, 5, 3, 2, 1)
    anchors = 6 * sum(s * s for s in sizes)
    assert [g.tensors[o].shape for o in g.outputs] == [(1, anchors, 21), (1, anchors, 4)]


def test_unet_params_follow_the_closed_form():
    cfg = seg.SegConfig("unet", 64, 2, unet=seg.UNetConfig(depth=4, base=64, upsample="transpose"))
    a = analyze_graph(seg.build(cfg))
    widths = [64, 128, 256, 512, 1024]

    def double(cin, cout):  # two 3x3 convs without bias, each with BatchNorm scale and shift
        return 9 * cin * cout + 9 * cout * cout + 4 * cout

    params = double(3, 64) + sum(double(widths[i], widths[i + 1]) for i in range(4))
    for hi, lo in zip(reversed(widths[1:]), reversed(widths[:-1])):
        params += 4 * hi * lo + lo + double(2 * lo, lo)
    params += 64 * 2 + 2
    # the same count as a plain-torch replica of milesial/Pytorch-UNet's UNet(3, 2, bilinear=False)
    assert a.params == params == 31_037_698
