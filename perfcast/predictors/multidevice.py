"""Methods that learn across many devices and move to a new device from a few measurements.

A :class:`MultiDeviceModel` is fitted on several devices at once::

    model = get_multidevice("fewshot").fit_devices({"help:titanx": (graphs, targets), ...})
    predictor = model.adapt(sample_graphs, sample_targets, device="help:titanxp")

``fit_devices`` takes ``{device name: (graphs, {target: labels})}`` (NaN where missing; a device
name is a :data:`perfcast.datasets.shared.DEVICES` key, optionally with ``/b<N>`` for a batch size).
Each labelled (device, target) pair with at least :data:`MIN_TASK_ROWS` labels is one *task*.
``adapt`` returns a normal fitted :class:`perfcast.predictors.base.Predictor` of the new device
(registered under the method's name, saved and loaded by the base class, no pickle).

Every method here predicts ``log y`` through the same two-part form, so one predictor class
(:class:`AdaptedPredictor`) serves them all:

- a *trunk*: the graph-level summary row (:data:`perfcast.predictors.features.COLUMNS` up to
  :data:`~perfcast.predictors.features.N_SUMMARY`), mapped by
  ``log1p`` and standardised by the multi-device training set's mean and deviation, through a
  multilayer perceptron (ReLU layers; the last one linear where it gives one number) whose weights the method derives
  for the new device (a hardware embedding folded into the first layer's bias, for instance);
- a linear *head* on ``[trunk output, 1]``, which the method fits on the new device's samples
  (:meth:`MultiDeviceModel._fit_head`) given a prior from the source devices.

The trunk's weights, the head and the feature standardisation are stored as the predictor's
arrays, so an adapted predictor is independent of the multi-device model that made it. Without a
multi-device model (``get_predictor("fewshot").fit(graphs, targets)``) the trunk is the FLOPs-linear
baseline (:mod:`perfcast.predictors.flops`) fitted on the same rows and the head is a log-linear map
of it, its exponent shrunk towards 1 (:func:`perfcast.predictors.transfer.fit_log_map`).

Conformal residuals of an adapted predictor are leave-one-out (the head, and whatever the method
derives from the samples, refitted without each sample in turn) up to :data:`LOO_MAX_ROWS` samples.
Its domain is the multi-device training networks plus the samples.

Neural networks are trained with torch on one CPU thread in float32 with a fixed seed; predictions
are computed with numpy in float64 from the stored weights. A multi-device model is saved as a
directory with ``model.json`` (format, name, parameters, task list, text state) and
``arrays.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Mapping, Sequence

import numpy as np

from perfcast.errors import UsageError
from perfcast.ir.graph import Graph
from perfcast.predictors.base import (
    MIN_LABELS,
    TARGETS,
    Parameters,
    Predictor,
    _check_graphs,
    _check_targets,
    domain_features,
    extend_domain,
    fit_domain,
    leave_one_out_residuals,
    read_saved,
    registering,
    write_saved,
)
from perfcast.predictors.features import COLUMNS, GraphStats, graph_stats
from perfcast.predictors.flops import FlopsLinear
from perfcast.predictors.transfer import fit_log_map

FORMAT = "perfcast-multidevice"
FORMAT_VERSION = 1
MIN_TASK_ROWS = 20
LOO_MAX_ROWS = 50
_TINY = 1e-30
_BATCH_SUFFIX = "/b"

_MODELS: dict[str, type["MultiDeviceModel"]] = {}


# --- registry ----------------------------------------------------------------------------------
def register_multidevice(name: str) -> Callable[[type["MultiDeviceModel"]], type["MultiDeviceModel"]]:
    """Class decorator: make a multi-device method available by ``name``."""
    return registering(_MODELS, "multi-device method", name)


def multidevice_names() -> list[str]:
    return sorted(_MODELS)


def get_multidevice(name: str, **params) -> "MultiDeviceModel":
    """A new, unfitted multi-device model of the registered ``name``."""
    if name not in _MODELS:
        raise UsageError("multi-device method", f"unknown name {name!r}; known: {', '.join(multidevice_names())}")
    try:
        return _MODELS[name](**params)
    except TypeError as exc:
        raise UsageError(f"multi-device method {name}", f"bad parameters {sorted(params)}: {exc}") from None


def device_key(name: str) -> str:
    """The device of a device setting name (``help:titanx/b32`` -> ``help:titanx``)."""
    return name.split(_BATCH_SUFFIX, 1)[0]


# --- features ----------------------------------------------------------------------------------
def log_rows(stats: Sequence[GraphStats]) -> np.ndarray:
    """The trunk's input: the ``log1p`` summary columns (the perceptrons learn from a few thousand
    networks, too few for the sparse hashed structure counts)."""
    return domain_features(stats)


def standardiser(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and deviation of each column (deviation 1 where a column is constant)."""
    scale = z.std(axis=0)
    return z.mean(axis=0), np.where(scale > 1e-9, scale, 1.0)


