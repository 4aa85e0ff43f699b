"""Transformer and dense-prediction zoo entries: published sizes, ONNX round trips that
onnxruntime runs, the attention costing against a PyTorch module, and bad options."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from perfcast import api
from perfcast.analysis import analyze_graph
from perfcast.errors import SpecError
from perfcast.frontends.onnx import model_to_graph
from perfcast.frontends.onnx_writer import to_onnx
from perfcast.ir.builder import GraphBuilder
from perfcast.spaces import blocks, build_spec
from perfcast.spaces.zoo.transformers import TextConfig, gpt2_graph, relative_position_index, shift_mask

from torchnets import MobileNetV2

# name, exact params, exact MACs, published GMACs as printed (None: no published figure).
# Published: torchvision docs (convnext_tiny, vit_b_16, swin_t: num_params and GFLOPS), timm
# (vit_tiny 1.3 and deit_small 4.6 GMACs), Hugging Face model cards (bert-base-uncased with pooler,
# google/bert_uncased_L-2_H-128_A-2, gpt2 with wte counted once), milesial's Pytorch-UNet
# (31,037,698 with 3 input channels and 2 classes).
TABLE = [
    ("convnext_tiny", 28_589_128, 4_455_531_264, "4.46"),
    ("vit_b_16", 86_567_656, 17_563_828_224, "17.56"),
    ("vit_tiny", 5_717_416, 1_253_683_200, "1.3"),
    ("deit_small", 22_050_664, 4_598_882_304, "4.6"),
    ("swin_t", 28_288_354, 4_490_566_656, "4.49"),
    ("bert_base", 109_482_240, 11_174_215_680, None),
    ("bert_tiny", 4_385_920, 58_736_640, None),
    ("gpt2", 124_439_808, 16_114_089_984, None),
    ("unet", 31_037_698, 48_171_581_440, None),
    ("ssdlite_mobilenet_v2", 4_664_988, 870_061_504, None),
]


def _rounds_to(value: float, printed: str) -> bool:
    """``value`` is within half a unit of the last printed digit of ``printed``."""
    decimals = len(printed.partition(".")[2])
    return abs(value - float(printed)) <= 0.5 * 10 ** -decimals + 1e-12


@pytest.mark.parametrize("name,params,macs,published", TABLE, ids=[t[0] for t in TABLE])
def test_published_sizes(name, params, macs, published):
    a = analyze_graph(build_spec(f"zoo:{name}"))
    assert not a.unsupported_ops and not a.uncosted_nodes
    assert a.params == params
    assert a.macs == macs
    if published is not None:
        assert _rounds_to(a.macs / 1e9, published)


def _activation_products(a) -> int:
    """MACs of MatMuls whose operands are both activations: the attention products."""
    return sum(c.macs for n, c in zip(a.graph.nodes, a.node_costs)
               if n.op_type == "MatMul" and not any(a.graph.tensors[i].constant for i in n.inputs))


# two products of T x T x dim per layer; Swin-T: 49-token windows at 56^2, 28^2, 14^2, 7^2 tokens
ATTENTION_PRODUCTS = {
    "vit_b_16": 2 * 12 * 197 * 197 * 768,
    "vit_tiny": 2 * 12 * 197 * 197 * 192,
    "swin_t": sum(2 * 49 * hw * hw * dim * n for hw, dim, n in ((56, 96, 2), (28, 192, 2), (14, 384, 6), (7, 768, 2))),
}


@pytest.mark.parametrize("name", sorted(ATTENTION_PRODUCTS))
def test_attention_products_are_counted_as_torchvision_does(name):
    assert _activation_products(analyze_graph(build_spec(f"zoo:{name}"))) == ATTENTION_PRODUCTS[name]


def test_timm_card_for_vit_tiny_leaves_attention_products_out():
    # timm's model card says 1.1 GMACs; with the products (torchvision's convention) 1.25
    macs = api.analyze("zoo:vit_tiny")["macs"]
    assert _rounds_to((macs - ATTENTION_PRODUCTS["vit_tiny"]) / 1e9, "1.1")


def test_text_macs_follow_the_closed_form():
    # per layer: 4 D^2 projections + 2 D * MLP, plus 2 S^2 D in the two attention products
    s, d, mlp, layers = 128, 768, 3072, 12
    per_layer = s * (4 * d * d + 2 * d * mlp) + 2 * s * s * d
    assert api.analyze("zoo:bert_base")["macs"] == layers * per_layer + d * d  # + pooler
    assert api.analyze("zoo:gpt2")["macs"] == layers * per_layer + s * d * 50257  # + tied LM head


def test_batch_and_options_scale_the_graph():
    assert api.analyze("zoo:vit_tiny", batch_size=2)["macs"] == 2 * 1_253_683_200
    assert api.analyze("zoo:unet?base=32&classes=2")["params"] == pytest.approx(31_037_698 / 4, rel=0.01)
    # the position embedding follows the token count: (384 / 16)^2 + 1 tokens
    assert api.analyze("zoo:vit_b_16?res=384")["params"] == 86_567_656 + (577 - 197) * 768
    assert api.analyze("zoo:bert_tiny?seq=512")["params"] == 4_385_920


# -- ONNX: written, run by onnxruntime, read back ---------------------------------------------
def _tiny_gpt2():
    return gpt2_graph(TextConfig(layers=2, dim=64, heads=2, mlp=256, vocab=1000, positions=64), 8, 1, "gpt2_mini")


SMALL = [
    ("zoo:vit_tiny?res=64&classes=10", 1, [(1, 10)]),
    ("zoo:swin_t?res=64&classes=10", 2, [(2, 10)]),
    ("zoo:convnext_tiny?res=64&classes=10", 1, [(1, 10)]),
    ("zoo:bert_tiny?seq=16", 1, [(1, 16, 128), (1, 128)]),
    ("gpt2_mini", 1, [(1, 8, 1000)]),  # 8 x 8 causal mask: values kept in the graph
    ("zoo:unet?res=64&base=8&classes=3", 1, [(1, 3, 64, 64)]),
    # 6 anchors on 8x8, 4x4, 2x2, 1x1, 1x1, 1x1 maps: 6 * 87 boxes
    ("zoo:ssdlite_mobilenet_v2?res=128", 1, [(1, 522, 4), (1, 522, 91)]),
]


@pytest.mark.parametrize("spec,batch,shapes", SMALL, ids=[s[0] for s in SMALL])
def test_small_graphs_run_in_onnxruntime_and_round_trip(spec, batch, shapes):
    g = _tiny_gpt2() if spec == "gpt2_mini" else build_spec(spec, batch)
    model = to_onnx(g)
    back = model_to_graph(model)
    assert back.content_hash == g.content_hash
    direct, read = analyze_graph(g), analyze_graph(back)
    assert (read.macs, read.params) == (direct.macs, direct.params)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros(g.tensors[i.name].shape, np.int64 if "int" in i.type else np.float32)
             for i in sess.get_inputs()}
    outs = sess.run(None, feeds)
    assert [o.shape for o in outs] == shapes
    assert all(np.isfinite(o).all() for o in outs)


# -- attention costing against PyTorch ---------------------------------------------------------
class _TorchSelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


def test_attention_block_matches_torch_multihead_attention():
    tokens, dim, heads = 10, 64, 4
    torch_side = api.analyze(_TorchSelfAttention(dim, heads), (torch.zeros(1, tokens, dim),))
    b = GraphBuilder()
    b.output(blocks.self_attention(b, b.input((1, tokens, dim)), heads))
    ours = analyze_graph(b.build())
    projections = 4 * tokens * dim * dim
    products = 2 * tokens * tokens * dim
    assert ours.macs == torch_side["macs"] == projections + products
    assert ours.params == torch_side["params"] == 4 * (dim * dim + dim)


def test_causal_mask_keeps_the_lower_triangle():
    b = GraphBuilder()
    hook = blocks.causal_mask_hook(4)
    scores = b.input((1, 1, 4, 4))
    out = hook(b, scores)
    node = next(n for n in b.build().nodes if n.op_type == "Where")
    mask = b.build().tensors[node.inputs[0]]
    assert node.outputs[0] == out and mask.dtype == "bool"
    assert np.array(mask.value).reshape(4, 4).tolist() == np.tril(np.ones((4, 4), int)).tolist()


def test_swin_index_and_mask_follow_torchvision():
    # torchvision's relative_position_index for window 2: (dh + 1) * 3 + (dw + 1)
    assert relative_position_index(2) == [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]
    # a 4x4 map, window 2, shift 1: the last window mixes four regions, the first one none
    mask = np.array(shift_mask(4, 2, 1)).reshape(4, 4, 4)
    assert mask[0].sum() == 0
    assert mask[3].tolist() == (1 - np.eye(4, dtype=int)).tolist()


# -- dense networks against plain-torch definitions ---------------------------------------------
def _conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class _TorchUNet(nn.Module):
    def __init__(self, base, classes):
        super().__init__()
        widths = [base * 2 ** i for i in range(5)]
        self.downs = nn.ModuleList(nn.Sequential(*_conv_bn_relu(ci, co), *_conv_bn_relu(co, co))
                                   for ci, co in zip([3] + widths[:-1], widths))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(w * 2, w, 2, 2) for w in reversed(widths[:-1]))
        self.convs = nn.ModuleList(nn.Sequential(*_conv_bn_relu(w * 2, w), *_conv_bn_relu(w, w))
                                   for w in reversed(widths[:-1]))
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x):
        skips = []
        for i, down in enumerate(self.downs):
            x = down(nn.functional.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for up, conv, skip in zip(self.ups, self.convs, reversed(skips[:-1])):
            x = conv(torch.cat([skip, up(x)], 1))
        return self.head(x)


def _dw_head(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                         nn.ReLU6(), nn.Conv2d(cin, cout, 1))


def _extra(cin, cout):
    mid = cout // 2
    return nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                         nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                         nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())


class _TorchSSDLite(nn.Module):
    def __init__(self, classes):
        super().__init__()
        f = MobileNetV2().features
        self.c4 = nn.Sequential(*f[:14], f[14].conv[0])
        self.c5 = nn.Sequential(*f[14].conv[1:], *f[15:])
        self.extras = nn.ModuleList(_extra(ci, co) for ci, co in zip((1280, 512, 256, 256), (512, 256, 256, 128)))
        chans = (576, 1280, 512, 256, 256, 128)
        self.box = nn.ModuleList(_dw_head(c, 24) for c in chans)
        self.cls = nn.ModuleList(_dw_head(c, 6 * classes) for c in chans)

    def forward(self, x):
        maps = [self.c4(x)]
        maps.append(self.c5(maps[0]))
        for e in self.extras:
            maps.append(e(maps[-1]))
        return [h(m) for h, m in zip(self.box, maps)] + [h(m) for h, m in zip(self.cls, maps)]


def _torch_params_macs(module, x):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.eval()(x)
    return sum(p.numel() for p in module.parameters()), counter.get_total_flops() // 2


@pytest.mark.parametrize("spec,module,res", [
    ("zoo:unet?res=64&base=8&classes=3", lambda: _TorchUNet(8, 3), 64),
    ("zoo:ssdlite_mobilenet_v2?res=128&classes=21", lambda: _TorchSSDLite(21), 128),
], ids=["unet", "ssdlite"])
def test_dense_networks_match_plain_torch(spec, module, res):
    params, macs = _torch_params_macs(module(), torch.zeros(1, 3, res, res))
    a = api.analyze(spec)
    assert (a["params"], a["macs"]) == (params, macs)


# -- bad options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,problem", [
    ("zoo:vit_b_16?res=100", "not a multiple of 16"),
    ("zoo:swin_t?res=112", "not a multiple of 32"),
    ("zoo:convnext_tiny?res=16", "out of range"),
    ("zoo:bert_base?seq=513", "out of range"),
    ("zoo:gpt2?seq=0", "out of range"),
    ("zoo:gpt2?classes=10", "unknown option 'classes'"),
    ("zoo:unet?res=72", "not a multiple of 16"),
    ("zoo:unet?base=x", "not an integer"),
    ("zoo:ssdlite_mobilenet_v2?classes=0", "out of range"),
    ("zoo:deit_small?width=2", "unknown option 'width'"),
])
def test_bad_options_raise_spec_error(spec, problem):
    with pytest.raises(SpecError, match=problem) as info:
        build_spec(spec)
    assert info.value.subject == spec
