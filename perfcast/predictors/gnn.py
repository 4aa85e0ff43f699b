"""What the graph neural network predictors share: a compressed plan of message passing over a set
of graphs, the layers, the network, its training loop and its storage as arrays.

Compression. A node's state after ``l`` message-passing layers depends only on its ``l``-hop
neighbourhood (nodes never read a graph-level node), and networks repeat blocks: NAS-Bench-201
stacks five identical cells per stage, transformers identical layers, and different networks of a
space share most neighbourhoods. :func:`make_plan` refines node classes as the Weisfeiler-Lehman
test does: level 0 groups nodes of equal features and degree, level ``l + 1`` nodes of equal level
``l`` class whose incoming messages (sender class, edge features) are equal multisets. Every
layer is then computed once per class, from the messages of one representative node, which gives
exactly the states of the full graphs at a fraction of the cost; sums over a graph's nodes are
sums over its classes weighted by their counts.

Messages run along the dataflow, from producer to consumer (the directed adjacency of the network
as BRP-NAS uses it), with the edge features :data:`~perfcast.predictors.graphdata.EDGE_FEATURES`;
a node's degree is its number of producers.

Layers (:func:`build_net`, ``conv``):

- ``gcn`` (Kipf and Welling): ``h_i' = relu(W (sum_j h_j / sqrt(d_i d_j) + h_i / d_i) + b)``, with
  ``d`` the degree plus one (the self loop);
- ``sage`` (GraphSAGE, mean aggregator, with edge features as PerfSAGE uses them):
  ``h_i' = relu(W_s h_i + mean_j (W_n h_j + W_e e_ji) + b)``.

Readouts: ``global`` (a graph-level node that reads the mean of every node's state at each layer
and its own previous state through the same layer weights, as BRP-NAS's global node), ``mean``
(the mean of the final node states) and ``node_sum`` (a cost per node, ``exp`` of a two-layer
head over its final state plus a linear term of its input features, times the typical per-node
share of the target, summed: the network's prediction is the sum of its nodes'). For ``global``
and ``mean`` the readout, concatenated with the standardised graph-level statistics ``u`` when
``use_u``, goes through a two-layer head with one output per target.

Training (:func:`optimise`, also used by the other torch predictors): Adam, full batch (the
compressed plan is small), for at most ``steps`` steps, keeping the weights of the step with the
lowest loss on a held-out 10% of the graphs (when there are at least 60; with fewer, every step
trains) and stopping after ``patience`` steps without improvement; fixed seed, one CPU thread,
float32. Losses (:class:`Training`): ``log`` (squared error of the standardised log label),
``mape`` (mean relative error, after a third of the steps on the ``log`` loss: from a start
at the geometric mean, relative error hardly moves predictions far below their labels, as on
data spanning orders of magnitude) or ``sum`` (squared log error of a positive sum, for
``node_sum``); a NaN label is left out of the loss (masked). Weights are stored as float32 arrays
named ``w.<parameter>`` in the model dict, and predictions computed with torch from them, so a
saved and reloaded predictor predicts the same.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import numpy as np

from perfcast.predictors.base import Predictor
from perfcast.predictors.features import GraphStats
from perfcast.predictors.graphdata import EDGE_FEATURES, KINDS, NODE_FEATURES, NUMERIC_START, stats_data
from perfcast.predictors.kernel import _check_number

EDGE_WIDTH = len(EDGE_FEATURES)
VALIDATION_FRACTION = 0.1
MIN_VALIDATION_GRAPHS = 60
WEIGHT_PREFIX = "w."
MIN_LOG_STD = 0.05  # floor of the log labels' standard deviation
MIN_SCALE = 0.1  # floor of a log feature's standard deviation (a column constant in training)
EXP_LIMIT = 30.0  # a node's log cost (relative to the typical share) is clamped to this
MAPE_WARMUP = 3  # the mape loss follows steps // MAPE_WARMUP steps of the log loss
CLIP = 8.0  # standardised features are clipped to [-CLIP, CLIP]
_LABEL_FLOOR = 1e-12


@contextmanager
def one_thread():
    """Run torch on one intra-op thread inside the block."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --- the compressed plan --------------------------------------------------------------------------
@dataclass
class Level:
    """Message passing into the classes of one level from those of the level below."""

    self_index: np.ndarray  # (classes,) class below of each class's representative
    src: np.ndarray  # (messages,) class below of the sender
    dst: np.ndarray  # (messages,) receiving class
    edge_attr: np.ndarray  # (messages, EDGE_WIDTH)
    degree: np.ndarray  # (classes,) messages received


