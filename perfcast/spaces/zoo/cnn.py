"""Convolutional networks of the zoo: ImageNet classifiers built as IR graphs, no framework.

Entries (input 3 x R x R, 1000 classes, default R = 224 unless noted):

========================================  ==========================================================
alexnet, vgg16                            torchvision definitions (no BatchNorm)
resnet18, resnet34, resnet50, resnet101   torchvision ResNet (v1.5: stride on the 3x3 convolution)
densenet121                               torchvision DenseNet-121 (growth 32, blocks 6-12-24-16)
squeezenet1_1                             torchvision SqueezeNet 1.1
shufflenet_v2_x1_0                        torchvision ShuffleNetV2 1.0x
mnasnet1_0                                torchvision MNASNet-A1 1.0
mobilenet_v1                              Howard et al. 2017, as in the TF-slim reference (ReLU6)
mobilenet_v2                              torchvision MobileNetV2
mobilenet_v3_large, mobilenet_v3_small    torchvision MobileNetV3
mobilenet_v3_{large,small}_minimalistic   MobileNetV3 paper / TF-slim: no SE, ReLU, 3x3 kernels only
efficientnet_b0 .. efficientnet_b3        torchvision EfficientNet (R = 224, 240, 288, 300)
efficientnet_lite0 .. efficientnet_lite4  TF EfficientNet-Lite: no SE, ReLU6, stem and head not
                                          scaled, first/last stage not deepened (R = 224, 240,
                                          260, 280, 300)
regnet_y_400mf                            torchvision RegNetY-400MF
========================================  ==========================================================

Options: ``res`` (32..1024; networks whose feature maps would shrink to nothing reject
small values and name the smallest that works), ``classes`` (1..100000) and, for
mobilenet_v1, mobilenet_v2 and every mobilenet_v3 entry, ``width`` (0.25..1.4: channels
``make_divisible(c * width, 8)``; MobileNetV2 keeps torchvision's last-channel rule
``make_divisible(1280 * max(1, width), 8)``, MobileNetV3 scales its last channel).

Operators follow what torchvision's modules compute: BatchNorm kept as its own node,
ReLU6 as Clip, hardswish as HardSwish, SiLU as x * sigmoid(x), squeeze-and-excitation as
global average pool -> 1x1 conv -> activation -> 1x1 conv -> gate -> Mul, ``x.mean([2, 3])``
as ReduceMean (MNASNet, ShuffleNetV2); Dropout is left out (no inference cost).
AlexNet and VGG16 end in torchvision's adaptive average pool to 6x6 / 7x7: a map of
size s >= t becomes an AveragePool with stride s // t and kernel s - (t - 1) * (s // t)
(exactly torchvision's windows when t divides s, e.g. the 1x1 pool at the default
resolution), a smaller map a nearest-neighbour Resize to t x t (exact when s divides t).

Reference numbers at the default resolution (params exact, MACs = torchvision's GFLOPS):
see tests/test_zoo_cnn.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Sequence
from urllib.parse import urlencode

from perfcast.errors import SpecError
from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.registry import option, reject_unknown
from perfcast.spaces.zoo import register_zoo

RES_RANGE = (32, 1024)
CLASSES_RANGE = (1, 100_000)
WIDTH_RANGE = (0.25, 1.4)


# -- options ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NetOptions:
    """What every builder gets: input resolution, classifier size, width multiplier."""

    res: int
    classes: int = 1000
    width: float = 1.0


def spec_string(name: str, options: dict[str, str]) -> str:
    return f"zoo:{name}" + (f"?{urlencode(options)}" if options else "")


def parse_options(spec: str, options: dict[str, str], default_res: int, has_width: bool) -> NetOptions:
    allowed = {"res", "classes"} | ({"width"} if has_width else set())
    reject_unknown(options, allowed, spec)
    res = option(options, "res", int, default_res, *RES_RANGE, spec=spec)
    classes = option(options, "classes", int, 1000, *CLASSES_RANGE, spec=spec)
    width = option(options, "width", float, 1.0, *WIDTH_RANGE, spec=spec) if has_width else 1.0
    if not math.isfinite(width):
        raise SpecError(spec, f"option width={options['width']} is not a finite number")
    return NetOptions(res, classes, width)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never more than 10% down (torchvision, TF)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


# -- layers ----------------------------------------------------------------------------
def conv_bn_act(b: GraphBuilder, x: str, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
                act: str = "relu", eps: float = 1e-5) -> str:
    """Conv (no bias, 'same' padding k // 2) -> BatchNorm -> activation (torchvision's
    Conv2dNormActivation)."""
    return b.act(b.bn(b.conv(x, cout, k, stride, groups=groups), eps), act)


def conv_act(b: GraphBuilder, x: str, cout: int, k: int, stride: int = 1, pad: int | None = None,
             act: str = "relu") -> str:
    """Conv with bias -> activation (networks without BatchNorm)."""
    return b.act(b.conv(x, cout, k, stride, pad, bias=True), act)


def squeeze_excite(b: GraphBuilder, x: str, squeeze: int, act: str, gate: str) -> str:
    """torchvision SqueezeExcitation: gate(fc2(act(fc1(avgpool(x))))) * x, fc = 1x1 conv with bias."""
    channels = b.shape(x)[1]
    s = b.global_avgpool(x)
    s = b.act(b.conv(s, squeeze, 1, bias=True), act)
    s = b.act(b.conv(s, channels, 1, bias=True), gate)
    return b.mul(s, x)


@dataclass(frozen=True)
class MBConv:
    """One inverted-residual block: optional 1x1 expansion, k x k depthwise, optional SE,
    linear 1x1 projection, identity shortcut when stride 1 and channels are kept."""

    kernel: int
    expanded: int
    out: int
    stride: int = 1
    act: str = "relu"
    se: int = 0  # squeeze channels, 0 = no SE
    se_act: str = "relu"
    gate: str = "hsigmoid"


def inverted_residual(b: GraphBuilder, x: str, blk: MBConv, eps: float = 1e-5) -> str:
    """The block of MobileNetV2/V3, MNASNet and EfficientNet; the expansion is skipped
    when it would keep the channel count (torchvision's rule)."""
    cin = b.shape(x)[1]
    y = x
    if blk.expanded != cin:
        y = conv_bn_act(b, y, blk.expanded, 1, act=blk.act, eps=eps)
    y = conv_bn_act(b, y, blk.expanded, blk.kernel, blk.stride, groups=blk.expanded, act=blk.act, eps=eps)
    if blk.se:
        y = squeeze_excite(b, y, blk.se, blk.se_act, blk.gate)
    y = conv_bn_act(b, y, blk.out, 1, act="identity", eps=eps)
    if blk.stride == 1 and cin == blk.out:
        y = b.add(y, x)
    return y


def gap_classifier(b: GraphBuilder, x: str, classes: int) -> str:
    """AdaptiveAvgPool2d(1) -> flatten -> Linear."""
    return b.linear(b.flatten(b.global_avgpool(x)), classes)


def mean_classifier(b: GraphBuilder, x: str, classes: int) -> str:
    """x.mean([2, 3]) -> Linear."""
    return b.linear(b.reduce_mean(x, [2, 3], keepdims=False), classes)


def adaptive_avgpool(b: GraphBuilder, x: str, target: int) -> str:
    """AdaptiveAvgPool2d((t, t)) as ONNX can run it; see the module docstring."""
    size = b.shape(x)[2]
    if size < target:
        return b.resize(x, size=[target, target], mode="nearest")
    stride = size // target
    return b.avgpool(x, size - (target - 1) * stride, stride, count_include_pad=True)


# -- AlexNet, VGG, SqueezeNet -----------------------------------------------------------
def alexnet(b: GraphBuilder, x: str, o: NetOptions) -> str:
    for cout, k, s, p, pool in ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
                                (256, 3, 1, 1, False), (256, 3, 1, 1, True)):
        x = conv_act(b, x, cout, k, s, p)
        if pool:
            x = b.maxpool(x, 3, 2)
    x = b.flatten(adaptive_avgpool(b, x, 6))
    return _mlp_head(b, x, o.classes)


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(b: GraphBuilder, x: str, o: NetOptions) -> str:
    for v in VGG16_CFG:
        x = b.maxpool(x, 2, 2) if v == "M" else conv_act(b, x, v, 3, 1, 1)
    x = b.flatten(adaptive_avgpool(b, x, 7))
    return _mlp_head(b, x, o.classes)


