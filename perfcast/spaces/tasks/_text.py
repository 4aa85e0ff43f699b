"""Token inputs and embeddings shared by the text spaces (``bert``, ``gpt``)."""

from __future__ import annotations

from perfcast.ir.builder import GraphBuilder
from perfcast.spaces.blocks import position_ids, token_embedding


def embed_tokens(b: GraphBuilder, batch_size: int, seq: int, vocab: int, width: int,
                 max_positions: int) -> tuple[str, str]:
    """int64 token ids (batch, seq) -> word + learned absolute position embeddings
    (a ``(max_positions, width)`` table read at positions 0..seq-1).

    Returns ``(embeddings, word_table)``."""
    ids = b.input((batch_size, seq), "int64", name="input_ids")
    words, table = token_embedding(b, ids, vocab, width)
    pos_table = b.const((max_positions, width), stem="pos_embedding")
    positions = b.op("Gather", [pos_table, position_ids(b, seq)], {"axis": 0}, [(1, seq, width)])
    return b.add(words, positions), table