@dataclass
class Plan:
    """The compressed computation of ``layers`` message-passing layers over several graphs."""

    x: np.ndarray  # (classes at level 0, NODE_FEATURES)
    kind: np.ndarray  # (classes at level 0,)
    degree0: np.ndarray  # (classes at level 0,) messages received
    levels: list[Level]
    members: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per level 0..L: (graph, class, count)
    nodes: np.ndarray  # (graphs,) node count
    u: np.ndarray  # (graphs, N_SUMMARY) log1p summary graph features

    @property
    def graphs(self) -> int:
        return len(self.nodes)


def _refine(classes: np.ndarray, src: np.ndarray, dst: np.ndarray, ekey: np.ndarray, n_keys: int) -> np.ndarray:
    """Weisfeiler-Lehman refinement: nodes keep one class when their class and the multiset of
    (sender class, edge key) of their incoming messages are equal."""
    pair = classes[src] * n_keys + ekey
    order = np.lexsort((pair, dst))
    counts = np.bincount(dst, minlength=classes.size)
    starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
    pairs = pair[order].tolist()
    own = classes.tolist()
    ids: dict[tuple, int] = {}
    out = np.empty(classes.size, np.int64)
    for i in range(classes.size):
        out[i] = ids.setdefault((own[i], *pairs[starts[i]:starts[i + 1]]), len(ids))
    return out


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first index of each distinct row, class of each row)`` of a 2-D array."""
    view = np.ascontiguousarray(a).view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _members(graph_of: np.ndarray, classes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    key, count = np.unique(graph_of * n_classes + classes, return_counts=True)
    return key // n_classes, key % n_classes, count.astype(np.float32)


def make_plan(stats: Sequence[GraphStats], layers: int) -> Plan:
    """The compressed plan of ``layers`` layers over the graphs of ``stats`` (see the module doc)."""
    datas = [stats_data(s) for s in stats]
    sizes = np.array([d.num_nodes for d in datas], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    x = np.vstack([d.x.numpy() for d in datas]) if datas else np.zeros((0, len(NODE_FEATURES)), np.float32)
    kind = np.concatenate([d.kind.numpy() for d in datas])
    src, dst = np.hstack([d.edge_index.numpy() + o for d, o in zip(datas, offsets)])
    edge_attr = np.vstack([d.edge_attr.numpy() for d in datas])
    n = x.shape[0]
    degree = np.bincount(dst, minlength=n).astype(np.float32)
    graph_of = np.repeat(np.arange(len(datas)), sizes)
    edge_first, ekey = _unique_rows(edge_attr)

    first, classes = _unique_rows(np.hstack([x, degree[:, None], kind[:, None].astype(np.float32)]))
    plan = Plan(x[first], kind[first], degree[first], [], [_members(graph_of, classes, first.size)], sizes,
                np.vstack([d.u.numpy() for d in datas]))
    for _ in range(layers):
        new = _refine(classes, src, dst, ekey, edge_first.size)
        _, rep = np.unique(new, return_index=True)
        is_rep = np.zeros(n, bool)
        is_rep[rep] = True
        keep = is_rep[dst]
        plan.levels.append(Level(classes[rep], classes[src[keep]], new[dst[keep]], edge_attr[keep], degree[rep]))
        classes = new
        plan.members.append(_members(graph_of, classes, rep.size))
    return plan


# --- the network ----------------------------------------------------------------------------------
def _sparse(torch, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]):
    index = torch.as_tensor(np.vstack([rows, cols]), dtype=torch.long)
    return torch.sparse_coo_tensor(index, torch.as_tensor(values, dtype=torch.float32), shape,
                                   check_invariants=False).coalesce()


def _torch_plan(plan: Plan, model: Mapping[str, np.ndarray]) -> dict:
    """The plan as torch tensors: node and graph features standardised by the model's ``x_mean``,
    ``x_std``, ``u_mean`` and ``u_std``; per level sparse matrices of GCN propagation (``gcn``:
    normalised messages and self loop), of the mean over messages (``mean``), the mean edge
    features received (``edge_mean``), and per level the sum (``pool_sum``) and mean
    (``pool_mean``) over each graph's nodes."""
    import torch

    def t(a, dtype=torch.float32):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

    x = plan.x.copy()
    x[:, NUMERIC_START:] = standardised(x[:, NUMERIC_START:], model["x_mean"], model["x_std"])
    degrees = [plan.degree0] + [lv.degree for lv in plan.levels]
    sizes = [plan.x.shape[0]] + [lv.self_index.size for lv in plan.levels]
    levels, origin = [], np.arange(sizes[0])
    for k, lv in enumerate(plan.levels):
        n, below = sizes[k + 1], sizes[k]
        own = np.arange(n)
        norm = 1.0 / np.sqrt((degrees[k][lv.src] + 1.0) * (lv.degree[lv.dst] + 1.0))
        inverse = 1.0 / np.maximum(lv.degree, 1.0)
        edge_mean = np.zeros((n, lv.edge_attr.shape[1]), np.float32)
        np.add.at(edge_mean, lv.dst, lv.edge_attr)
        origin = origin[lv.self_index]
        levels.append(dict(
            self_index=t(lv.self_index, torch.long),
            gcn=_sparse(torch, np.r_[lv.dst, own], np.r_[lv.src, lv.self_index],
                        np.r_[norm, 1.0 / (lv.degree + 1.0)], (n, below)),
            mean=_sparse(torch, lv.dst, lv.src, inverse[lv.dst], (n, below)),
            edge_mean=t(edge_mean * inverse[:, None])))
    pools = [(_sparse(torch, g, c, k, (plan.graphs, size)),
              _sparse(torch, g, c, k / plan.nodes[g], (plan.graphs, size)))
             for (g, c, k), size in zip(plan.members, sizes)]
    return dict(x=t(x), kind=t(plan.kind, torch.long), levels=levels, origin=t(origin, torch.long),
                pool_sum=[p[0] for p in pools], pool_mean=[p[1] for p in pools],
                u=t(standardised(plan.u, model["u_mean"], model["u_std"])), graphs=plan.graphs)


