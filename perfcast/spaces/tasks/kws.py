"""``kws:<seed>``: keyword-spotting networks, 12-35 classes (Speech Commands v2 has 12
and 35-word task variants).

| dimension | values |
|---|---|
| family | dscnn, raw1d (uniform) |
| classes | 12-35 |

- dscnn: DS-CNN (Zhang et al., "Hello Edge", 2017) on a 1x1x49x10 MFCC map: a first
  conv with kernel 3-10 x 3-4 and stride 1-2 x 1-2, width 32-276, then 2-6
  depthwise-separable blocks (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU) of
  the same width, global average pool and a linear layer. Hello Edge's S/M/L models
  (64/172/276 wide, 4/4/5 blocks) lie inside.
- raw1d: M-series 1-D conv nets on raw audio (Dai et al., 2017) on a 1x1x16000
  waveform: a first conv with kernel 40-160 and stride 4-16, width 16-128, then 2-4
  stages of 1-4 (conv k3 + BN + ReLU) each doubling the width (at most 512), with a
  max pool of 4 before each stage, global average pool and a linear layer. M3/M5/M11
  lie inside.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.tasks._cnn import classifier, conv_bn
from perfcast.spaces.tasks._common import Choice, Ints, Sampler, TaskSpace, define_space

FAMILIES = ("dscnn", "raw1d")
OPTIONS = {"family": Choice(FAMILIES), "classes": Ints(12, 35)}
MFCC_SHAPE = (49, 10)
AUDIO_SAMPLES = 16000
DSCNN_WIDTHS = (32, 48, 64, 96, 128, 172, 196, 256, 276)
RAW_WIDTHS = (16, 24, 32, 48, 64, 96, 128)


@dataclass(frozen=True)
class KwsConfig:
    """``kernel`` and ``stride`` are those of the first conv ((h, w) for dscnn, (k,) for
    raw1d); ``widths[i]`` and ``depths[i]`` describe block / stage i."""

    family: str
    classes: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    first_width: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]


def draw_dscnn(s: Sampler, classes: int) -> KwsConfig:
    kernel = (s.pick((3, 5, 10)), s.pick((3, 4)))
    stride = (s.integer(1, 2), s.integer(1, 2))
    width = s.pick(DSCNN_WIDTHS)
    blocks = s.integer(2, 6)
    return KwsConfig("dscnn", classes, kernel, stride, width, (width,) * blocks, (1,) * blocks)


def draw_raw1d(s: Sampler, classes: int) -> KwsConfig:
    kernel, stride = s.pick((40, 80, 160)), s.pick((4, 8, 16))
    width = s.pick(RAW_WIDTHS)
    n = s.integer(2, 4)
    widths = tuple(min(512, width * 2 ** (i + 1)) for i in range(n))
    depths = tuple(s.integer(1, 4) for _ in range(n))
    return KwsConfig("raw1d", classes, (kernel,), (stride,), width, widths, depths)


def draw(s: Sampler) -> KwsConfig:
    family, classes = s.draw("family"), s.draw("classes")
    return (draw_dscnn if family == "dscnn" else draw_raw1d)(s, classes)


def build(cfg: KwsConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    if cfg.family == "dscnn":
        x = b.input((batch_size, 1, *MFCC_SHAPE))
        x = conv_bn(b, x, cfg.first_width, cfg.kernel, cfg.stride, act="relu")
        for i, width in enumerate(cfg.widths):
            with b.scope(f"ds{i}"):
                x = conv_bn(b, x, b.shape(x)[1], 3, groups=b.shape(x)[1], act="relu")
                x = conv_bn(b, x, width, 1, act="relu")
    else:
        x = b.input((batch_size, 1, AUDIO_SAMPLES))
        x = conv_bn(b, x, cfg.first_width, cfg.kernel, cfg.stride, act="relu")
        for i, (width, depth) in enumerate(zip(cfg.widths, cfg.depths)):
            with b.scope(f"stage{i}"):
                x = b.maxpool(x, 4)
                for _ in range(depth):
                    x = conv_bn(b, x, width, 3, act="relu")
    b.output(classifier(b, x, cfg.classes))
    return b.build()


SPACE = define_space(TaskSpace("kws", OPTIONS, draw, build, keep=("family",)),
                     "keyword spotting: DS-CNN on 49x10 MFCC and 1-D conv nets on raw 16 kHz audio, e.g. kws:17")

sample = SPACE.sample
describe = SPACE.describe