def _mlp_head(b: GraphBuilder, x: str, classes: int) -> str:
    """Linear -> ReLU -> Linear -> ReLU -> Linear (4096 hidden units)."""
    x = b.act(b.linear(x, 4096), "relu")
    x = b.act(b.linear(x, 4096), "relu")
    return b.linear(x, classes)


def _fire(b: GraphBuilder, x: str, squeeze: int, expand: int) -> str:
    s = conv_act(b, x, squeeze, 1)
    return b.concat([conv_act(b, s, expand, 1), conv_act(b, s, expand, 3, 1, 1)])


def squeezenet1_1(b: GraphBuilder, x: str, o: NetOptions) -> str:
    x = b.maxpool(conv_act(b, x, 64, 3, 2, 0), 3, 2, ceil=True)
    for stage, fires in enumerate((((16, 64), (16, 64)), ((32, 128), (32, 128)),
                                    ((48, 192), (48, 192), (64, 256), (64, 256)))):
        if stage:
            x = b.maxpool(x, 3, 2, ceil=True)
        for squeeze, expand in fires:
            x = _fire(b, x, squeeze, expand)
    x = conv_act(b, x, o.classes, 1)
    return b.flatten(b.global_avgpool(x))


# -- ResNet, RegNet ---------------------------------------------------------------------
def _basic_block(b: GraphBuilder, x: str, planes: int, stride: int) -> str:
    y = conv_bn_act(b, x, planes, 3, stride)
    y = conv_bn_act(b, y, planes, 3, act="identity")
    return b.act(b.add(y, _shortcut(b, x, planes, stride)), "relu")