def build_net(conv: str, readout: str, layers: int, hidden: int, embed: int, heads: int, use_u: bool, n_u: int,
              seed: int):
    """The torch module of a graph network (see the module doc), initialised from ``seed``."""
    import torch

    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            width = len(NODE_FEATURES) + embed
            self.embedding = nn.Embedding(len(KINDS), embed) if embed else None
            self.lin = nn.ModuleList()
            self.lin_self = nn.ModuleList()
            self.lin_edge = nn.ModuleList()
            for k in range(layers):
                fan_in = width if k == 0 else hidden
                self.lin.append(nn.Linear(fan_in, hidden))
                if conv == "sage":
                    self.lin_self.append(nn.Linear(fan_in, hidden, bias=False))
                    self.lin_edge.append(nn.Linear(EDGE_WIDTH, hidden, bias=False))
            if readout == "global":
                self.global0 = nn.Parameter(torch.zeros(width))
            if readout == "node_sum":
                self.skip = nn.Linear(width, heads)
                nn.init.zeros_(self.skip.weight)
                nn.init.zeros_(self.skip.bias)
            head_in = hidden + (n_u if use_u and readout != "node_sum" else 0)
            self.head1 = nn.Linear(head_in, hidden)
            self.head2 = nn.Linear(hidden, heads)

        def layer(self, k, h, lv):
            if conv == "gcn":
                z = torch.sparse.mm(lv["gcn"], h @ self.lin[k].weight.T) + self.lin[k].bias
            else:
                z = (torch.sparse.mm(lv["mean"], h @ self.lin[k].weight.T) + self.lin_edge[k](lv["edge_mean"])
                     + self.lin_self[k](h[lv["self_index"]]) + self.lin[k].bias)
            return torch.relu(z)

        def global_layer(self, k, g, h, pool):
            mean = torch.sparse.mm(pool, h)
            if conv == "gcn":
                return torch.relu(self.lin[k]((g + mean) / 2.0))
            return torch.relu(self.lin_self[k](g) + self.lin[k](mean))

        def forward(self, tp):
            h = tp["x"]
            if self.embedding is not None:
                h = torch.cat([h, self.embedding(tp["kind"])], dim=1)
            h0 = h
            g = self.global0.expand(tp["graphs"], -1) if readout == "global" else None
            for k, lv in enumerate(tp["levels"]):
                if g is not None:
                    g = self.global_layer(k, g, h, tp["pool_mean"][k])
                h = self.layer(k, h, lv)
            if readout == "node_sum":
                log_cost = self.head2(torch.relu(self.head1(h))) + self.skip(h0[tp["origin"]])
                return torch.sparse.mm(tp["pool_sum"][-1], torch.exp(log_cost.clamp(-EXP_LIMIT, EXP_LIMIT)))
            pooled = g if g is not None else torch.sparse.mm(tp["pool_mean"][-1], h)
            if use_u:
                pooled = torch.cat([pooled, tp["u"]], dim=1)
            return self.head2(torch.relu(self.head1(pooled)))

    return Net()