def safe_log(values) -> np.ndarray:
    return np.log(np.maximum(np.asarray(values, float), _TINY))


# --- the trunk in numpy ------------------------------------------------------------------------
def trunk_forward(trunk: Mapping[str, np.ndarray], stats: Sequence[GraphStats]) -> np.ndarray:
    """The trunk output of each graph, ``(graphs, width)`` (see the module docstring)."""
    if "flops_coef" in trunk:
        return safe_log(FlopsLinear()._design(list(stats)) @ np.asarray(trunk["flops_coef"], float))[:, None]
    z = (log_rows(stats) - trunk["x_mean"]) / trunk["x_scale"]
    return layers_forward(trunk, z)


def layers_forward(trunk: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    n = int(np.asarray(trunk["n_layers"]).reshape(-1)[0])
    relu_out = "relu_out" in trunk
    for i in range(n):
        w = np.asarray(trunk[f"w{i}"], float)
        z = z @ w.reshape(z.shape[1], -1) + trunk[f"b{i}"]
        if i < n - 1 or relu_out:
            z = np.maximum(z, 0.0)
    return z


def design(trunk: Mapping[str, np.ndarray], stats: Sequence[GraphStats]) -> np.ndarray:
    """``[trunk output, 1]`` per graph: what a head multiplies."""
    h = trunk_forward(trunk, stats)
    return np.column_stack([h, np.ones(len(h))])


# --- heads -------------------------------------------------------------------------------------
def affine_head(f: np.ndarray, t: np.ndarray, prior_rows: float) -> np.ndarray:
    """Head ``[b, c]`` of ``t = b f + c``, ``b`` shrunk towards 1 (worth ``prior_rows`` rows)."""
    c, b = fit_log_map(f, t, prior_rows)
    return np.array([b, c])


def gaussian_head(phi: np.ndarray, t: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                  noise_grid: Sequence[float]) -> np.ndarray:
    """Posterior mean of ``w`` in ``t = phi w + e`` with ``w ~ N(mean, cov)``, ``e ~ N(0, s^2)``;
    ``s^2`` from ``noise_grid`` by the largest marginal likelihood."""
    r = t - phi @ mean
    k = phi @ cov @ phi.T
    best, best_ll = None, -math.inf
    for s2 in noise_grid:
        a = k + s2 * np.eye(len(t))
        try:
            chol = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            continue
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, r))
        ll = -0.5 * float(r @ alpha) - float(np.log(np.diag(chol)).sum())
        if ll > best_ll:
            best, best_ll = alpha, ll
    if best is None:
        return np.asarray(mean, float).copy()
    return mean + cov @ phi.T @ best


def gradient_head(phi: np.ndarray, t: np.ndarray, start: np.ndarray, steps: int, learning_rate: float) -> np.ndarray:
    """``steps`` of gradient descent on the mean squared error from ``start`` (a new head fine-tuned
    for a few steps); the step is scaled by the largest curvature so it is stable for any ``phi``."""
    w = np.asarray(start, float).copy()
    curvature = float(np.linalg.eigvalsh(phi.T @ phi / len(t)).max(initial=0.0))
    step = learning_rate / max(curvature, 1e-12)
    for _ in range(steps):
        w -= step * phi.T @ (phi @ w - t) / len(t)
    return w


# --- torch training ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pairs:
    """Training pairs of (network row, condition row, task) with standardised targets."""

    network: np.ndarray  # index into the network feature matrix
    task: np.ndarray  # task index
    target: np.ndarray  # standardised log label
    weight: np.ndarray  # each task weighs the same in the loss


def task_pairs(rows_per_task: Sequence[np.ndarray], targets_per_task: Sequence[np.ndarray]) -> Pairs:
    network = np.concatenate(rows_per_task)
    task = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows_per_task)])
    target = np.concatenate(targets_per_task)
    weight = np.concatenate([np.full(len(r), 1.0 / (len(r) * len(rows_per_task))) for r in rows_per_task])
    return Pairs(network, task, target, weight)


