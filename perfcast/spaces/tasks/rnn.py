"""``rnn:<seed>``: stacked LSTM / GRU sequence classifiers on a (seq, 1, features)
float input (time-major, as ONNX LSTM/GRU take it); output (1, classes) logits.

| dimension | values |
|---|---|
| cell | lstm, gru |
| layers | 1-3 |
| hidden | 32-512 step 16 |
| features | 10-256 |
| seq | 10-200 |
| bidirectional | false, true |
| classes | 2-64 |

Each layer is one ONNX LSTM/GRU node (GRU with linear_before_reset, as PyTorch
exports it); between layers the directions are concatenated (Transpose + Reshape to
(seq, 1, directions x hidden)); the last time step feeds a linear head.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.tasks._common import Choice, Ints, Sampler, TaskSpace, define_space

OPTIONS = {"cell": Choice(("lstm", "gru")), "layers": Ints(1, 3), "hidden": Ints(32, 512, 16),
           "features": Ints(10, 256), "seq": Ints(10, 200), "bidirectional": Choice((False, True)),
           "classes": Ints(2, 64)}


@dataclass(frozen=True)
class RnnConfig:
    cell: str
    layers: int
    hidden: int
    features: int
    seq: int
    bidirectional: bool
    classes: int


def draw(s: Sampler) -> RnnConfig:
    return RnnConfig(*(s.draw(k) for k in OPTIONS))


def recurrent_layer(b: GraphBuilder, x: str, cfg: RnnConfig) -> str:
    """One LSTM/GRU layer: (seq, batch, in) -> (seq, batch, directions * hidden)."""
    y = b.rnn(x, cfg.hidden, cfg.cell.upper(), cfg.bidirectional)
    seq, dirs, batch, hidden = b.shape(y)
    return b.reshape(b.transpose(y, (0, 2, 1, 3)), (seq, batch, dirs * hidden))


def build(cfg: RnnConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x = b.input((cfg.seq, batch_size, cfg.features))
    for i in range(cfg.layers):
        with b.scope(f"layer{i}"):
            x = recurrent_layer(b, x, cfg)
    seq, batch, width = b.shape(x)
    last = b.reshape(b.slice(x, 0, seq - 1, seq), (batch, width))
    b.output(b.linear(last, cfg.classes))
    return b.build()


SPACE = define_space(TaskSpace("rnn", OPTIONS, draw, build, keep=("cell",)),
                     "LSTM/GRU sequence classifiers, e.g. rnn:7?cell=gru")

sample = SPACE.sample
describe = SPACE.describe