# --- training (shared with the other torch predictors) ----------------------------------------------
@dataclass(frozen=True)
class Training:
    """How a network is optimised: ``loss`` (``log``: squared error of the standardised log label;
    ``mape``: relative error of ``exp`` of the de-standardised output; ``sum``: squared error of
    ``log(output * scale)``, for outputs that are positive sums), at most ``steps`` full-batch Adam
    steps at ``learning_rate``, stopping ``patience`` steps after the best held-out loss."""

    loss: str
    steps: int
    learning_rate: float
    patience: int
    seed: int


@dataclass(frozen=True)
class LabelScale:
    """Per head: mean and standard deviation of the log labels (0 and 1 for a head without labels),
    and ``scale`` for ``sum`` outputs (the mean label shared over ``units`` nodes)."""

    mean: np.ndarray
    std: np.ndarray
    scale: np.ndarray

    @staticmethod
    def of(y: np.ndarray, units: float = 1.0) -> "LabelScale":
        labelled = ~np.isnan(y)
        logs = np.log(np.maximum(np.where(labelled, y, 1.0), _LABEL_FLOOR))
        columns = [logs[labelled[:, k], k] for k in range(y.shape[1])]
        mean = np.array([c.mean() if c.size else 0.0 for c in columns])
        std = np.array([max(c.std(), MIN_LOG_STD) if c.size else 1.0 for c in columns])
        return LabelScale(mean, std, np.exp(mean) / max(units, 1.0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"y_mean": self.mean, "y_std": self.std, "scale": self.scale}

    @staticmethod
    def from_model(model: Mapping[str, np.ndarray]) -> "LabelScale":
        return LabelScale(*(np.asarray(model[k], float).reshape(-1) for k in ("y_mean", "y_std", "scale")))

    def decode(self, out: np.ndarray, loss: str) -> np.ndarray:
        """Predictions in the label's units from a network's outputs."""
        if loss == "sum":
            return out * self.scale
        return np.exp(out * self.std + self.mean)


def check_training(training: Training) -> None:
    _check_number("steps", training.steps, 1, integer=True)
    _check_number("patience", training.patience, 1, integer=True)
    _check_number("seed", training.seed, 0, integer=True)
    _check_number("learning_rate", training.learning_rate, 1e-6, high=1.0)


def _validation_mask(n: int, seed: int) -> np.ndarray:
    held = np.zeros(n, bool)
    if n >= MIN_VALIDATION_GRAPHS:
        held[np.random.default_rng(seed).permutation(n)[: max(1, round(VALIDATION_FRACTION * n))]] = True
    return held


def _loss(torch, loss: str, out, y_t, mask_t, mean, std, scale):
    """Mean loss over the labelled entries of ``mask_t``."""
    if loss == "sum":
        err = (torch.log(out * scale) - torch.log(y_t)) ** 2
    elif loss == "log":
        err = (out - (torch.log(y_t) - mean) / std) ** 2
    else:
        err = (torch.exp(out * std + mean) / y_t - 1.0).abs()
    err = torch.where(mask_t, err, torch.zeros_like(err))
    return err.sum() / mask_t.sum().clamp(min=1)


def optimise(net, inputs, y: np.ndarray, labels: LabelScale, training: Training,
             decay: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Train ``net`` (``net(inputs)`` gives one row of outputs per graph) on labels ``y`` (graphs x
    heads, NaN where missing), with an L2 penalty of ``decay[name]`` on the named parameters; its
    weights as float32 arrays named ``w.<parameter>``. Call inside :func:`one_thread`."""
    import torch

    labelled = ~np.isnan(y)
    held = _validation_mask(len(y), training.seed)
    y_t = torch.as_tensor(np.where(labelled, np.maximum(y, _LABEL_FLOOR), 1.0), dtype=torch.float32)
    fit_mask = torch.as_tensor(labelled & ~held[:, None])
    val_mask = torch.as_tensor(labelled & held[:, None])
    scaling = tuple(torch.as_tensor(a, dtype=torch.float32) for a in (labels.mean, labels.std, labels.scale))
    decay = decay or {}
    groups = [{"params": [p], "weight_decay": float(decay.get(name, 0.0))} for name, p in net.named_parameters()]
    opt = torch.optim.Adam(groups, lr=float(training.learning_rate))
    best, best_state, since = np.inf, None, 0
    warmup = training.steps // MAPE_WARMUP if training.loss == "mape" else 0
    for step in range(training.steps):
        loss = "log" if step < warmup else training.loss
        out = net(inputs)
        if held.any() and step >= warmup:
            val = float(_loss(torch, loss, out.detach(), y_t, val_mask, *scaling))
            if val < best:
                best, since = val, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                since += 1
                if since >= training.patience:
                    break
        opt.zero_grad()
        _loss(torch, loss, out, y_t, fit_mask, *scaling).backward()
        opt.step()
    if best_state is not None:
        net.load_state_dict(best_state)
    return {WEIGHT_PREFIX + k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}


def load_weights(net, model: Mapping[str, np.ndarray]):
    """``net`` with the weights of a model dict written by :func:`optimise`, in inference mode."""
    import torch

    net.load_state_dict({k[len(WEIGHT_PREFIX):]: torch.as_tensor(np.asarray(v, np.float32))
                         for k, v in model.items() if k.startswith(WEIGHT_PREFIX)})
    return net.eval()


def standardise(a: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and standard deviation (floored at :data:`MIN_SCALE`) of the columns of ``a``, in
    float64 (as they are stored, so a reloaded model standardises to the same numbers)."""
    a = np.asarray(a, np.float64)
    return {"mean": a.mean(axis=0), "std": np.maximum(a.std(axis=0), MIN_SCALE)}


def standardised(a: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``a`` standardised in float64, clipped to [-CLIP, CLIP], as float32."""
    z = (np.asarray(a, np.float64) - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    return np.clip(z, -CLIP, CLIP).astype(np.float32)


# --- graph networks as predictors --------------------------------------------------------------------
@dataclass(frozen=True)
class NetSpec:
    """The architecture of a graph network (see :func:`build_net`)."""

    conv: str
    readout: str
    layers: int
    hidden: int
    embed: int
    use_u: bool

    def check(self) -> None:
        _check_number("layers", self.layers, 1, integer=True, high=8)
        _check_number("hidden", self.hidden, 1, integer=True, high=2048)
        _check_number("embed", self.embed, 0, integer=True, high=64)


def train(spec: NetSpec, training: Training, stats: Sequence[GraphStats], y: np.ndarray) -> dict[str, np.ndarray]:
    """Fit a graph network on ``stats`` with labels ``y`` (graphs x heads, NaN where missing); the
    model dict that :func:`predict` reads."""
    y = np.asarray(y, float).reshape(len(stats), -1)
    plan = make_plan(stats, spec.layers)
    x_scale = standardise(plan.x[:, NUMERIC_START:])
    u_scale = standardise(plan.u)
    labels = LabelScale.of(y, float(np.median(plan.nodes)))
    model = {"x_mean": x_scale["mean"], "x_std": x_scale["std"], "u_mean": u_scale["mean"],
             "u_std": u_scale["std"], **labels.arrays()}
    with one_thread():
        net = build_net(spec.conv, spec.readout, spec.layers, spec.hidden, spec.embed, y.shape[1], spec.use_u,
                        plan.u.shape[1], training.seed)
        model.update(optimise(net, _torch_plan(plan, model), y, labels, training))
    return model


def predict(spec: NetSpec, loss: str, model: Mapping[str, np.ndarray], stats: Sequence[GraphStats]) -> np.ndarray:
    """Predictions (graphs x heads) of a network fitted by :func:`train` with ``loss``."""
    import torch

    plan = make_plan(stats, spec.layers)
    labels = LabelScale.from_model(model)
    with one_thread(), torch.no_grad():
        net = build_net(spec.conv, spec.readout, spec.layers, spec.hidden, spec.embed, labels.mean.size,
                        spec.use_u, plan.u.shape[1], 0)
        out = load_weights(net, model)(_torch_plan(plan, model)).double().numpy()
    return labels.decode(out, loss)


class TorchPredictor(Predictor):
    """A predictor trained by :func:`optimise`: ``steps``, ``learning_rate``, ``patience`` and
    ``seed`` are ``__init__`` parameters; :attr:`LOSS` is the loss."""

    LOSS: ClassVar[str] = "log"

    def _training(self) -> Training:
        params = self.get_params()
        return Training(self.LOSS, params["steps"], params["learning_rate"], params["patience"], params["seed"])

    def _check_params(self) -> None:
        check_training(self._training())


class GraphNetPredictor(TorchPredictor):
    """A predictor of one graph network per target. Subclasses set :attr:`ARCH` (the
    :class:`NetSpec` fields that are not parameters) and take the other fields as ``__init__``
    parameters."""

    ARCH: ClassVar[dict] = {}

    def _spec(self) -> NetSpec:
        params = self.get_params()
        return NetSpec(**{f: params.get(f, self.ARCH.get(f)) for f in NetSpec.__dataclass_fields__})

    def _check_params(self) -> None:
        self._spec().check()
        super()._check_params()

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict[str, np.ndarray]:
        return train(self._spec(), self._training(), stats, y[:, None])

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        return predict(self._spec(), self.LOSS, model, stats)[:, 0]
