"""BRP-NAS's latency predictor (Dudziak et al., "BRP-NAS: Prediction-based NAS using GCNs",
NeurIPS 2020): a graph convolutional network over the operators of the network with a global node
connected to all nodes, the prediction read out from the global node.

The paper's network has 4 GCN layers of 600 hidden units over NAS-Bench-201 cells of 8 nodes. Here
the nodes are the operators of the whole network (115 to 310 for NAS-Bench-201), so the default
width is 64, which trains on 100 networks in about a second on one core; ``hidden=600`` gives the
paper's width. Nodes carry
the features of :mod:`perfcast.predictors.graphdata` (op-kind one-hot, sizes), messages follow the
directed dataflow, the global node reads the mean of the node states at every layer through the
same weights (:mod:`perfcast.predictors.gnn`), and its final state, with the graph-level
statistics, goes through a two-layer head to the standardised log of the target (squared error).
"""

from __future__ import annotations

from perfcast.predictors.base import register_predictor
from perfcast.predictors.gnn import GraphNetPredictor


@register_predictor("brpnas")
class BrpNas(GraphNetPredictor):
    """4-layer GCN with a global node; one network per target."""

    ARCH = {"conv": "gcn", "readout": "global", "embed": 0, "use_u": True}
    LOSS = "log"

    def __init__(self, layers: int = 4, hidden: int = 64, steps: int = 300, learning_rate: float = 0.01,
                 patience: int = 40, seed: int = 0) -> None:
        self.layers = layers
        self.hidden = hidden
        self.steps = steps
        self.learning_rate = learning_rate
        self.patience = patience
        self.seed = seed
