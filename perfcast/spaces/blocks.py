"""Transformer building blocks on :class:`~perfcast.ir.builder.GraphBuilder`.

Every function takes the builder and tensor names and returns the name of its
output, like the builder's own layer helpers. Token tensors are laid out
``(batch, tokens, dim)``; attention heads ``(batch, heads, tokens, head_dim)``.

Attention is written out as the operators an exported PyTorch model has
(MatMul, Mul by a scalar scale, Softmax, MatMul), so its cost is the two
matrix products ``2 * batch * tokens * tokens * dim`` MACs on top of the
projections, the convention of torchvision's GFLOPS column. Learned tensors
that are not weights of a linear layer (class token, position embeddings,
embedding tables, relative position bias tables) are float constants read by
Expand, Add or Gather, which perfcast counts as parameters.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from perfcast.ir.builder import GraphBuilder

# Integer constants up to this many elements carry their values in the graph, as
# the ONNX front end keeps them; larger index tables are described by shape only.
INLINE_INT_VALUES = 64
# What masked attention scores are set to before the softmax: the lowest float32.
MASK_FILL = -3.4028234663852886e38

# (builder, attention scores (..., heads, q_tokens, k_tokens)) -> scores
ScoresHook = Callable[[GraphBuilder, str], str]


def int_const(
    b: GraphBuilder, shape: Sequence[int], values: Callable[[], Sequence[int]], dtype: str = "int64",
    stem: str = "index",
) -> str:
    """An integer or bool constant (indices, masks). ``values`` gives the flat
    values; it is called only when the constant is small enough to keep them."""
    small = math.prod(shape) <= INLINE_INT_VALUES
    return b.const(shape, dtype, list(values()) if small else None, stem)


def activation(b: GraphBuilder, x: str, kind: str) -> str:
    """The builder's activations plus ``gelu_tanh`` (GPT-2's tanh approximation)."""
    if kind == "gelu_tanh":
        return b.op("Gelu", [x], {"approximate": "tanh"})
    return b.act(x, kind)


# -- embeddings -----------------------------------------------------------------------
def patch_embedding(b: GraphBuilder, image: str, dim: int, patch: int, tokens: bool = True) -> str:
    """Non-overlapping ``patch`` x ``patch`` projection of an NCHW image (Conv with
    bias, kernel = stride = patch). Returns tokens ``(B, H/p * W/p, dim)`` or, with
    ``tokens=False``, a channels-last map ``(B, H/p, W/p, dim)``."""
    x = b.conv(image, dim, patch, stride=patch, pad=0, bias=True)
    if not tokens:
        return b.transpose(x, (0, 2, 3, 1))
    n, c, h, w = b.shape(x)
    return b.transpose(b.reshape(x, (n, c, h * w)), (0, 2, 1))


def class_token(b: GraphBuilder, tokens: str) -> str:
    """Prepend a learned ``(1, 1, dim)`` token, expanded to the batch (dim params)."""
    n, _, d = b.shape(tokens)
    cls = b.op("Expand", [b.const((1, 1, d), stem="class_token"), b.ints((n, 1, d))], {}, [(n, 1, d)])
    return b.concat([cls, tokens], axis=1)


def position_embedding(b: GraphBuilder, tokens: str) -> str:
    """Add a learned ``(1, tokens, dim)`` position embedding."""
    _, t, d = b.shape(tokens)
    return b.add(tokens, b.const((1, t, d), stem="pos_embedding"))


def token_embedding(b: GraphBuilder, ids: str, vocab: int, dim: int) -> tuple[str, str]:
    """Look up integer ids in a learned ``(vocab, dim)`` table with Gather.

    Returns ``(embeddings, table)``; the table name lets a tied output layer
    reuse the same parameters."""
    table = b.const((vocab, dim), stem="embedding")
    return b.op("Gather", [table, ids], {"axis": 0}, [(*b.shape(ids), dim)]), table


def position_ids(b: GraphBuilder, seq: int) -> str:
    """The constant ``(1, seq)`` int64 positions 0..seq-1 that index a position table."""
    return int_const(b, (1, seq), lambda: range(seq), stem="position_ids")


def first_token(b: GraphBuilder, x: str) -> str:
    """``x[:, 0]``: the class / [CLS] token of ``(B, T, D)`` tokens as ``(B, D)``."""
    n, _, d = b.shape(x)
    zero = b.const((), "int64", (0,), "index")
    return b.op("Gather", [x, zero], {"axis": 1}, [(n, d)])


# -- attention --------------------------------------------------------------------------
def split_heads(b: GraphBuilder, x: str, heads: int) -> str:
    """``(B, T, H * d)`` -> ``(B, H, T, d)``."""
    n, t, c = b.shape(x)
    if c % heads:
        raise ValueError(f"dim {c} is not divisible by {heads} heads")
    return b.transpose(b.reshape(x, (n, t, heads, c // heads)), (0, 2, 1, 3))


def merge_heads(b: GraphBuilder, x: str) -> str:
    """``(B, H, T, d)`` -> ``(B, T, H * d)``."""
    n, h, t, d = b.shape(x)
    return b.reshape(b.transpose(x, (0, 2, 1, 3)), (n, t, h * d))


def scaled_dot_product_attention(
    b: GraphBuilder, q: str, k: str, v: str, scores_hook: ScoresHook | None = None
) -> str:
    """softmax(q k^T * d^-0.5 [+ hook]) v on ``(B, H, T, d)`` heads.

    ``scores_hook`` edits the scaled scores before the softmax: a causal mask, a
    relative position bias. MACs: ``B * H * Tq * Tk * (d + dv)``."""
    scale = b.scalar("attn_scale", b.shape(q)[-1] ** -0.5)
    scores = b.op("Mul", [b.matmul(q, b.transpose(k, (0, 1, 3, 2))), scale])
    if scores_hook is not None:
        scores = scores_hook(b, scores)
    return b.matmul(b.softmax(scores, axis=-1), v)


def self_attention(
    b: GraphBuilder, x: str, heads: int, *, fused_qkv: bool = True, bias: bool = True,
    scores_hook: ScoresHook | None = None,
) -> str:
    """Multi-head self-attention on ``(B, T, D)`` tokens, output projection included.

    ``fused_qkv`` projects q, k and v with one ``D -> 3D`` linear layer split in
    three (torch.nn.MultiheadAttention, timm, GPT-2, Swin); otherwise with three
    ``D -> D`` layers (BERT). Both have ``4 * (D * D + D)`` params with bias."""
    d = b.shape(x)[-1]
    if fused_qkv:
        q, k, v = b.split(b.linear(x, 3 * d, bias=bias), [d, d, d], axis=-1)
    else:
        q, k, v = (b.linear(x, d, bias=bias) for _ in range(3))
    q, k, v = (split_heads(b, t, heads) for t in (q, k, v))
    y = merge_heads(b, scaled_dot_product_attention(b, q, k, v, scores_hook))
    return b.linear(y, d, bias=bias)


def causal_mask_hook(seq: int) -> ScoresHook:
    """A hook that keeps scores where key position <= query position and replaces
    the rest by a scalar (Where with a constant bool ``(1, 1, seq, seq)`` mask, as
    GPT-2 does with its ``bias`` buffer; a buffer, not a parameter)."""

    def hook(b: GraphBuilder, scores: str) -> str:
        mask = int_const(
            b, (1, 1, seq, seq), lambda: (int(j <= i) for i in range(seq) for j in range(seq)), "bool", "causal_mask"
        )
        return b.op("Where", [mask, scores, b.scalar("mask_fill", MASK_FILL)], {}, [b.shape(scores)], out_dtype=b.dtype(scores))

    return hook


# -- feed-forward and encoder layers ---------------------------------------------------------
def mlp(b: GraphBuilder, x: str, hidden: int, act: str = "gelu") -> str:
    """Linear ``D -> hidden``, activation, linear ``hidden -> D`` on the last axis."""
    d = b.shape(x)[-1]
    return b.linear(activation(b, b.linear(x, hidden), act), d)


def pre_norm_layer(
    b: GraphBuilder, x: str, heads: int, mlp_hidden: int, *, eps: float = 1e-6, act: str = "gelu",
    fused_qkv: bool = True, scores_hook: ScoresHook | None = None,
) -> str:
    """``x + attn(LN(x))`` then ``x + mlp(LN(x))``: the ViT / DeiT / GPT-2 layer.

    Params: ``12 D^2 + 13 D`` for an MLP of ``4 D``."""
    x = b.add(x, self_attention(b, b.layernorm(x, eps), heads, fused_qkv=fused_qkv, scores_hook=scores_hook))
    return b.add(x, mlp(b, b.layernorm(x, eps), mlp_hidden, act))


def post_norm_layer(
    b: GraphBuilder, x: str, heads: int, mlp_hidden: int, *, eps: float = 1e-12, act: str = "gelu",
    fused_qkv: bool = False, scores_hook: ScoresHook | None = None,
) -> str:
    """``LN(x + attn(x))`` then ``LN(h + mlp(h))``: the BERT encoder layer."""
    h = b.layernorm(b.add(x, self_attention(b, x, heads, fused_qkv=fused_qkv, scores_hook=scores_hook)), eps)
    return b.layernorm(b.add(h, mlp(b, h, mlp_hidden, act)), eps)
