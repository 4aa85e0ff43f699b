"""``imgcls:<seed>``: image classifiers from four families, on a 1x3xRxR image.

| dimension | values |
|---|---|
| family | resnet, mobilenet, efficientnet, regnet (uniform) |
| res | 96-320 step 16 |
| classes | 10-1000 |

- resnet: 7x7/2 stem + 3x3/2 max pool, four stages of basic or bottleneck blocks
  (inner width = width / 4), base width 16-96, stage widths base x 1, 2, 4, 8 (x4 for
  bottleneck outputs), stage depths 1-4, 1-6, 1-12, 1-4 (ResNet-18/34/50 lie inside).
- mobilenet: MobileNetV2 stage layout x width multiplier 0.35-1.4; per stage kernel
  3/5/7, expansion 1-6, depth 1-4, SE or not, relu/relu6/hswish/silu; final 1x1 conv of
  512-1280 channels; optionally a hidden classifier layer of 1024 or 1280 (MobileNetV3).
- efficientnet: the EfficientNet-B0 table (MBConv, SE 0.25, SiLU) with width multiplier
  0.5-2.0 and depth multiplier 0.5-3.1 (B0..B7 use 1.0-2.0 and 1.0-3.1).
- regnet: the RegNet design space (Radosavovic et al. 2020): depth 6-24, w0 24-128,
  wa 8-64, wm 2.0-3.0, group width 8-64, bottleneck ratio 1/2/4, SE (RegNetY) or not;
  the quantised linear widths must give four stages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.tasks._cnn import Backbone, Stage, backbone_features, classifier, draw_mobile
from perfcast.spaces.tasks._common import Choice, Ints, Redraw, Sampler, TaskSpace, define_space, make_divisible

FAMILIES = ("resnet", "mobilenet", "efficientnet", "regnet")
OPTIONS = {"family": Choice(FAMILIES), "res": Ints(96, 320, 16), "classes": Ints(10, 1000)}

RESNET_BASES = (16, 24, 32, 48, 64, 80, 96)
RESNET_DEPTHS = (4, 6, 12, 4)
# EfficientNet-B0: (expansion, kernel, stride, width, repeats)
EFFICIENTNET_B0 = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                   (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
EFFICIENTNET_WIDTHS = (0.5, 0.75, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0)
EFFICIENTNET_DEPTHS = (0.5, 0.75, 1.0, 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1)
REGNET_GROUP_WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64)


@dataclass(frozen=True)
class ImgClsConfig:
    family: str
    resolution: int
    classes: int
    backbone: Backbone
    hidden: int = 0  # width of a hidden classifier layer (0: none)


def resnet_backbone(block: str, base: int, depths: tuple[int, ...]) -> Backbone:
    """torchvision's ResNet: ``resnet_backbone("basic", 64, (2, 2, 2, 2))`` is ResNet-18,
    ``("bottleneck", 64, (3, 4, 6, 3))`` ResNet-50."""
    out = 4 if block == "bottleneck" else 1
    stages = tuple(Stage(block, d, base * 2**i * out, 1 if i == 0 else 2, expand=1 / out) for i, d in enumerate(depths))
    return Backbone("resnet", base, "relu", stages)


def efficientnet_backbone(width_mult: float, depth_mult: float) -> Backbone:
    """torchvision's EfficientNet: (1.0, 1.0) is B0, (1.1, 1.2) B2, (2.0, 3.1) B7."""
    stages = tuple(
        Stage("ir", math.ceil(r * depth_mult), make_divisible(w * width_mult), st, kernel=k, expand=float(e),
              se_ratio=0.25 / e, se_divisor=1, act="silu")
        for e, k, st, w, r in EFFICIENTNET_B0
    )
    return Backbone("plain", make_divisible(32 * width_mult), "silu", stages, 4 * stages[-1].width, "silu")


def regnet_widths(depth: int, w0: int, wa: float, wm: float, q: int = 8) -> list[int]:
    """Per-block widths of RegNet's quantised linear rule: u_j = w0 + wa*j,
    w_j = w0 * wm**round(log(u_j / w0) / log(wm)), rounded to a multiple of q."""
    out = []
    for j in range(depth):
        step = round(math.log((w0 + wa * j) / w0) / math.log(wm))
        out.append(int(round(w0 * wm**step / q) * q))
    return out


def regnet_backbone(depth: int, w0: int, wa: float, wm: float, group_width: int, bottleneck: int = 1,
                    se: bool = False) -> Backbone | None:
    """torchvision's RegNet from its design parameters (None unless they give four
    stages): (22, 24, 24.48, 2.54, 16) is RegNetX-400MF, (16, 48, 27.89, 2.09, 8, se=True)
    RegNetY-400MF. Widths are made compatible with the group width as torchvision does."""
    widths = regnet_widths(depth, w0, wa, wm)
    runs = [(w, widths.count(w)) for w in dict.fromkeys(widths)]
    if len(runs) != 4:
        return None
    stages = []
    for w, d in runs:
        inner = int(w / bottleneck)
        g = min(group_width, inner)
        inner = make_divisible(inner, g)
        stages.append(Stage("bottleneck", d, int(inner * bottleneck), 2, expand=1 / bottleneck, group_width=g,
                            se_ratio=0.25 if se else 0.0))
    return Backbone("plain", 32, "relu", tuple(stages))


def draw_resnet(s: Sampler) -> tuple[Backbone, int]:
    block, base = s.pick(("basic", "bottleneck")), s.pick(RESNET_BASES)
    return resnet_backbone(block, base, tuple(s.integer(1, hi) for hi in RESNET_DEPTHS)), 0


def draw_mobilenet(s: Sampler) -> tuple[Backbone, int]:
    return draw_mobile(s), s.pick((0, 1024, 1280))


def draw_efficientnet(s: Sampler) -> tuple[Backbone, int]:
    return efficientnet_backbone(s.pick(EFFICIENTNET_WIDTHS), s.pick(EFFICIENTNET_DEPTHS)), 0


def draw_regnet(s: Sampler) -> tuple[Backbone, int]:
    se, bottleneck = s.flip(), s.pick((1, 2, 4))
    for _ in range(100):
        net = regnet_backbone(s.integer(6, 24), s.integer(24, 128, 8), float(s.integer(8, 64)), s.integer(20, 30) / 10,
                              s.pick(REGNET_GROUP_WIDTHS), bottleneck, se)
        if net is not None:
            return net, 0
    raise Redraw("no four-stage RegNet drawn")


DRAW_FAMILY = {"resnet": draw_resnet, "mobilenet": draw_mobilenet, "efficientnet": draw_efficientnet,
               "regnet": draw_regnet}


def draw(s: Sampler) -> ImgClsConfig:
    family = s.draw("family")
    res, classes = s.draw("res"), s.draw("classes")
    net, hidden = DRAW_FAMILY[family](s)
    return ImgClsConfig(family, res, classes, net, hidden)


def build(cfg: ImgClsConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x = b.input((batch_size, 3, cfg.resolution, cfg.resolution))
    feats = backbone_features(b, x, cfg.backbone)
    b.output(classifier(b, feats[-1], cfg.classes, cfg.hidden, cfg.backbone.head_act))
    return b.build()


SPACE = define_space(TaskSpace("imgcls", OPTIONS, draw, build, keep=("family",)),
                     "image classifiers (ResNet/MobileNet/EfficientNet/RegNet-like), e.g. imgcls:5?family=resnet")

sample = SPACE.sample
describe = SPACE.describe
