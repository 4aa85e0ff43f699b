"""FBNet space as HW-NAS-Bench and HELP use it: ``fbnet:<22 block names>?classes=N&res=R``.

The macro-architecture is HW-NAS-Bench's ``FBNet_Infer`` (Li et al., ICLR 2021; FBNet,
Wu et al., CVPR 2019) in its CIFAR setting:

- stem: 3x3 convolution 3->16, stride 1, BN, ReLU;
- 22 searchable blocks in 7 stages of depths 1, 4, 4, 4, 4, 4, 1 with output channels
  16, 24, 32, 64, 112, 184, 352; the first block of a stage has stride 1, 1, 2, 2, 1, 2, 1;
- head: 1x1 convolution 352->1504 (no bias), BN, ReLU, global average pooling, linear
  layer to 100 classes; input 32x32.

Blocks (``k{kernel}_e{expansion}[_g2]``): 1x1 convolution ``cin -> cin * e`` (groups g)
+ BN + ReLU, a channel shuffle when g = 2, ``k x k`` depthwise convolution (stride of the
block) + BN + ReLU, 1x1 convolution ``cin * e -> cout`` (groups g) + BN, and a residual
addition when the stride is 1 and ``cin == cout``. ``skip`` is the identity where shapes
match, otherwise a 1x1 convolution (with the block's stride) + BN + ReLU. Convolutions
have no bias. Block names are separated by spaces (or commas), as in HELP's data.
"""

from __future__ import annotations

import os
import re

from perfcast.errors import SpecError
from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.registry import option, register_space, reject_unknown
from perfcast.spaces.zoo.cnn import conv_bn_act

# name -> (kernel, expansion, groups); None for skip
BLOCKS: dict[str, tuple[int, int, int] | None] = {
    "k3_e1": (3, 1, 1), "k3_e1_g2": (3, 1, 2), "k3_e3": (3, 3, 1), "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1), "k5_e1_g2": (5, 1, 2), "k5_e3": (5, 3, 1), "k5_e6": (5, 6, 1),
    "skip": None,
}
DEPTHS = (1, 4, 4, 4, 4, 4, 1)
CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STRIDES = (1, 1, 2, 2, 1, 2, 1)
N_BLOCKS = sum(DEPTHS)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1504
DEFAULT_CLASSES = 100
DEFAULT_RES = 32
SHARED_DATA_FILES = ("help_fbnet_latency.csv.gz",)


def parse_blocks(body: str) -> tuple[str, ...]:
    """``"k3_e1 skip ..."`` -> 22 block names; raises :class:`SpecError` naming the problem."""
    names = tuple(n for n in re.split(r"[\s,]+", body.strip()) if n)
    if len(names) != N_BLOCKS:
        raise SpecError(body, f"an FBNet architecture has {N_BLOCKS} blocks, found {len(names)}")
    for i, name in enumerate(names):
        if name not in BLOCKS:
            raise SpecError(body, f"unknown block {name!r} at position {i} (known: {', '.join(BLOCKS)})")
    return names


def spec_from_blocks(block_choices: str) -> str:
    """The spec string of HELP's ``block_choices`` (22 names separated by spaces)."""
    return "fbnet:" + " ".join(parse_blocks(block_choices))


def spec_for_row(source_file: str, row: dict[str, str]) -> str:
    """The spec string of one row of a shared-data CSV with FBNet architectures."""
    if os.path.basename(source_file) not in SHARED_DATA_FILES:
        raise ValueError(f"{source_file} holds no FBNet architectures (files: {', '.join(SHARED_DATA_FILES)})")
    return spec_from_blocks(row["block_choices"])


@register_space("fbnet", "FBNet space of HW-NAS-Bench/HELP (CIFAR-100, 32x32), fbnet:<22 block names>?classes=N&res=R")
def build_fbnet(body: str, options: dict[str, str], batch_size: int) -> Graph:
    reject_unknown(options, {"classes", "res"})
    classes = option(options, "classes", int, DEFAULT_CLASSES, 1, 100_000)
    res = option(options, "res", int, DEFAULT_RES, 8, 1024)
    return fbnet_graph(parse_blocks(body), classes, res, batch_size, name=f"fbnet:{body}")


def fbnet_graph(blocks: tuple[str, ...], classes: int = DEFAULT_CLASSES, res: int = DEFAULT_RES,
                batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x = conv_bn_act(b, b.input((batch_size, 3, res, res)), STEM_CHANNELS, 3)
    names = iter(blocks)
    for depth, cout, stride in zip(DEPTHS, CHANNELS, STRIDES):
        for i in range(depth):
            x = _block(b, x, next(names), cout, stride if i == 0 else 1)
    x = conv_bn_act(b, x, HEAD_CHANNELS, 1)
    b.output(b.linear(b.flatten(b.global_avgpool(x)), classes))
    return b.build()


def _block(b: GraphBuilder, x: str, name: str, cout: int, stride: int) -> str:
    """One searchable block (see the module docstring)."""
    cin = b.shape(x)[1]
    spec = BLOCKS[name]
    if spec is None:
        if stride == 1 and cin == cout:
            return x
        return conv_bn_act(b, x, cout, 1, stride)
    k, e, g = spec
    y = conv_bn_act(b, x, cin * e, 1, groups=g)
    if g > 1:
        y = channel_shuffle(b, y, g)
    y = conv_bn_act(b, y, cin * e, k, stride, groups=cin * e)
    y = conv_bn_act(b, y, cout, 1, groups=g, act="identity")
    return b.add(y, x) if stride == 1 and cin == cout else y


def channel_shuffle(b: GraphBuilder, x: str, groups: int) -> str:
    """ShuffleNet's shuffle: (N, g, C/g, H, W) -> transpose groups and channels -> (N, C, H, W)."""
    n, c, h, w = b.shape(x)
    y = b.transpose(b.reshape(x, (n, groups, c // groups, h, w)), (0, 2, 1, 3, 4))
    return b.reshape(y, (n, c, h, w))
