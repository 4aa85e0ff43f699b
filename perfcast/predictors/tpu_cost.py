"""The learned TPU cost model (Kaufman et al., "A Learned Performance Model for Tensor Processing
Units", MLSys 2021): GraphSAGE over the operators with a learned embedding of each opcode; a cost
per node (per kernel), and the network's cost the sum over its nodes.

Node inputs are the features of :mod:`perfcast.predictors.graphdata` and an ``embed``-wide
embedding of the op kind; ``layers`` GraphSAGE layers (mean aggregation, edge features of tensor
sizes, messages along the dataflow) give each node a state, from which a two-layer head plus a
linear term of the inputs give the log of the node's cost (:mod:`perfcast.predictors.gnn`,
readout ``node_sum``). The sum over nodes is fitted to the label by squared log error, so no
per-node labels are needed; the paper trains per-kernel on measured kernels, the per-node sum is
its network-level composition.
"""

from __future__ import annotations

from perfcast.predictors.base import register_predictor
from perfcast.predictors.gnn import GraphNetPredictor


@register_predictor("tpu_cost")
class TpuCostModel(GraphNetPredictor):
    """GraphSAGE with opcode embeddings; per-node costs summed; one network per target."""

    ARCH = {"conv": "sage", "readout": "node_sum", "use_u": False}
    LOSS = "sum"

    def __init__(self, layers: int = 2, hidden: int = 32, embed: int = 8, steps: int = 300,
                 learning_rate: float = 0.005, patience: int = 60, seed: int = 0) -> None:
        self.layers = layers
        self.hidden = hidden
        self.embed = embed
        self.steps = steps
        self.learning_rate = learning_rate
        self.patience = patience
        self.seed = seed