def _bottleneck(b: GraphBuilder, x: str, planes: int, stride: int) -> str:
    y = conv_bn_act(b, x, planes, 1)
    y = conv_bn_act(b, y, planes, 3, stride)
    y = conv_bn_act(b, y, planes * 4, 1, act="identity")
    return b.act(b.add(y, _shortcut(b, x, planes * 4, stride)), "relu")


def _shortcut(b: GraphBuilder, x: str, cout: int, stride: int) -> str:
    """Identity, or 1x1 conv (stride) -> BN when the shape changes."""
    if stride == 1 and b.shape(x)[1] == cout:
        return x
    return conv_bn_act(b, x, cout, 1, stride, act="identity")


def resnet(block: Callable[[GraphBuilder, str, int, int], str], layers: Sequence[int],
           b: GraphBuilder, x: str, o: NetOptions) -> str:
    x = b.maxpool(conv_bn_act(b, x, 64, 7, 2), 3, 2, 1)
    for stage, n in enumerate(layers):
        for i in range(n):
            x = block(b, x, 64 * 2**stage, 2 if (i == 0 and stage > 0) else 1)
    return gap_classifier(b, x, o.classes)


@dataclass(frozen=True)
class RegNetStage:
    width: int
    depth: int
    group_width: int


def regnet_stages(depth: int, w_0: int, w_a: float, w_m: float, group_width: int) -> list[RegNetStage]:
    """torchvision BlockParams.from_init_params with bottleneck multiplier 1: quantised
    linear widths grouped into stages, widths made divisible by the group width."""
    caps = [round(math.log((i * w_a + w_0) / w_0) / math.log(w_m)) for i in range(depth)]
    widths = [round(w_0 * w_m**c / 8) * 8 for c in caps]
    stages: list[list[int]] = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1][1] += 1
        else:
            stages.append([w, 1])
    out = []
    for w, d in stages:
        g = min(group_width, w)
        out.append(RegNetStage(make_divisible(w, g), d, g))
    return out


