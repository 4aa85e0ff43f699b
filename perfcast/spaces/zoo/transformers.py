"""Transformer networks of the zoo (and ConvNeXt, their convolutional counterpart).

Vision (options ``res``, up to 1024, and ``classes``; 1000 classes at 224x224 by default).
Params are exact; MACs as measured here, then as published:

- ``convnext_tiny``: torchvision ConvNeXt-T, 28,589,128 params, 4.456 GMACs (4.46); res a multiple of 32.
- ``vit_b_16``: torchvision ViT-B/16, 86,567,656 params, 17.564 GMACs (17.56); res a multiple of 16.
- ``vit_tiny``: timm vit_tiny_patch16_224 (dim 192, depth 12, 3 heads), 5,717,416 params,
  1.254 GMACs (timm: 1.3; its model card's 1.1 leaves the attention products out).
- ``deit_small``: timm deit_small_patch16_224 (dim 384, depth 12, 6 heads), 22,050,664 params,
  4.599 GMACs (4.6).
- ``swin_t``: torchvision Swin-T (window 7; maps padded to whole windows and shifts dropped
  where a window covers the map, as torchvision does), 28,288,354 params, 4.491 GMACs (4.49);
  res a multiple of 32.

Text (option ``seq``, the sequence length, 128 by default; int64 token-id inputs ``(batch, seq)``):

- ``bert_base``: bert-base-uncased with pooler, 109,482,240 params, 11.17 GMACs; seq <= 512.
- ``bert_tiny``: google/bert_uncased_L-2_H-128_A-2, 4,385,920 params, 58.7 MMACs; seq <= 512.
- ``gpt2``: GPT-2 small with its tied LM head (the head reuses the word embedding, so
  its params count once: 124,439,808), logits for every position: 16.11 GMACs, 4.94 of
  them in the LM head; seq <= 1024.

MACs count every matrix product, the attention products and the LM head included,
as torchvision's GFLOPS column does for vit_b_16 and swin_t. Position embeddings
of ViT scale with ``res``, so its params do too. BERT takes ``input_ids`` and
``token_type_ids`` and attends to every token (no padding mask input). The GPT-2
causal mask and the Swin shifted-window mask are constant bool tensors used by
Where (buffers, not parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from perfcast.errors import SpecError
from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces import blocks
from perfcast.spaces.registry import option, reject_unknown
from perfcast.spaces.zoo import register_zoo

MAX_RES = 1024


def zoo_options(name: str, options: dict[str, str], schema: dict[str, tuple[type, object, int, int]]) -> dict:
    """Read ``options`` of ``zoo:name`` as ``{key: (type, default, lo, hi)}``; unknown
    keys and out-of-range values raise :class:`SpecError`."""
    spec = f"zoo:{name}"
    reject_unknown(options, set(schema), spec)
    return {k: option(options, k, kind, default, lo, hi, spec) for k, (kind, default, lo, hi) in schema.items()}


def image_options(name: str, options: dict[str, str], multiple: int, default_res: int = 224,
                  default_classes: int = 1000, **extra: tuple[type, object, int, int]) -> dict:
    """``res`` (a multiple of ``multiple``) and ``classes`` options, plus ``extra`` ones."""
    schema = {"res": (int, default_res, multiple, MAX_RES), "classes": (int, default_classes, 1, 100_000), **extra}
    opts = zoo_options(name, options, schema)
    if opts["res"] % multiple:
        raise SpecError(f"zoo:{name}", f"option res={opts['res']} is not a multiple of {multiple}")
    return opts


# -- ConvNeXt ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvNeXtConfig:
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    eps: float = 1e-6


def layernorm2d(b: GraphBuilder, x: str, eps: float) -> str:
    """LayerNorm over the channels of an NCHW map (permute, LayerNorm, permute back)."""
    return b.transpose(b.layernorm(b.transpose(x, (0, 2, 3, 1)), eps), (0, 3, 1, 2))


def convnext_block(b: GraphBuilder, x: str, eps: float) -> str:
    """Depthwise 7x7, LayerNorm, MLP x4 with GELU, layer scale ``(C, 1, 1)``, residual."""
    c = b.shape(x)[1]
    y = b.transpose(b.conv(x, c, 7, groups=c, bias=True), (0, 2, 3, 1))
    y = b.transpose(blocks.mlp(b, b.layernorm(y, eps), 4 * c), (0, 3, 1, 2))
    return b.add(x, b.mul(y, b.const((c, 1, 1), stem="layer_scale")))


def convnext_graph(cfg: ConvNeXtConfig, res: int, classes: int, batch: int, name: str) -> Graph:
    b = GraphBuilder(name)
    x = layernorm2d(b, b.conv(b.input((batch, 3, res, res)), cfg.dims[0], 4, stride=4, pad=0, bias=True), cfg.eps)
    for stage, (depth, dim) in enumerate(zip(cfg.depths, cfg.dims)):
        if stage:
            x = b.conv(layernorm2d(b, x, cfg.eps), dim, 2, stride=2, pad=0, bias=True)
        for _ in range(depth):
            x = convnext_block(b, x, cfg.eps)
    x = b.flatten(layernorm2d(b, b.global_avgpool(x), cfg.eps))
    b.output(b.linear(x, classes))
    return b.build()


# -- ViT / DeiT ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViTConfig:
    dim: int
    depth: int
    heads: int
    mlp: int
    patch: int = 16
    eps: float = 1e-6


def vit_graph(cfg: ViTConfig, res: int, classes: int, batch: int, name: str) -> Graph:
    """Patch embedding, class token, position embedding, pre-norm encoder, final
    LayerNorm, linear head on the class token."""
    b = GraphBuilder(name)
    x = blocks.patch_embedding(b, b.input((batch, 3, res, res)), cfg.dim, cfg.patch)
    x = blocks.position_embedding(b, blocks.class_token(b, x))
    for i in range(cfg.depth):
        with b.scope(f"layer{i}"):
            x = blocks.pre_norm_layer(b, x, cfg.heads, cfg.mlp, eps=cfg.eps)
    x = blocks.first_token(b, b.layernorm(x, cfg.eps))
    b.output(b.linear(x, classes))
    return b.build()


# -- Swin ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SwinConfig:
    embed: int
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    window: int = 7
    patch: int = 4
    eps: float = 1e-5


def relative_position_index(window: int) -> list[int]:
    """Flat ``(w*w) * (w*w)`` index into the ``(2w-1)^2`` relative position table."""
    coords = [(i, j) for i in range(window) for j in range(window)]
    return [(a[0] - c[0] + window - 1) * (2 * window - 1) + (a[1] - c[1] + window - 1)
            for a in coords for c in coords]


def shift_mask(padded: int, window: int, shift: int) -> list[int]:
    """Flat ``(nW, 1, N, N)`` bool mask of token pairs from different regions of a
    cyclically shifted ``padded`` x ``padded`` map (torchvision's -100 positions)."""
    bounds = (padded - window, padded - shift)
    region = [[sum(i >= x for x in bounds) * 3 + sum(j >= x for x in bounds) for j in range(padded)]
              for i in range(padded)]
    out = []
    nw = padded // window
    for wi in range(nw):
        for wj in range(nw):
            ids = [region[wi * window + a][wj * window + c] for a in range(window) for c in range(window)]
            out.extend(int(p != q) for p in ids for q in ids)
    return out


def _roll(b: GraphBuilder, x: str, shift: int, axes: tuple[int, ...]) -> str:
    """torch.roll by ``shift`` on each axis, as Slice + Concat."""
    for ax in axes:
        size = b.shape(x)[ax]
        cut = (-shift) % size
        x = b.concat([b.slice(x, ax, cut, size), b.slice(x, ax, 0, cut)], axis=ax)
    return x


def _windows(b: GraphBuilder, x: str, w: int) -> str:
    """``(B, H, W, C)`` -> ``(B * nW, w*w, C)``."""
    n, h, wd, c = b.shape(x)
    x = b.transpose(b.reshape(x, (n, h // w, w, wd // w, w, c)), (0, 1, 3, 2, 4, 5))
    return b.reshape(x, (n * (h // w) * (wd // w), w * w, c))


def _unwindows(b: GraphBuilder, x: str, n: int, h: int, wd: int, w: int) -> str:
    """``(B * nW, w*w, C)`` -> ``(B, H, W, C)``."""
    c = b.shape(x)[-1]
    x = b.transpose(b.reshape(x, (n, h // w, wd // w, w, w, c)), (0, 1, 3, 2, 4, 5))
    return b.reshape(x, (n, h, wd, c))


def _swin_scores_hook(heads: int, window: int, padded: int, shift: int) -> blocks.ScoresHook:
    """Relative position bias (Gather from a learned ``((2w-1)^2, heads)`` table) and,
    for shifted windows, the region mask (Where with a constant bool mask)."""
    n_tok = window * window
    nw = (padded // window) ** 2

    def hook(b: GraphBuilder, scores: str) -> str:
        table = b.const(((2 * window - 1) ** 2, heads), stem="relative_position_bias_table")
        index = blocks.int_const(b, (n_tok * n_tok,), lambda: relative_position_index(window),
                                 stem="relative_position_index")
        bias = b.op("Gather", [table, index], {"axis": 0}, [(n_tok * n_tok, heads)])
        bias = b.transpose(b.reshape(bias, (n_tok, n_tok, heads)), (2, 0, 1))
        scores = b.add(scores, bias)
        if not shift:
            return scores
        shp = b.shape(scores)
        per_window = b.reshape(scores, (shp[0] // nw, nw, heads, n_tok, n_tok))
        mask = blocks.int_const(b, (nw, 1, n_tok, n_tok), lambda: shift_mask(padded, window, shift), "bool",
                                "shift_mask")
        masked = b.op("Where", [mask, b.scalar("mask_fill", blocks.MASK_FILL), per_window], {}, [b.shape(per_window)],
                      out_dtype=b.dtype(scores))
        return b.reshape(masked, shp)

    return hook


def swin_attention(b: GraphBuilder, x: str, heads: int, window: int, shift: int) -> str:
    """torchvision's shifted-window attention on ``(B, H, W, C)``: pad to whole
    windows, roll, partition, attend with relative position bias, reverse."""
    n, h, wd, c = b.shape(x)
    pad_h, pad_w = -h % window, -wd % window
    if pad_h or pad_w:
        x = b.pad(x, (0, 0, 0, 0, 0, pad_h, pad_w, 0))
    ph, pw = h + pad_h, wd + pad_w
    if window >= ph:
        shift = 0
    if shift:
        x = _roll(b, x, -shift, (1, 2))
    hook = _swin_scores_hook(heads, window, ph, shift)
    y = _unwindows(b, blocks.self_attention(b, _windows(b, x, window), heads, scores_hook=hook), n, ph, pw, window)
    if shift:
        y = _roll(b, y, shift, (1, 2))
    if pad_h or pad_w:
        y = b.slice(b.slice(y, 1, 0, h), 2, 0, wd)
    return y


def _strided(b: GraphBuilder, x: str, h0: int, w0: int) -> str:
    """``x[:, h0::2, w0::2, :]`` of a channels-last map with even H and W."""
    n, h, w, c = b.shape(x)
    ins = [x, b.ints([h0, w0], "starts"), b.ints([h, w], "ends"), b.ints([1, 2], "axes"), b.ints([2, 2], "steps")]
    return b.op("Slice", ins, {}, [(n, h // 2, w // 2, c)])


def patch_merging(b: GraphBuilder, x: str, eps: float) -> str:
    """2x2 neighbours concatenated (4C), LayerNorm, linear 4C -> 2C without bias."""
    c = b.shape(x)[-1]
    parts = [_strided(b, x, h0, w0) for h0, w0 in ((0, 0), (1, 0), (0, 1), (1, 1))]
    return b.linear(b.layernorm(b.concat(parts, axis=-1), eps), 2 * c, bias=False)


def swin_graph(cfg: SwinConfig, res: int, classes: int, batch: int, name: str) -> Graph:
    b = GraphBuilder(name)
    x = b.layernorm(blocks.patch_embedding(b, b.input((batch, 3, res, res)), cfg.embed, cfg.patch, tokens=False),
                    cfg.eps)
    for stage, (depth, heads) in enumerate(zip(cfg.depths, cfg.heads)):
        if stage:
            x = patch_merging(b, x, cfg.eps)
        dim = b.shape(x)[-1]
        for i in range(depth):
            with b.scope(f"stage{stage}.block{i}"):
                shift = cfg.window // 2 if i % 2 else 0
                x = b.add(x, swin_attention(b, b.layernorm(x, cfg.eps), heads, cfg.window, shift))
                x = b.add(x, blocks.mlp(b, b.layernorm(x, cfg.eps), 4 * dim))
    x = b.transpose(b.layernorm(x, cfg.eps), (0, 3, 1, 2))
    b.output(b.linear(b.flatten(b.global_avgpool(x)), classes))
    return b.build()


# -- BERT ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextConfig:
    layers: int
    dim: int
    heads: int
    mlp: int
    vocab: int
    positions: int


def bert_graph(cfg: TextConfig, seq: int, batch: int, name: str, type_vocab: int = 2) -> Graph:
    """BertModel: word + position + token-type embeddings, LayerNorm, post-norm
    encoder, pooler (dense + tanh on [CLS]). Outputs the last hidden state and the
    pooled vector."""
    b = GraphBuilder(name)
    ids = b.input((batch, seq), "int64", "input_ids")
    types = b.input((batch, seq), "int64", "token_type_ids")
    words, _ = blocks.token_embedding(b, ids, cfg.vocab, cfg.dim)
    pos, _ = blocks.token_embedding(b, blocks.position_ids(b, seq), cfg.positions, cfg.dim)
    typ, _ = blocks.token_embedding(b, types, type_vocab, cfg.dim)
    x = b.layernorm(b.add(b.add(words, typ), pos), 1e-12)
    for i in range(cfg.layers):
        with b.scope(f"layer{i}"):
            x = blocks.post_norm_layer(b, x, cfg.heads, cfg.mlp, eps=1e-12)
    b.output(x)
    b.output(b.act(b.linear(blocks.first_token(b, x), cfg.dim), "tanh"))
    return b.build()


# -- GPT-2 -----------------------------------------------------------------------------------
def gpt2_graph(cfg: TextConfig, seq: int, batch: int, name: str) -> Graph:
    """GPT2LMHeadModel: word + position embeddings, pre-norm decoder layers with a
    causal mask and tanh-GELU, final LayerNorm, LM head tied to the word embedding
    (Gemm with transB on the shared table). Output: logits ``(B, seq, vocab)``."""
    b = GraphBuilder(name)
    ids = b.input((batch, seq), "int64", "input_ids")
    words, wte = blocks.token_embedding(b, ids, cfg.vocab, cfg.dim)
    pos, _ = blocks.token_embedding(b, blocks.position_ids(b, seq), cfg.positions, cfg.dim)
    x = b.add(words, pos)
    hook = blocks.causal_mask_hook(seq)
    for i in range(cfg.layers):
        with b.scope(f"h{i}"):
            x = blocks.pre_norm_layer(b, x, cfg.heads, cfg.mlp, eps=1e-5, act="gelu_tanh", scores_hook=hook)
    x = b.reshape(b.layernorm(x, 1e-5), (batch * seq, cfg.dim))
    logits = b.op("Gemm", [x, wte], {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}, [(batch * seq, cfg.vocab)])
    b.output(b.reshape(logits, (batch, seq, cfg.vocab)))
    return b.build()


# -- registration ------------------------------------------------------------------------------
CONVNEXT = {"convnext_tiny": ConvNeXtConfig((3, 3, 9, 3), (96, 192, 384, 768))}
VIT = {
    "vit_b_16": ViTConfig(768, 12, 12, 3072),
    "vit_tiny": ViTConfig(192, 12, 3, 768),
    "deit_small": ViTConfig(384, 12, 6, 1536),
}
SWIN = {"swin_t": SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24))}
BERT = {
    "bert_base": TextConfig(12, 768, 12, 3072, 30522, 512),
    "bert_tiny": TextConfig(2, 128, 2, 512, 30522, 512),
}
GPT2 = {"gpt2": TextConfig(12, 768, 12, 3072, 50257, 1024)}


def _build_convnext(name: str, cfg: ConvNeXtConfig, options: dict[str, str], batch: int) -> Graph:
    opts = image_options(name, options, 32)
    return convnext_graph(cfg, opts["res"], opts["classes"], batch, name)


def _build_vit(name: str, cfg: ViTConfig, options: dict[str, str], batch: int) -> Graph:
    opts = image_options(name, options, cfg.patch)
    return vit_graph(cfg, opts["res"], opts["classes"], batch, name)


def _build_swin(name: str, cfg: SwinConfig, options: dict[str, str], batch: int) -> Graph:
    opts = image_options(name, options, cfg.patch * 2 ** (len(cfg.depths) - 1))
    return swin_graph(cfg, opts["res"], opts["classes"], batch, name)


def _build_text(graph_fn, name: str, cfg: TextConfig, options: dict[str, str], batch: int) -> Graph:
    seq = zoo_options(name, options, {"seq": (int, 128, 1, cfg.positions)})["seq"]
    return graph_fn(cfg, seq, batch, name)


for _name, _cfg in CONVNEXT.items():
    register_zoo(_name)(partial(_build_convnext, _name, _cfg))
for _name, _cfg in VIT.items():
    register_zoo(_name)(partial(_build_vit, _name, _cfg))
for _name, _cfg in SWIN.items():
    register_zoo(_name)(partial(_build_swin, _name, _cfg))
for _name, _cfg in BERT.items():
    register_zoo(_name)(partial(_build_text, bert_graph, _name, _cfg))
for _name, _cfg in GPT2.items():
    register_zoo(_name)(partial(_build_text, gpt2_graph, _name, _cfg))
