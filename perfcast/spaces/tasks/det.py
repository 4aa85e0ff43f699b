"""``det:<seed>``: SSDLite detectors (Sandler et al., 2018) on MobileNet-like backbones,
on a 1x3xRxR image. Outputs class logits (1, A, classes) and box offsets (1, A, 4)
for all A anchors.

| dimension | values |
|---|---|
| res | 160-512 step 32 |
| classes | 2-91 (91: COCO with background) |
| anchors | 4-6 per location, every feature map |
| maps | 4-6 feature maps |
| backbone | MobileNet-like as in ``imgcls`` family mobilenet (width x0.35-1.4, kernels 3/5/7, expansions 1-6, SE or not, relu/relu6/hswish/silu) |
| extra width | 0.25, 0.5 or 1 x (512, 256, 256, 128) |

Feature maps: the last stride-16 stage output, the backbone's final 1x1 conv (stride
32), then ``maps - 2`` extra layers (1x1 conv to half width, 3x3/2 depthwise, 1x1 conv,
BN + ReLU6 after each). Each map has an SSDLite head per output: 3x3 depthwise conv +
BN + ReLU6 and a 1x1 conv with bias, transposed to NHWC and reshaped to
(1, H*W*anchors, n).
"""

from __future__ import annotations

from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.tasks._cnn import Backbone, backbone_features, conv_bn, draw_mobile, last_index_at_stride
from perfcast.spaces.tasks._common import Ints, Sampler, TaskSpace, define_space, make_divisible

OPTIONS = {"res": Ints(160, 512, 32), "classes": Ints(2, 91), "anchors": Ints(4, 6), "maps": Ints(4, 6)}
EXTRA_WIDTHS = (512, 256, 256, 128)


@dataclass(frozen=True)
class DetConfig:
    resolution: int
    classes: int
    anchors: int
    maps: int
    backbone: Backbone
    extras: tuple[int, ...]  # output widths of the extra feature layers


def draw(s: Sampler) -> DetConfig:
    res, classes, anchors, maps = (s.draw(k) for k in ("res", "classes", "anchors", "maps"))
    backbone = draw_mobile(s)
    mult = s.pick((0.25, 0.5, 1.0))
    extras = tuple(make_divisible(w * mult) for w in EXTRA_WIDTHS[: maps - 2])
    return DetConfig(res, classes, anchors, maps, backbone, extras)


def extra_layer(b: GraphBuilder, x: str, width: int) -> str:
    mid = make_divisible(width // 2)
    y = conv_bn(b, x, mid, 1, act="relu6")
    y = conv_bn(b, y, mid, 3, 2, groups=mid, act="relu6")
    return conv_bn(b, y, width, 1, act="relu6")


def ssdlite_head(b: GraphBuilder, x: str, anchors: int, n: int) -> str:
    """Per-anchor outputs of one feature map, as (batch, H*W*anchors, n)."""
    c = b.shape(x)[1]
    y = conv_bn(b, x, c, 3, groups=c, act="relu6")
    y = b.transpose(b.conv(y, anchors * n, 1, bias=True), (0, 2, 3, 1))
    return b.reshape(y, (b.shape(y)[0], -1, n))


def build(cfg: DetConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x = b.input((batch_size, 3, cfg.resolution, cfg.resolution))
    feats = backbone_features(b, x, cfg.backbone)
    maps = [feats[last_index_at_stride(cfg.backbone, 16)], feats[-1]]
    for i, width in enumerate(cfg.extras):
        with b.scope(f"extra{i}"):
            maps.append(extra_layer(b, maps[-1], width))
    scores, boxes = [], []
    for i, m in enumerate(maps):
        with b.scope(f"head{i}"):
            scores.append(ssdlite_head(b, m, cfg.anchors, cfg.classes))
            boxes.append(ssdlite_head(b, m, cfg.anchors, 4))
    b.output(b.concat(scores, axis=1))
    b.output(b.concat(boxes, axis=1))
    return b.build()


SPACE = define_space(TaskSpace("det", OPTIONS, draw, build),
                     "SSDLite detection heads on MobileNet-like backbones, e.g. det:4?res=320")

sample = SPACE.sample
describe = SPACE.describe
