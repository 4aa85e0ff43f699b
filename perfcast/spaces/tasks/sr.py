"""``sr:<seed>``: single-image super-resolution networks on a 1xCxHxW low-resolution
image, output 1xCx(H*scale)x(W*scale).

| dimension | values |
|---|---|
| family | espcn, fsrcnn, edsr (uniform) |
| scale | 2, 3, 4 |
| channels | 1 (luma), 3 (RGB) |
| h, w | 32-256 step 8, each |

- espcn (Shi et al., 2016): a 5x5 conv of 32-128 channels, 1-3 further 3x3 convs of
  16-64 channels, tanh or relu, a 3x3 conv to C*scale^2 channels and DepthToSpace.
- fsrcnn (Dong et al., 2016): FSRCNN(d, s, m) with d 32-64, s 12-24, m 2-4: 5x5 feature
  extraction, 1x1 shrinking, m 3x3 mapping convs, 1x1 expanding (PReLU after each) and
  a 9x9 ConvTranspose of stride ``scale``.
- edsr (Lim et al., 2017): a 3x3 head conv of 16-128 features, 2-16 residual blocks
  without BatchNorm (conv-ReLU-conv, residual scaled by 1 or 0.1), a conv and a global
  skip, the upsampler (conv to 4x or 9x features + DepthToSpace, twice for x4) and a
  3x3 tail conv. EDSR-baseline (64 features, 16 blocks) lies inside.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.tasks._common import Choice, Ints, Sampler, TaskSpace, define_space

FAMILIES = ("espcn", "fsrcnn", "edsr")
OPTIONS = {"family": Choice(FAMILIES), "scale": Ints(2, 4), "channels": Choice((1, 3)),
           "h": Ints(32, 256, 8), "w": Ints(32, 256, 8)}


@dataclass(frozen=True)
class SrConfig:
    """``widths``: espcn conv widths; fsrcnn (d, s); edsr (features,). ``depth``: espcn
    extra 3x3 convs, fsrcnn mapping layers m, edsr residual blocks."""

    family: str
    scale: int
    channels: int
    height: int
    width: int
    widths: tuple[int, ...]
    depth: int
    act: str = "relu"
    res_scale: float = 1.0


def draw(s: Sampler) -> SrConfig:
    family = s.draw("family")
    dims = (s.draw("scale"), s.draw("channels"), s.draw("h"), s.draw("w"))
    if family == "espcn":
        depth = s.integer(1, 3)
        widths = (s.pick((32, 64, 96, 128)), *(s.pick((16, 32, 64)) for _ in range(depth)))
        return SrConfig(family, *dims, widths, depth, s.pick(("tanh", "relu")))
    if family == "fsrcnn":
        return SrConfig(family, *dims, (s.pick((32, 48, 56, 64)), s.pick((12, 16, 24))), s.integer(2, 4), "prelu")
    return SrConfig(family, *dims, (s.pick((16, 32, 48, 64, 96, 128)),), s.integer(2, 16), "relu", s.pick((1.0, 0.1)))


def prelu(b: GraphBuilder, x: str) -> str:
    return b.op("PRelu", [x, b.const((b.shape(x)[1], 1, 1), stem="prelu_slope")])


def pixel_shuffle(b: GraphBuilder, x: str, channels: int, scale: int, k: int = 3) -> str:
    return b.depth_to_space(b.conv(x, channels * scale * scale, k, bias=True), scale)


def espcn(b: GraphBuilder, x: str, cfg: SrConfig) -> str:
    for i, width in enumerate(cfg.widths):
        x = b.act(b.conv(x, width, 5 if i == 0 else 3, bias=True), cfg.act)
    return pixel_shuffle(b, x, cfg.channels, cfg.scale)


def fsrcnn(b: GraphBuilder, x: str, cfg: SrConfig) -> str:
    d, s = cfg.widths
    x = prelu(b, b.conv(x, d, 5, bias=True))
    x = prelu(b, b.conv(x, s, 1, bias=True))
    for _ in range(cfg.depth):
        x = prelu(b, b.conv(x, s, 3, bias=True))
    x = prelu(b, b.conv(x, d, 1, bias=True))
    return b.conv_transpose(x, cfg.channels, 9, cfg.scale, pad=4, output_padding=cfg.scale - 1, bias=True)


def edsr(b: GraphBuilder, x: str, cfg: SrConfig) -> str:
    (feats,) = cfg.widths
    head = b.conv(x, feats, 3, bias=True)
    y = head
    for i in range(cfg.depth):
        with b.scope(f"res{i}"):
            r = b.conv(b.act(b.conv(y, feats, 3, bias=True), "relu"), feats, 3, bias=True)
            if cfg.res_scale != 1.0:
                r = b.mul(r, b.scalar("res_scale", cfg.res_scale))
            y = b.add(y, r)
    y = b.add(b.conv(y, feats, 3, bias=True), head)
    for step in ((2, 2) if cfg.scale == 4 else (cfg.scale,)):
        y = pixel_shuffle(b, y, feats, step)
    return b.conv(y, cfg.channels, 3, bias=True)


BUILD_FAMILY = {"espcn": espcn, "fsrcnn": fsrcnn, "edsr": edsr}


def build(cfg: SrConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x = b.input((batch_size, cfg.channels, cfg.height, cfg.width))
    b.output(BUILD_FAMILY[cfg.family](b, x, cfg))
    return b.build()


SPACE = define_space(TaskSpace("sr", OPTIONS, draw, build, keep=("family",)),
                     "super-resolution: ESPCN, FSRCNN and EDSR-like networks, scales 2-4, e.g. sr:3?scale=4")

sample = SPACE.sample
describe = SPACE.describe