def _torch_seeded(seed: int):
    import torch

    torch.set_num_threads(1)
    return torch.Generator().manual_seed(int(seed))


def _init_layer(torch, gen, n_in: int, n_out: int, gain: float = 2.0):
    w = torch.nn.Parameter(torch.randn(n_in, n_out, generator=gen) * math.sqrt(gain / n_in))
    return w, torch.nn.Parameter(torch.zeros(n_out))


def _mlp_torch(torch, params, z):
    n = len(params) // 2
    for i in range(n):
        z = z @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            z = torch.relu(z)
    return z


def _weights_out(params) -> dict[str, np.ndarray]:
    out = {"n_layers": np.array([float(len(params) // 2)])}
    for i in range(len(params) // 2):
        out[f"w{i}"] = params[2 * i].detach().double().numpy()
        out[f"b{i}"] = params[2 * i + 1].detach().double().numpy()
    return out


def train_trunk_heads(x: np.ndarray, pairs: Pairs, n_tasks: int, hidden: Sequence[int], steps: int,
                      learning_rate: float, weight_decay: float, seed: int) -> tuple[dict, np.ndarray]:
    """A shared trunk (``hidden`` ReLU layers) with one linear head per task, trained full batch with
    Adam on the weighted squared error of standardised log labels. Returns the trunk's weights and the
    heads ``(tasks, width + 1)`` (last column: bias)."""
    import torch

    gen = _torch_seeded(seed)
    sizes = [x.shape[1], *hidden]
    params = [p for a, b in zip(sizes[:-1], sizes[1:]) for p in _init_layer(torch, gen, a, b)]
    heads = torch.nn.Parameter(torch.randn(n_tasks, sizes[-1], generator=gen) * sizes[-1] ** -0.5)
    bias = torch.nn.Parameter(torch.zeros(n_tasks))
    x_t = torch.as_tensor(x, dtype=torch.float32)
    net, task = torch.as_tensor(pairs.network), torch.as_tensor(pairs.task)
    t = torch.as_tensor(pairs.target, dtype=torch.float32)
    w = torch.as_tensor(pairs.weight, dtype=torch.float32)
    opt = torch.optim.AdamW([*params, heads, bias], lr=learning_rate, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        h = torch.relu(_mlp_torch(torch, params, x_t))
        pred = (h[net] * heads[task]).sum(dim=1) + bias[task]
        loss = (w * (pred - t) ** 2).sum()
        loss.backward()
        opt.step()
    trunk = _weights_out(params)
    trunk["relu_out"] = np.array([1.0])
    head = np.column_stack([heads.detach().double().numpy(), bias.detach().double().numpy()])
    return trunk, head


def train_conditioned(x: np.ndarray, cond: np.ndarray, pairs: Pairs, cond_index: np.ndarray,
                      hidden: Sequence[int], steps: int, learning_rate: float, weight_decay: float, seed: int,
                      batch: int = 1024) -> dict:
    """An MLP of ``[network features, condition]`` to one standardised log label, trained with Adam
    on minibatches of ``batch`` pairs; ``cond_index[pair]`` picks the row of ``cond`` (one of
    several per task, drawn per step where ``cond_index`` is 2-D). Returns the weights."""
    import torch

    gen = _torch_seeded(seed)
    sizes = [x.shape[1] + cond.shape[1], *hidden, 1]
    params = [p for a, b in zip(sizes[:-1], sizes[1:]) for p in _init_layer(torch, gen, a, b)]
    x_t, c_t = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(cond, dtype=torch.float32)
    net = torch.as_tensor(pairs.network)
    choices = torch.as_tensor(cond_index.reshape(len(pairs.network), -1))
    t = torch.as_tensor(pairs.target, dtype=torch.float32)
    w = torch.as_tensor(pairs.weight, dtype=torch.float32)
    w = w / w.mean()
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    n = len(pairs.network)
    for _ in range(steps):
        pick = torch.randint(n, (min(batch, n),), generator=gen)
        variant = torch.randint(choices.shape[1], (len(pick),), generator=gen)
        z = torch.cat([x_t[net[pick]], c_t[choices[pick, variant]]], dim=1)
        pred = _mlp_torch(torch, params, z)[:, 0]
        loss = (w[pick] * (pred - t[pick]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _weights_out(params)


def fold_condition(weights: Mapping[str, np.ndarray], n_inputs: int, cond: np.ndarray) -> dict[str, np.ndarray]:
    """The weights of a conditioned MLP with the condition ``cond`` folded into the first layer's
    bias: an MLP of the network features alone."""
    out = dict(weights)
    w0 = np.asarray(weights["w0"], float)
    out["w0"] = w0[:n_inputs]
    out["b0"] = np.asarray(weights["b0"], float) + cond @ w0[n_inputs:]
    return out


# --- tasks -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One (device, target) of the multi-device data: its networks and log labels."""

    device: str
    target: str
    rows: np.ndarray  # index into the unique networks
    log_y: np.ndarray


def collect_tasks(data) -> tuple[list[GraphStats], list[Task]]:
    """The distinct networks (by content hash) and tasks of ``fit_devices`` data (checked)."""
    if not isinstance(data, Mapping) or not data:
        raise UsageError("devices", "must be a non-empty dict {device name: (graphs, targets)}")
    index: dict[str, int] = {}
    stats: list[GraphStats] = []
    tasks: list[Task] = []
    for device, value in data.items():
        if not isinstance(device, str) or not isinstance(value, Sequence) or len(value) != 2:
            raise UsageError(f"devices[{device!r}]", "must map a device name to (graphs, targets)")
        graphs = _check_graphs(value[0])
        labels = _check_targets(value[1], len(graphs))
        rows = []
        for g in graphs:
            s = graph_stats(g)
            if s.content_hash not in index:
                index[s.content_hash] = len(stats)
                stats.append(s)
            rows.append(index[s.content_hash])
        rows = np.array(rows, int)
        for target in TARGETS:
            y = labels.get(target)
            if y is None:
                continue
            keep = ~np.isnan(y) & (y > 0)
            if keep.sum() >= MIN_TASK_ROWS:
                tasks.append(Task(device, target, rows[keep], safe_log(y[keep])))
    if not tasks:
        raise UsageError("devices", f"no (device, target) has {MIN_TASK_ROWS} positive labels")
    return stats, tasks


# --- the multi-device model --------------------------------------------------------------------
class MultiDeviceModel(Parameters):
    """Base class of the multi-device methods (see the module docstring).

    A subclass stores its parameters in ``__init__``, learns from the tasks in
    :meth:`_fit_tasks` (state in attributes ending in ``_``: arrays in ``arrays_``, JSON-able
    values in ``state_``), and gives an adapted predictor its trunk and head
    (:meth:`_device_trunk`, :meth:`_fit_head`)."""

    name: ClassVar[str] = ""
    predictor_name: ClassVar[str] = ""

    def _check_params(self) -> None:
        """Raise UsageError for a bad parameter value."""

    # -- fit ----------------------------------------------------------------------------------
    def fit_devices(self, data: Mapping[str, tuple[Sequence[Graph], Mapping[str, Sequence[float]]]]) -> "MultiDeviceModel":
        """Learn from several devices at once: ``{device name: (graphs, {target: labels})}``."""
        self._check_params()
        stats, tasks = collect_tasks(data)
        z = log_rows(stats)
        x_mean, x_scale = standardiser(z)
        self.arrays_: dict[str, np.ndarray] = {"x_mean": x_mean, "x_scale": x_scale}
        self.state_: dict = {"tasks": [[t.device, t.target] for t in tasks]}
        self.domain_ = fit_domain(stats)
        self._fit_tasks((z - x_mean) / x_scale, stats, tasks)
        return self

    def _fit_tasks(self, x: np.ndarray, stats: list[GraphStats], tasks: list[Task]) -> None:
        raise NotImplementedError

    def _fitted(self) -> None:
        if not hasattr(self, "arrays_"):
            raise UsageError(f"multi-device method {self.name}", "is not fitted: call fit_devices or load first")

    @property
    def tasks(self) -> list[tuple[str, str]]:
        self._fitted()
        return [(d, t) for d, t in self.state_["tasks"]]

    def source_tasks(self, target: str) -> list[int]:
        """Indices of the tasks of ``target`` (every task when no source has it)."""
        same = [i for i, (_, t) in enumerate(self.tasks) if t == target]
        return same or list(range(len(self.tasks)))

    # -- adapt --------------------------------------------------------------------------------
    def adapt(self, graphs: Sequence[Graph], targets: Mapping[str, Sequence[float]],
              device: str | None = None) -> Predictor:
        """A fitted predictor of a new device from its measured ``graphs`` and ``targets``; ``device``
        (optional) names it, for methods that know devices by name."""
        from perfcast.predictors.base import get_predictor

        self._fitted()
        return get_predictor(self.predictor_name).fit(graphs, targets, backbone=self, device=device)

    def trunk_arrays(self) -> dict[str, np.ndarray]:
        return {"x_mean": self.arrays_["x_mean"], "x_scale": self.arrays_["x_scale"]}

    def _device_trunk(self, target: str, stats: list[GraphStats], log_y: np.ndarray,
                      device: str | None) -> tuple[dict[str, np.ndarray], dict]:
        """The trunk of the new device for ``target`` given its samples, and the head prior
        (passed to :meth:`_fit_head`)."""
        raise NotImplementedError

    def _fit_head(self, phi: np.ndarray, log_y: np.ndarray, prior: dict) -> np.ndarray:
        raise NotImplementedError

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to the directory ``path`` (created if needed)."""
        self._fitted()
        arrays = {f"model/{k}": np.ascontiguousarray(v, dtype=np.float64) for k, v in self.arrays_.items()}
        arrays.update({f"domain/{k}": np.ascontiguousarray(v) for k, v in self.domain_.items()})
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name, "params": self.get_params(),
                "feature_columns": list(COLUMNS), "state": self.state_}
        return write_saved(path, "model.json", json.dumps(meta, indent=1), arrays)

    @staticmethod
    def load(path: str | os.PathLike) -> "MultiDeviceModel":
        """Read a model written by :meth:`save` (any registered method)."""
        meta, arrays = read_saved(path, "model.json", FORMAT, FORMAT_VERSION, "multi-device model")
        model = get_multidevice(meta["name"], **meta["params"])
        model.state_ = meta["state"]
        model.arrays_ = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        model.domain_ = {k[len("domain/"):]: v for k, v in arrays.items() if k.startswith("domain/")}
        return model


# --- the adapted predictor ---------------------------------------------------------------------
_TRUNK = "trunk:"


class AdaptedPredictor(Predictor):
    """``y = exp([trunk(x), 1] . head)`` per target (see the module docstring). Subclasses only
    register a name; ``fit(graphs, targets, backbone=model, device=name)`` adapts ``model`` (a
    fitted :class:`MultiDeviceModel`) to the measured graphs."""

    def __init__(self, prior_rows: float = 2.0) -> None:
        self.prior_rows = prior_rows

    def _check_params(self) -> None:
        p = self.prior_rows
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < math.inf:
            raise UsageError("prior_rows", f"must be a number >= 0, not {p!r}")

    def fit(self, graphs: Sequence[Graph], targets: Mapping[str, Sequence[float]],
            kernel_profiles: Sequence[list[dict] | None] | None = None, *,
            backbone: MultiDeviceModel | None = None, device: str | None = None) -> "AdaptedPredictor":
        """Adapt ``backbone`` to the measured graphs (without one: a log-linear map of the FLOPs
        baseline fitted on the same rows). Kernel profiles are checked and not used."""
        if backbone is not None and not isinstance(backbone, MultiDeviceModel):
            raise UsageError("backbone", f"is a {type(backbone).__name__}, not a multi-device model")
        if backbone is not None:
            backbone._fitted()
        self._backbone, self._device = backbone, device
        try:
            super().fit(graphs, targets, kernel_profiles)
        finally:
            del self._backbone, self._device
        if backbone is not None:
            self.domain_ = extend_domain(backbone.domain_, [graph_stats(g) for g in graphs])
        return self

    def _fit_target(self, target: str, stats: list[GraphStats], y: np.ndarray) -> dict:
        log_y = safe_log(y)
        if self._backbone is None:
            trunk = {"flops_coef": FlopsLinear()._fit_target(target, stats, y)["coef"]}
            head = affine_head(trunk_forward(trunk, stats)[:, 0], log_y, self.prior_rows)
        else:
            trunk, prior = self._backbone._device_trunk(target, stats, log_y, self._device)
            head = self._backbone._fit_head(design(trunk, stats), log_y, prior)
        return {**{_TRUNK + k: np.asarray(v, float) for k, v in trunk.items()}, "head": head}

    def _predict_target(self, target: str, model: Mapping, stats: list[GraphStats]) -> np.ndarray:
        trunk = {k[len(_TRUNK):]: v for k, v in model.items() if k.startswith(_TRUNK)}
        return np.exp(np.clip(design(trunk, stats) @ np.asarray(model["head"], float), -700.0, 700.0))

    def _cross_residuals(self, target: str, stats: list[GraphStats], y: np.ndarray,
                         profiles: list[list[dict] | None] | None = None) -> np.ndarray:
        if len(stats) > LOO_MAX_ROWS:
            return super()._cross_residuals(target, stats, y, profiles)
        return leave_one_out_residuals(self, target, stats, y)


def check_perceptron_params(model: MultiDeviceModel) -> None:
    """Check the training parameters of a method that trains a perceptron: ``hidden`` (a list of
    layer widths up to 1024), ``steps``, ``learning_rate``, ``weight_decay`` and ``seed``."""
    from perfcast.predictors.kernel import _check_number

    if isinstance(model.hidden, (str, bytes)) or not isinstance(model.hidden, Sequence) or not model.hidden:
        raise UsageError("hidden", f"must be a list of layer widths, not {model.hidden!r}")
    for width in model.hidden:
        _check_number("hidden", width, 1, integer=True, high=1024)
    _check_number("steps", model.steps, 1, integer=True)
    _check_number("learning_rate", model.learning_rate, 1e-6, high=1.0)
    _check_number("weight_decay", model.weight_decay, 0.0)
    _check_number("seed", model.seed, 0, integer=True)


def check_samples(graphs, targets) -> tuple[list[Graph], dict[str, np.ndarray]]:
    """Graphs and targets of a new device's samples, checked as ``fit`` checks them."""
    graphs = _check_graphs(graphs)
    labels = _check_targets(targets, len(graphs))
    if max(int((~np.isnan(y)).sum()) for y in labels.values()) < MIN_LABELS:
        raise UsageError("samples", f"need at least {MIN_LABELS} measured networks")
    return graphs, labels


# --- a perceptron conditioned on a device vector -----------------------------------------------
class ConditionedModel(MultiDeviceModel):
    """One perceptron of ``[network features, device vector]`` over every task; a new device gets its
    vector (:meth:`_new_condition`) folded into the first layer and a log-linear head ``t = b f + c``
    with ``b`` shrunk towards 1 by ``prior_rows`` rows. Subclasses give the device vectors of the
    training tasks (:meth:`_conditions`)."""

    def __init__(self, hidden: Sequence[int] = (64, 32), steps: int = 800, learning_rate: float = 3e-3,
                 weight_decay: float = 1e-4, seed: int = 0, prior_rows: float = 2.0) -> None:
        self.hidden = hidden
        self.steps = steps
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.seed = seed
        self.prior_rows = prior_rows

    def _check_params(self) -> None:
        from perfcast.predictors.kernel import _check_number

        check_perceptron_params(self)
        _check_number("prior_rows", self.prior_rows, 0.0)

    def get_params(self) -> dict:
        params = super().get_params()
        params["hidden"] = [int(w) for w in params["hidden"]]
        return params

    def _conditions(self, x: np.ndarray, stats: list[GraphStats], tasks: list[Task]
                    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The condition table, each pair's condition rows (pairs, variants) and each task's
        training labels."""
        raise NotImplementedError

    def _new_condition(self, target: str, stats: list[GraphStats], log_y: np.ndarray,
                       device: str | None) -> np.ndarray:
        raise NotImplementedError

    def _fit_tasks(self, x, stats, tasks):
        cond, cond_index, labels = self._conditions(x, stats, tasks)
        pairs = task_pairs([t.rows for t in tasks], labels)
        weights = train_conditioned(x, cond, pairs, cond_index, list(self.hidden), self.steps, self.learning_rate,
                                    self.weight_decay, self.seed)
        self.arrays_.update({f"net_{k}": v for k, v in weights.items()})

    def _device_trunk(self, target, stats, log_y, device):
        weights = {k[len("net_"):]: v for k, v in self.arrays_.items() if k.startswith("net_")}
        n_inputs = len(self.arrays_["x_mean"])
        trunk = fold_condition(weights, n_inputs, self._new_condition(target, stats, log_y, device))
        trunk.update(self.trunk_arrays())
        return trunk, {}

    def _fit_head(self, phi, log_y, prior):
        return affine_head(phi[:, 0], log_y, self.prior_rows)
