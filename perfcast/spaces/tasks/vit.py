"""``vit:<seed>``: ViT / DeiT-like image classifiers (Dosovitskiy et al., 2021; Touvron
et al., 2021) on a 1x3xRxR image.

| dimension | values |
|---|---|
| patch | 4, 7, 8, 14, 16, 28, 32 |
| res | 32-384, a multiple of the patch (drawn as patch x grid, grid at most 24) |
| depth | 2-12 pre-norm encoder layers |
| width | 64-768 step 16, divisible by heads |
| heads | 1-12 |
| mlp_ratio | 2, 2.5, 3, 3.5, 4 |
| classes | 10-1000 |

Patch embedding (conv, kernel = stride = patch), class token, learned position
embedding, ``depth`` layers of x + attn(LN(x)), x + MLP(LN(x)) with GELU, a final
LayerNorm and a linear head on the class token. DeiT-Ti/S (192/384 wide, 3/6 heads,
depth 12, patch 16, res 224) lie inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.blocks import class_token, first_token, patch_embedding, position_embedding, pre_norm_layer
from perfcast.spaces.tasks._common import (
    Choice, Ints, Redraw, Sampler, TaskSpace, define_space, draw_width_heads,
)

OPTIONS = {
    "patch": Choice((4, 7, 8, 14, 16, 28, 32)), "res": Ints(32, 384), "depth": Ints(2, 12),
    "width": Ints(64, 768, 16), "heads": Ints(1, 12), "mlp_ratio": Choice((2.0, 2.5, 3.0, 3.5, 4.0)),
    "classes": Ints(10, 1000),
}
MIN_RES, MAX_RES, MAX_GRID = 32, 384, 24


@dataclass(frozen=True)
class ViTConfig:
    patch: int
    resolution: int
    depth: int
    width: int
    heads: int
    mlp_ratio: float
    classes: int

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)


def draw(s: Sampler) -> ViTConfig:
    patch = s.draw("patch")
    grid = s.integer(math.ceil(MIN_RES / patch), min(MAX_RES // patch, MAX_GRID))
    res = s.given("res", patch * grid)
    if res % patch:
        raise Redraw(f"res {res} is not a multiple of patch {patch}")
    depth = s.draw("depth")
    width, heads = draw_width_heads(s)
    return ViTConfig(patch, res, depth, width, heads, s.draw("mlp_ratio"), s.draw("classes"))


def build(cfg: ViTConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x = b.input((batch_size, 3, cfg.resolution, cfg.resolution))
    x = position_embedding(b, class_token(b, patch_embedding(b, x, cfg.width, cfg.patch)))
    for i in range(cfg.depth):
        with b.scope(f"layer{i}"):
            x = pre_norm_layer(b, x, cfg.heads, cfg.mlp_hidden)
    b.output(b.linear(first_token(b, b.layernorm(x, 1e-6)), cfg.classes))
    return b.build()


SPACE = define_space(TaskSpace("vit", OPTIONS, draw, build),
                     "ViT/DeiT-like image classifiers, e.g. vit:1?patch=16")

sample = SPACE.sample
describe = SPACE.describe
