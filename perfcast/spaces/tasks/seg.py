"""``seg:<seed>``: semantic segmentation networks on a 1x3xRxR image, output
(1, classes, R, R) logits.

| dimension | values |
|---|---|
| family | unet, deeplab (uniform) |
| res | 64-512 step 32 |
| classes | 2-32 (Cityscapes 19, VOC 21 inside) |

- unet (Ronneberger et al., 2015, with padding and BatchNorm): depth 3-5 down/up
  levels, base width 8-64 doubling per level (at most 1024), double 3x3 conv + BN +
  ReLU per level, 2x2 max pool down, up by 2x2 ConvTranspose or bilinear Resize + 1x1
  conv, skip concatenation, 1x1 conv to the classes.
- deeplab: a MobileNet-like backbone (as ``imgcls`` family mobilenet) at output stride
  16 (stages past it dilated by 2) with either an ASPP head (DeepLabV3: 1x1 branch, three
  3x3 branches dilated at rates (2,4,6), (3,6,9) or (6,12,18), plain or depthwise-
  separable, image pooling branch, 64-256 channels) or an LR-ASPP head (MobileNetV3: a
  1x1 branch gated by a pooled sigmoid branch, 64-256 channels, fused with the stride-8
  features); logits are resized bilinearly back to R x R.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.tasks._cnn import (
    Backbone, backbone_features, conv_bn, dilate_after, draw_mobile, last_index_at_stride,
)
from perfcast.spaces.tasks._common import Choice, Ints, Sampler, TaskSpace, define_space

FAMILIES = ("unet", "deeplab")
OPTIONS = {"family": Choice(FAMILIES), "res": Ints(64, 512, 32), "classes": Ints(2, 32)}
UNET_BASES = (8, 16, 24, 32, 48, 64)
ASPP_RATES = ((2, 4, 6), (3, 6, 9), (6, 12, 18))


@dataclass(frozen=True)
class UNetConfig:
    depth: int
    base: int
    upsample: str  # transpose | resize


@dataclass(frozen=True)
class DeepLabConfig:
    backbone: Backbone
    head: str  # aspp | lraspp
    width: int
    rates: tuple[int, ...] = ()
    separable: bool = False


@dataclass(frozen=True)
class SegConfig:
    family: str
    resolution: int
    classes: int
    unet: UNetConfig | None = None
    deeplab: DeepLabConfig | None = None


def draw(s: Sampler) -> SegConfig:
    family, res, classes = s.draw("family"), s.draw("res"), s.draw("classes")
    if family == "unet":
        return SegConfig(family, res, classes, unet=UNetConfig(s.integer(3, 5), s.pick(UNET_BASES),
                                                               s.pick(("transpose", "resize"))))
    backbone = dilate_after(draw_mobile(s), 16)
    head = s.pick(("aspp", "lraspp"))
    width = s.pick((64, 128, 256))
    rates, separable = (s.pick(ASPP_RATES), s.flip()) if head == "aspp" else ((), False)
    return SegConfig(family, res, classes, deeplab=DeepLabConfig(backbone, head, width, rates, separable))


def double_conv(b: GraphBuilder, x: str, width: int) -> str:
    return conv_bn(b, conv_bn(b, x, width, 3, act="relu"), width, 3, act="relu")


def unet(b: GraphBuilder, x: str, cfg: UNetConfig, classes: int) -> str:
    widths = [min(1024, cfg.base * 2**i) for i in range(cfg.depth + 1)]
    skips = []
    for i, width in enumerate(widths[:-1]):
        with b.scope(f"down{i}"):
            x = double_conv(b, x, width)
            skips.append(x)
            x = b.maxpool(x, 2)
    x = double_conv(b, x, widths[-1])
    for i, (width, skip) in enumerate(zip(reversed(widths[:-1]), reversed(skips))):
        with b.scope(f"up{i}"):
            if cfg.upsample == "transpose":
                x = b.conv_transpose(x, width, 2, 2, bias=True)
            else:
                x = b.conv(b.resize(x, size=b.shape(skip)[2:], mode="linear"), width, 1, bias=True)
            x = double_conv(b, b.concat([skip, x]), width)
    return b.conv(x, classes, 1, bias=True)


def separable_conv(b: GraphBuilder, x: str, width: int, dilation: int) -> str:
    c = b.shape(x)[1]
    y = conv_bn(b, x, c, 3, groups=c, dilation=dilation, act="relu")
    return conv_bn(b, y, width, 1, act="relu")


def aspp(b: GraphBuilder, x: str, cfg: DeepLabConfig) -> str:
    size = b.shape(x)[2:]
    branches = [conv_bn(b, x, cfg.width, 1, act="relu")]
    for rate in cfg.rates:
        if cfg.separable:
            branches.append(separable_conv(b, x, cfg.width, rate))
        else:
            branches.append(conv_bn(b, x, cfg.width, 3, dilation=rate, act="relu"))
    pooled = conv_bn(b, b.global_avgpool(x), cfg.width, 1, act="relu")
    branches.append(b.resize(pooled, size=size, mode="linear"))
    y = conv_bn(b, b.concat(branches), cfg.width, 1, act="relu")
    return conv_bn(b, y, cfg.width, 3, act="relu")


def lraspp(b: GraphBuilder, high: str, low: str, cfg: DeepLabConfig, classes: int) -> str:
    y = conv_bn(b, high, cfg.width, 1, act="relu")
    gate = b.act(b.conv(b.global_avgpool(high), cfg.width, 1), "sigmoid")
    y = b.resize(b.mul(y, gate), size=b.shape(low)[2:], mode="linear")
    return b.add(b.conv(low, classes, 1, bias=True), b.conv(y, classes, 1, bias=True))


def deeplab(b: GraphBuilder, x: str, cfg: DeepLabConfig, classes: int) -> str:
    size = b.shape(x)[2:]
    feats = backbone_features(b, x, cfg.backbone)
    if cfg.head == "aspp":
        y = b.conv(aspp(b, feats[-1], cfg), classes, 1, bias=True)
    else:
        y = lraspp(b, feats[-1], feats[last_index_at_stride(cfg.backbone, 8)], cfg, classes)
    return b.resize(y, size=size, mode="linear")


def build(cfg: SegConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x = b.input((batch_size, 3, cfg.resolution, cfg.resolution))
    if cfg.unet is not None:
        b.output(unet(b, x, cfg.unet, cfg.classes))
    else:
        b.output(deeplab(b, x, cfg.deeplab, cfg.classes))
    return b.build()


SPACE = define_space(TaskSpace("seg", OPTIONS, draw, build, keep=("family",)),
                     "segmentation: U-Net-like and DeepLab-lite (ASPP / LR-ASPP) networks, e.g. seg:2?family=unet")

sample = SPACE.sample
describe = SPACE.describe
