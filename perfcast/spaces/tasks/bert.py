"""``bert:<seed>``: BERT-like encoders (Devlin et al., 2019) on int64 token ids
(1, seq); output the last hidden states (1, seq, width).

| dimension | values |
|---|---|
| layers | 1-12 |
| width | 64-768 step 16, divisible by heads |
| heads | 1-12 |
| seq | 16-512 step 16 |

Word embeddings (WordPiece vocabulary of 30522) plus learned position embeddings
(512 positions), LayerNorm, then ``layers`` post-norm encoder layers: LN(x + attn(x))
with separate q/k/v projections, LN(h + MLP(h)) with a 4 x width GELU MLP. BERT-tiny
(2 layers, 128 wide), BERT-mini/small/medium and BERT-base (12 x 768, 12 heads) lie
inside. Token-type embeddings and the pooler are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.blocks import post_norm_layer
from perfcast.spaces.tasks._common import Ints, Sampler, TaskSpace, define_space, draw_width_heads
from perfcast.spaces.tasks._text import embed_tokens

OPTIONS = {"layers": Ints(1, 12), "width": Ints(64, 768, 16), "heads": Ints(1, 12), "seq": Ints(16, 512, 16)}
VOCAB = 30522
MAX_POSITIONS = 512
MLP_RATIO = 4
LN_EPS = 1e-12


@dataclass(frozen=True)
class BertConfig:
    layers: int
    width: int
    heads: int
    seq: int
    vocab: int = VOCAB


def draw(s: Sampler) -> BertConfig:
    layers = s.draw("layers")
    width, heads = draw_width_heads(s)
    return BertConfig(layers, width, heads, s.draw("seq"))


def build(cfg: BertConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x, _ = embed_tokens(b, batch_size, cfg.seq, cfg.vocab, cfg.width, MAX_POSITIONS)
    x = b.layernorm(x, LN_EPS)
    for i in range(cfg.layers):
        with b.scope(f"layer{i}"):
            x = post_norm_layer(b, x, cfg.heads, MLP_RATIO * cfg.width, eps=LN_EPS)
    b.output(x)
    return b.build()


SPACE = define_space(TaskSpace("bert", OPTIONS, draw, build),
                     "BERT-like encoders on int64 token ids, e.g. bert:3?seq=128")

sample = SPACE.sample
describe = SPACE.describe
