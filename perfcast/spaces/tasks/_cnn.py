"""Convolutional building blocks and backbone samplers shared by the task spaces.

Blocks follow the torchvision reference designs: ResNet basic and bottleneck blocks
(stride on the 3x3 conv, projection shortcut when the shape changes), the inverted
residual / MBConv block of MobileNetV2/V3 and EfficientNet, squeeze-and-excitation
with a sigmoid (hard sigmoid in hswish networks) gate, and RegNet's X/Y block
(a bottleneck with grouped 3x3 convolution, optional SE).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from perfcast.ir.builder import GraphBuilder
from perfcast.spaces.tasks._common import Sampler, make_divisible

ACTS = ("relu", "relu6", "hswish", "silu")


@dataclass(frozen=True)
class Stage:
    """A run of ``depth`` blocks; the first has ``stride``, the others stride 1.

    ``block`` is ``basic``, ``bottleneck`` (inner width ``width * expand``, 3x3 conv
    in groups of ``group_width`` channels, 0 for one group) or ``ir`` (inverted
    residual: 1x1 expansion by ``expand``, depthwise ``kernel``, 1x1 projection).
    ``se_ratio`` sizes the squeeze-excitation bottleneck (0: none): relative to the
    expanded width rounded to a multiple of ``se_divisor`` in ``ir`` blocks
    (MobileNetV3 rounds to 8, EfficientNet to 1), relative to the block input in
    ``bottleneck`` blocks (RegNetY).
    """

    block: str
    depth: int
    width: int
    stride: int
    kernel: int = 3
    expand: float = 1.0
    group_width: int = 0
    se_ratio: float = 0.0
    se_divisor: int = 8
    act: str = "relu"
    dilation: int = 1


@dataclass(frozen=True)
class Backbone:
    """A stem, stages and an optional final 1x1 conv (``head`` channels, 0: none).

    ``stem_style`` is ``resnet`` (7x7/2 conv and 3x3/2 max pool) or ``plain``
    (3x3/2 conv).
    """

    stem_style: str
    stem: int
    stem_act: str
    stages: tuple[Stage, ...]
    head: int = 0
    head_act: str = "relu"

    @property
    def strides(self) -> tuple[int, ...]:
        """Cumulative stride after each stage."""
        total = 4 if self.stem_style == "resnet" else 2
        out = []
        for st in self.stages:
            total *= st.stride
            out.append(total)
        return tuple(out)


# -- layers -----------------------------------------------------------------------------
def conv_bn(b: GraphBuilder, x: str, cout: int, k: int, stride: int = 1, groups: int = 1,
            dilation: int = 1, act: str = "identity") -> str:
    """Conv (no bias) + BatchNorm + activation."""
    y = b.conv(x, cout, k, stride, groups=groups, dilation=dilation)
    return b.act(b.bn(y), act)


def squeeze_excite(b: GraphBuilder, x: str, squeeze: int, act: str = "relu", gate: str = "sigmoid") -> str:
    c = b.shape(x)[1]
    s = b.global_avgpool(x)
    s = b.act(b.conv(s, squeeze, 1, bias=True), act)
    s = b.act(b.conv(s, c, 1, bias=True), gate)
    return b.mul(x, s)


def se_acts(act: str) -> tuple[str, str]:
    """The SE inner activation and gate that go with a network activation:
    SiLU networks (EfficientNet) use SiLU and sigmoid, hswish networks (MobileNetV3)
    ReLU and hard sigmoid, the others ReLU and sigmoid."""
    if act == "silu":
        return "silu", "sigmoid"
    return "relu", "hsigmoid" if act == "hswish" else "sigmoid"


def inverted_residual(b: GraphBuilder, x: str, cout: int, k: int, stride: int, expand: float,
                      se_ratio: float, act: str, dilation: int = 1, se_divisor: int = 8) -> str:
    cin = b.shape(x)[1]
    hidden = make_divisible(cin * expand) if expand != 1 else cin
    y = conv_bn(b, x, hidden, 1, act=act) if expand != 1 else x
    y = conv_bn(b, y, hidden, k, stride, groups=hidden, dilation=dilation, act=act)
    if se_ratio:
        se_act, gate = se_acts(act)
        y = squeeze_excite(b, y, make_divisible(hidden * se_ratio, se_divisor), se_act, gate)
    y = conv_bn(b, y, cout, 1)
    return b.add(x, y) if stride == 1 and cin == cout else y


def basic_block(b: GraphBuilder, x: str, cout: int, stride: int, act: str = "relu") -> str:
    cin = b.shape(x)[1]
    y = conv_bn(b, x, cout, 3, stride, act=act)
    y = conv_bn(b, y, cout, 3)
    short = conv_bn(b, x, cout, 1, stride) if stride != 1 or cin != cout else x
    return b.act(b.add(y, short), act)


def bottleneck_block(b: GraphBuilder, x: str, cout: int, stride: int, expand: float, group_width: int,
                     se_ratio: float, act: str = "relu", dilation: int = 1) -> str:
    cin = b.shape(x)[1]
    inner = round(cout * expand)
    groups = inner // group_width if group_width else 1
    y = conv_bn(b, x, inner, 1, act=act)
    y = conv_bn(b, y, inner, 3, stride, groups=groups, dilation=dilation, act=act)
    if se_ratio:
        se_act, gate = se_acts(act)
        y = squeeze_excite(b, y, max(1, round(cin * se_ratio)), se_act, gate)
    y = conv_bn(b, y, cout, 1)
    short = conv_bn(b, x, cout, 1, stride) if stride != 1 or cin != cout else x
    return b.act(b.add(y, short), act)


def stage_blocks(b: GraphBuilder, x: str, st: Stage) -> str:
    for i in range(st.depth):
        stride = st.stride if i == 0 else 1
        if st.block == "basic":
            x = basic_block(b, x, st.width, stride, st.act)
        elif st.block == "bottleneck":
            x = bottleneck_block(b, x, st.width, stride, st.expand, st.group_width, st.se_ratio, st.act, st.dilation)
        elif st.block == "ir":
            x = inverted_residual(b, x, st.width, st.kernel, stride, st.expand, st.se_ratio, st.act, st.dilation,
                                  st.se_divisor)
        else:
            raise ValueError(f"unknown block {st.block!r}")
    return x


def backbone_features(b: GraphBuilder, x: str, net: Backbone) -> list[str]:
    """The stage outputs, then the head conv output when there is one."""
    if net.stem_style == "resnet":
        x = b.maxpool(conv_bn(b, x, net.stem, 7, 2, act=net.stem_act), 3, 2, pad=1)
    else:
        x = conv_bn(b, x, net.stem, 3, 2, act=net.stem_act)
    feats = []
    for i, st in enumerate(net.stages):
        with b.scope(f"stage{i}"):
            x = stage_blocks(b, x, st)
        feats.append(x)
    if net.head:
        feats.append(conv_bn(b, x, net.head, 1, act=net.head_act))
    return feats


def classifier(b: GraphBuilder, x: str, classes: int, hidden: int = 0, act: str = "hswish") -> str:
    """Global average pool, an optional hidden linear layer, and the class logits."""
    y = b.flatten(b.global_avgpool(x))
    if hidden:
        y = b.act(b.linear(y, hidden), act)
    return b.linear(y, classes)


# -- samplers ---------------------------------------------------------------------------
# MobileNetV2's stage layout: (width, stride); the first stage has one block and no expansion.
MOBILE_LAYOUT = ((16, 1), (24, 2), (32, 2), (64, 2), (96, 1), (160, 2), (320, 1))
MOBILE_WIDTH_MULTS = (0.35, 0.5, 0.75, 1.0, 1.25, 1.4)
MOBILE_HEADS = (512, 640, 960, 1024, 1280)


def draw_mobile(s: Sampler) -> Backbone:
    """A MobileNet-like backbone: the V2 stage layout scaled by a width multiplier,
    per stage a depthwise kernel of 3/5/7, an expansion of 1-6, depth 1-4 (one block in
    the first stage), SE or not, and an activation among relu/relu6/hswish/silu."""
    mult = s.pick(MOBILE_WIDTH_MULTS)
    stages = []
    for i, (width, stride) in enumerate(MOBILE_LAYOUT):
        stages.append(Stage(
            block="ir",
            depth=1 if i == 0 else s.integer(1, 4),
            width=make_divisible(width * mult),
            stride=stride,
            kernel=s.pick((3, 5, 7)),
            expand=1.0 if i == 0 else float(s.integer(1, 6)),
            se_ratio=s.pick((0.0, 0.25)),
            act=s.pick(ACTS),
        ))
    return Backbone("plain", make_divisible(32 * mult), s.pick(ACTS), tuple(stages), s.pick(MOBILE_HEADS), s.pick(ACTS))


def dilate_after(net: Backbone, output_stride: int) -> Backbone:
    """Stages past ``output_stride`` keep the resolution: stride 1 and dilation 2
    (as DeepLabV3 does with the last MobileNet stages)."""
    stages, total = [], 4 if net.stem_style == "resnet" else 2
    for st in net.stages:
        if total * st.stride > output_stride:
            st = replace(st, stride=1, dilation=2)
        total *= st.stride
        stages.append(st)
    return replace(net, stages=tuple(stages))


def last_index_at_stride(net: Backbone, stride: int) -> int:
    """Index of the last stage whose output has the cumulative ``stride``."""
    return max(i for i, s in enumerate(net.strides) if s == stride)

