"""``gpt:<seed>``: GPT-like causal decoders (Radford et al., 2019) on int64 token ids
(1, seq); output next-token logits (1, seq, vocab).

| dimension | values |
|---|---|
| layers | 1-12 |
| width | 64-768 step 16, divisible by heads |
| heads | 1-12 |
| seq | 16-512 step 16 |
| vocab | 4096, 8192, 16384, 32000, 50257 |

Word plus learned position embeddings (1024 positions), ``layers`` pre-norm decoder
layers (x + attn(LN(x)) with a fused q/k/v projection and a causal mask, x + MLP(LN(x))
with a 4 x width tanh-GELU MLP), a final LayerNorm and an LM head tied to the word
embeddings (Gemm with transB on the same table). GPT-2 small (12 x 768, 12 heads,
vocab 50257) lies inside.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.blocks import causal_mask_hook, pre_norm_layer
from perfcast.spaces.tasks._common import Choice, Ints, Sampler, TaskSpace, define_space, draw_width_heads
from perfcast.spaces.tasks._text import embed_tokens

OPTIONS = {"layers": Ints(1, 12), "width": Ints(64, 768, 16), "heads": Ints(1, 12), "seq": Ints(16, 512, 16),
           "vocab": Choice((4096, 8192, 16384, 32000, 50257))}
MAX_POSITIONS = 1024
MLP_RATIO = 4
LN_EPS = 1e-5


@dataclass(frozen=True)
class GptConfig:
    layers: int
    width: int
    heads: int
    seq: int
    vocab: int


def draw(s: Sampler) -> GptConfig:
    layers = s.draw("layers")
    width, heads = draw_width_heads(s)
    return GptConfig(layers, width, heads, s.draw("seq"), s.draw("vocab"))


def tied_lm_head(b: GraphBuilder, x: str, table: str) -> str:
    """Logits from the word-embedding table: (B, S, D) x (V, D)^T -> (B, S, V)."""
    n, seq, d = b.shape(x)
    vocab = b.shape(table)[0]
    flat = b.reshape(x, (n * seq, d))
    logits = b.op("Gemm", [flat, table], {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}, [(n * seq, vocab)])
    return b.reshape(logits, (n, seq, vocab))


def build(cfg: GptConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x, table = embed_tokens(b, batch_size, cfg.seq, cfg.vocab, cfg.width, MAX_POSITIONS)
    hook = causal_mask_hook(cfg.seq)
    for i in range(cfg.layers):
        with b.scope(f"layer{i}"):
            x = pre_norm_layer(b, x, cfg.heads, MLP_RATIO * cfg.width, eps=LN_EPS, act="gelu_tanh", scores_hook=hook)
    b.output(tied_lm_head(b, b.layernorm(x, LN_EPS), table))
    return b.build()


SPACE = define_space(TaskSpace("gpt", OPTIONS, draw, build),
                     "GPT-like causal decoders with a tied LM head, e.g. gpt:2?layers=6")

sample = SPACE.sample
describe = SPACE.describe