def regnet_y(depth: int, w_0: int, w_a: float, w_m: float, group_width: int, se_ratio: float,
             b: GraphBuilder, x: str, o: NetOptions) -> str:
    x = conv_bn_act(b, x, 32, 3, 2)
    for stage in regnet_stages(depth, w_0, w_a, w_m, group_width):
        for i in range(stage.depth):
            x = _regnet_block(b, x, stage.width, 2 if i == 0 else 1, stage.group_width, se_ratio)
    return gap_classifier(b, x, o.classes)


def _regnet_block(b: GraphBuilder, x: str, width: int, stride: int, group_width: int, se_ratio: float) -> str:
    """ResBottleneckBlock: 1x1, grouped 3x3 (stride), SE (squeeze relative to the block input), 1x1."""
    width_in = b.shape(x)[1]
    y = conv_bn_act(b, x, width, 1)
    y = conv_bn_act(b, y, width, 3, stride, groups=width // group_width)
    y = squeeze_excite(b, y, int(round(se_ratio * width_in)), "relu", "sigmoid")
    y = conv_bn_act(b, y, width, 1, act="identity")
    return b.act(b.add(_shortcut(b, x, width, stride), y), "relu")


# -- DenseNet, ShuffleNetV2 ------------------------------------------------------------
def densenet(growth: int, blocks: Sequence[int], init: int, bn_size: int,
             b: GraphBuilder, x: str, o: NetOptions) -> str:
    x = b.maxpool(conv_bn_act(b, x, init, 7, 2), 3, 2, 1)
    for i, n in enumerate(blocks):
        x = _dense_block(b, x, n, growth, bn_size)
        if i < len(blocks) - 1:
            x = b.act(b.bn(x), "relu")
            x = b.avgpool(b.conv(x, b.shape(x)[1] // 2, 1), 2, 2, count_include_pad=True)
    return gap_classifier(b, b.act(b.bn(x), "relu"), o.classes)


def _dense_block(b: GraphBuilder, x: str, n: int, growth: int, bn_size: int) -> str:
    """Each layer reads the concatenation of every earlier output: BN-ReLU-1x1-BN-ReLU-3x3."""
    features = [x]
    for _ in range(n):
        y = features[0] if len(features) == 1 else b.concat(features)
        y = b.conv(b.act(b.bn(y), "relu"), bn_size * growth, 1)
        features.append(b.conv(b.act(b.bn(y), "relu"), growth, 3))
    return b.concat(features)


def shufflenet_v2(repeats: Sequence[int], channels: Sequence[int], b: GraphBuilder, x: str, o: NetOptions) -> str:
    x = b.maxpool(conv_bn_act(b, x, channels[0], 3, 2), 3, 2, 1)
    for n, cout in zip(repeats, channels[1:-1]):
        for i in range(n):
            x = _shuffle_unit(b, x, cout, 2 if i == 0 else 1)
    x = conv_bn_act(b, x, channels[-1], 1)
    return mean_classifier(b, x, o.classes)


def _shuffle_unit(b: GraphBuilder, x: str, cout: int, stride: int) -> str:
    """Stride 1: split channels in two, transform one half. Stride 2: a depthwise-separable
    branch and the transform both read the whole input. Then concat and channel shuffle."""
    cin, half = b.shape(x)[1], cout // 2
    if stride == 1:
        left, right = b.split(x, [cin // 2, cin // 2])
    else:
        left = conv_bn_act(b, x, cin, 3, stride, groups=cin, act="identity")
        left = conv_bn_act(b, left, half, 1)
        right = x
    right = conv_bn_act(b, right, half, 1)
    right = conv_bn_act(b, right, half, 3, stride, groups=half, act="identity")
    right = conv_bn_act(b, right, half, 1)
    return _channel_shuffle(b, b.concat([left, right]), 2)


def _channel_shuffle(b: GraphBuilder, x: str, groups: int) -> str:
    n, c, h, w = b.shape(x)
    x = b.reshape(x, [n, groups, c // groups, h, w])
    return b.reshape(b.transpose(x, [0, 2, 1, 3, 4]), [n, -1, h, w])


# -- MobileNets, MNASNet, EfficientNet --------------------------------------------------
MOBILENET_V1_CFG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def mobilenet_v1(b: GraphBuilder, x: str, o: NetOptions) -> str:
    """3x3 conv, 13 depthwise-separable layers (each conv -> BN -> ReLU6), avgpool, FC."""
    x = conv_bn_act(b, x, make_divisible(32 * o.width), 3, 2, act="relu6")
    for c, s in MOBILENET_V1_CFG:
        x = conv_bn_act(b, x, b.shape(x)[1], 3, s, groups=b.shape(x)[1], act="relu6")
        x = conv_bn_act(b, x, make_divisible(c * o.width), 1, act="relu6")
    return gap_classifier(b, x, o.classes)


# expansion t, channels c, repeats n, first stride s
MOBILENET_V2_CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                    (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(b: GraphBuilder, x: str, o: NetOptions) -> str:
    x = conv_bn_act(b, x, make_divisible(32 * o.width), 3, 2, act="relu6")
    for t, c, n, s in MOBILENET_V2_CFG:
        cout = make_divisible(c * o.width)
        for i in range(n):
            hidden = int(round(b.shape(x)[1] * t))
            x = inverted_residual(b, x, MBConv(3, hidden, cout, s if i == 0 else 1, "relu6"))
    x = conv_bn_act(b, x, make_divisible(1280 * max(1.0, o.width)), 1, act="relu6")
    return gap_classifier(b, x, o.classes)


# input, kernel, expanded, out, SE, activation, stride (torchvision / MobileNetV3 paper tables)
MOBILENET_V3_LARGE = (
    (16, 3, 16, 16, False, "relu", 1), (16, 3, 64, 24, False, "relu", 2), (24, 3, 72, 24, False, "relu", 1),
    (24, 5, 72, 40, True, "relu", 2), (40, 5, 120, 40, True, "relu", 1), (40, 5, 120, 40, True, "relu", 1),
    (40, 3, 240, 80, False, "hswish", 2), (80, 3, 200, 80, False, "hswish", 1),
    (80, 3, 184, 80, False, "hswish", 1), (80, 3, 184, 80, False, "hswish", 1),
    (80, 3, 480, 112, True, "hswish", 1), (112, 3, 672, 112, True, "hswish", 1),
    (112, 5, 672, 160, True, "hswish", 2), (160, 5, 960, 160, True, "hswish", 1),
    (160, 5, 960, 160, True, "hswish", 1),
)
MOBILENET_V3_SMALL = (
    (16, 3, 16, 16, True, "relu", 2), (16, 3, 72, 24, False, "relu", 2), (24, 3, 88, 24, False, "relu", 1),
    (24, 5, 96, 40, True, "hswish", 2), (40, 5, 240, 40, True, "hswish", 1), (40, 5, 240, 40, True, "hswish", 1),
    (40, 5, 120, 48, True, "hswish", 1), (48, 5, 144, 48, True, "hswish", 1), (48, 5, 288, 96, True, "hswish", 2),
    (96, 5, 576, 96, True, "hswish", 1), (96, 5, 576, 96, True, "hswish", 1),
)


def mobilenet_v3(cfg: Sequence[tuple], last_channel: int, minimalistic: bool,
                 b: GraphBuilder, x: str, o: NetOptions) -> str:
    """torchvision MobileNetV3 (BatchNorm eps 1e-3); ``minimalistic`` drops SE and
    hardswish and turns 5x5 kernels into 3x3, as the TF-slim minimalistic models."""
    head_act = "relu" if minimalistic else "hswish"
    ch = partial(_scaled, o.width)
    x = conv_bn_act(b, x, ch(cfg[0][0]), 3, 2, act=head_act, eps=1e-3)
    for _, k, exp, out, se, act, s in cfg:
        blk = MBConv(k, ch(exp), ch(out), s, act, make_divisible(ch(exp) // 4) if se else 0, "relu", "hsigmoid")
        if minimalistic:
            blk = replace(blk, kernel=3, act="relu", se=0)
        x = inverted_residual(b, x, blk, eps=1e-3)
    x = conv_bn_act(b, x, 6 * ch(cfg[-1][3]), 1, act=head_act, eps=1e-3)
    x = b.flatten(b.global_avgpool(x))
    x = b.act(b.linear(x, ch(last_channel)), head_act)
    return b.linear(x, o.classes)


def _scaled(width: float, c: int) -> int:
    return make_divisible(c * width)


def mnasnet(b: GraphBuilder, x: str, o: NetOptions) -> str:
    """MNASNet-A1 1.0: stem, separable conv (no skip), 6 stacks of inverted residuals (ReLU)."""
    x = conv_bn_act(b, x, 32, 3, 2)
    x = inverted_residual(b, x, MBConv(3, 32, 16))
    for cout, k, s, t, n in ((24, 3, 2, 3, 3), (40, 5, 2, 3, 3), (80, 5, 2, 6, 3), (96, 3, 1, 6, 2),
                             (192, 5, 2, 6, 4), (320, 3, 1, 6, 1)):
        for i in range(n):
            x = inverted_residual(b, x, MBConv(k, b.shape(x)[1] * t, cout, s if i == 0 else 1))
    x = conv_bn_act(b, x, 1280, 1)
    return mean_classifier(b, x, o.classes)


# expansion, kernel, stride, input, output, repeats (EfficientNet paper Table 1)
EFFICIENTNET_CFG = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


def efficientnet(width: float, depth: float, b: GraphBuilder, x: str, o: NetOptions) -> str:
    """torchvision EfficientNet-B: SiLU, SE (squeeze = block input / 4), head 4 x last width."""
    ch = partial(_scaled, width)
    x = conv_bn_act(b, x, ch(EFFICIENTNET_CFG[0][3]), 3, 2, act="silu")
    for t, k, s, cin, cout, n in EFFICIENTNET_CFG:
        for i in range(math.ceil(n * depth)):
            c_in = b.shape(x)[1]
            blk = MBConv(k, make_divisible(c_in * t), ch(cout), s if i == 0 else 1, "silu",
                         max(1, c_in // 4), "silu", "sigmoid")
            x = inverted_residual(b, x, blk)
    x = conv_bn_act(b, x, 4 * ch(EFFICIENTNET_CFG[-1][4]), 1, act="silu")
    return gap_classifier(b, x, o.classes)


def efficientnet_lite(width: float, depth: float, b: GraphBuilder, x: str, o: NetOptions) -> str:
    """TF EfficientNet-Lite: no SE, ReLU6, 32-channel stem and 1280-channel head whatever the
    width, first and last stage repeats not scaled by depth (BatchNorm eps 1e-3)."""
    ch = partial(_scaled, width)
    x = conv_bn_act(b, x, 32, 3, 2, act="relu6", eps=1e-3)
    last = len(EFFICIENTNET_CFG) - 1
    for j, (t, k, s, _, cout, n) in enumerate(EFFICIENTNET_CFG):
        for i in range(n if j in (0, last) else math.ceil(n * depth)):
            blk = MBConv(k, b.shape(x)[1] * t, ch(cout), s if i == 0 else 1, "relu6")
            x = inverted_residual(b, x, blk, eps=1e-3)
    x = conv_bn_act(b, x, 1280, 1, act="relu6", eps=1e-3)
    return gap_classifier(b, x, o.classes)


# -- registration ----------------------------------------------------------------------
NetBody = Callable[[GraphBuilder, str, NetOptions], str]


@dataclass(frozen=True)
class ZooNet:
    body: NetBody
    res: int = 224
    width: bool = False


_EFFICIENTNET_B = {"b0": (1.0, 1.0, 224), "b1": (1.0, 1.1, 240), "b2": (1.1, 1.2, 288), "b3": (1.2, 1.4, 300)}
_EFFICIENTNET_LITE = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260),
                      "lite3": (1.2, 1.4, 280), "lite4": (1.4, 1.8, 300)}

NETS: dict[str, ZooNet] = {
    "alexnet": ZooNet(alexnet),
    "vgg16": ZooNet(vgg16),
    "resnet18": ZooNet(partial(resnet, _basic_block, (2, 2, 2, 2))),
    "resnet34": ZooNet(partial(resnet, _basic_block, (3, 4, 6, 3))),
    "resnet50": ZooNet(partial(resnet, _bottleneck, (3, 4, 6, 3))),
    "resnet101": ZooNet(partial(resnet, _bottleneck, (3, 4, 23, 3))),
    "densenet121": ZooNet(partial(densenet, 32, (6, 12, 24, 16), 64, 4)),
    "squeezenet1_1": ZooNet(squeezenet1_1),
    "shufflenet_v2_x1_0": ZooNet(partial(shufflenet_v2, (4, 8, 4), (24, 116, 232, 464, 1024))),
    "mnasnet1_0": ZooNet(mnasnet),
    "mobilenet_v1": ZooNet(mobilenet_v1, width=True),
    "mobilenet_v2": ZooNet(mobilenet_v2, width=True),
    "mobilenet_v3_large": ZooNet(partial(mobilenet_v3, MOBILENET_V3_LARGE, 1280, False), width=True),
    "mobilenet_v3_small": ZooNet(partial(mobilenet_v3, MOBILENET_V3_SMALL, 1024, False), width=True),
    "mobilenet_v3_large_minimalistic": ZooNet(partial(mobilenet_v3, MOBILENET_V3_LARGE, 1280, True), width=True),
    "mobilenet_v3_small_minimalistic": ZooNet(partial(mobilenet_v3, MOBILENET_V3_SMALL, 1024, True), width=True),
    **{f"efficientnet_{k}": ZooNet(partial(efficientnet, w, d), res) for k, (w, d, res) in _EFFICIENTNET_B.items()},
    **{f"efficientnet_{k}": ZooNet(partial(efficientnet_lite, w, d), res)
       for k, (w, d, res) in _EFFICIENTNET_LITE.items()},
    "regnet_y_400mf": ZooNet(partial(regnet_y, 16, 48, 27.89, 2.09, 8, 0.25)),
}


def build_net(name: str, net: ZooNet, options: dict[str, str], batch_size: int) -> Graph:
    spec = spec_string(name, options)
    o = parse_options(spec, options, net.res, net.width)
    graph = _build(spec, net, o, batch_size)
    if not _shapes_positive(graph):
        smallest = _smallest_res(net, o, batch_size)
        raise SpecError(spec, f"res={o.res} is too small for {name}: a feature map shrinks to nothing "
                              f"(smallest res: {smallest})")
    return graph


def _build(spec: str, net: ZooNet, o: NetOptions, batch_size: int) -> Graph:
    b = GraphBuilder(spec)
    x = b.input((batch_size, 3, o.res, o.res))
    b.output(net.body(b, x, o))
    return b.build()


def _shapes_positive(graph: Graph) -> bool:
    return all(d > 0 for t in graph.tensors.values() if t.shape for d in t.shape)


def _smallest_res(net: ZooNet, o: NetOptions, batch_size: int) -> int:
    """Bisect the resolution range: a larger input never shrinks a feature map."""
    lo, hi = o.res, RES_RANGE[1]
    while lo < hi:
        mid = (lo + hi) // 2
        if _shapes_positive(_build("", net, replace(o, res=mid), batch_size)):
            hi = mid
        else:
            lo = mid + 1
    return lo


for _name, _net in NETS.items():
    register_zoo(_name)(partial(build_net, _name, _net))
