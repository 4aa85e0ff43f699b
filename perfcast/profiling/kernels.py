"""Per-kernel profiles from onnxruntime, mapped back to the original model's nodes.

The model runs in a session with the timing runs' options plus
``enable_profiling`` and ``optimized_model_filepath``: the profiler's JSON trace gives
the duration of every kernel (``"cat": "Node"`` events named ``<node>_kernel_time``,
with ``op_name`` and ``provider``), bucketed into inferences by the ``model_run``
events; the saved optimized model says which kernels exist and which tensors they read
and write. ``duration_us`` is the median over the measured inferences of a kernel's
time in one inference.

Mapping a kernel to the original nodes whose work it does, from tensors, with no
list of fusion patterns:

1. Every tensor of the optimized graph is identified with a tensor of the original
   graph. Fusions and eliminations keep the names of the tensors they leave in place,
   so a shared name identifies it. A pass that renames tensors (layout transforms
   such as onnxruntime's NCHWc blocking, which also folds Add and ReLU into its
   convolutions) is seen through by value: both graphs run once on the same inputs
   with every tensor exposed, and a renamed tensor is identified with the earliest
   original tensor downstream of the kernel's inputs that has the same element sum
   and sum of squares (invariant under the layout change and channel padding) to a
   relative 1e-3.
2. A kernel's original nodes are the not-yet-claimed producers reached walking back
   from its output tensors through the original graph, stopping at its input tensors,
   at constants and at graph inputs. Kernels are visited in execution order, so each
   original node is claimed at most once. A node met on the way (not the one that
   produces the kernel's output) whose output holds exactly the values of one of its
   inputs is a no-op on these inputs (Identity, Dropout, a Reshape between fused ops,
   or an activation that changes none of these values): it is walked through and
   reported as ``eliminated``, not as part of the kernel.
3. Original nodes no kernel claimed are ``folded`` (constant subgraphs that the
   optimizer evaluated into initializers) or ``eliminated``. Kernels whose outputs
   hold the same values as their inputs (layout reorders, copies) claim no original
   node. Without value signatures (a graph that cannot be run unoptimized) the mapping
   uses names alone: a removed no-op then counts in the kernel that reads through it,
   and the work of a kernel with renamed outputs goes to the next kernel downstream.
"""

from __future__ import annotations

import bisect
import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from perfcast.profiling.runners import ModelRejected, OrtRunner, ort_inputs

SIGNATURE_RTOL = 1e-3
MAX_SIGNATURE_MODEL_BYTES = 1_800_000_000

# (kind, element sum, sum of squares): kind is "f" (floating), "i" (integer/bool)
Signature = tuple[str, float, float]


@dataclass(frozen=True)
class GraphView:
    """The top-level nodes of an ONNX graph: (label, op_type, domain, inputs, outputs)."""

    nodes: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...]
    inputs: frozenset[str]
    initializers: frozenset[str]

    @classmethod
    def from_onnx(cls, model) -> "GraphView":
        g = model.graph
        nodes = tuple(
            (node_label(n.name, n.op_type, list(n.output)), n.op_type, n.domain, tuple(n.input), tuple(n.output))
            for n in g.node
        )
        inits = frozenset(t.name for t in g.initializer) | frozenset(t.values.name for t in g.sparse_initializer)
        return cls(nodes, frozenset(i.name for i in g.input) - inits, inits)


def node_label(name: str, op_type: str, outputs: list[str]) -> str:
    """A node's name, or ``<op_type>:<first output>`` for an unnamed node."""
    return name or f"{op_type}:{next((o for o in outputs if o), '?')}"


@dataclass
class KernelMap:
    kernels: dict[str, list[str]] = field(default_factory=dict)  # optimized node -> original node labels
    folded: list[str] = field(default_factory=list)
    eliminated: list[str] = field(default_factory=list)
    op_types: dict[str, str] = field(default_factory=dict)  # original node label -> op_type


def constant_tensors(view: GraphView) -> set[str]:
    """Initializers and every output of a node whose inputs are all constant."""
    const = set(view.initializers)
    for _, _, _, ins, outs in view.nodes:
        if all(not i or i in const for i in ins):
            const.update(o for o in outs if o)
    return const


def _close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= SIGNATURE_RTOL * scale + 1e-12


class _SignatureIndex:
    """Original tensors sorted by sum of squares, for tolerance look-ups."""

    def __init__(self, signatures: dict[str, Signature], names: Iterable[str]) -> None:
        items = sorted((signatures[n][2], n) for n in names if n in signatures)
        self.keys = [k for k, _ in items]
        self.names = [n for _, n in items]
        self.signatures = signatures

    def matches(self, sig: Signature) -> list[str]:
        kind, s1, s2 = sig
        lo = bisect.bisect_left(self.keys, s2 - SIGNATURE_RTOL * abs(s2) - 1e-12)
        hi = bisect.bisect_right(self.keys, s2 + SIGNATURE_RTOL * abs(s2) + 1e-12)
        out = []
        for name in self.names[lo:hi]:
            k, t1, t2 = self.signatures[name]
            if k == kind and _close(s1, t1, max(abs(t1), t2 ** 0.5, 1e-30)):
                out.append(name)
        return out


def map_kernels(original: GraphView, optimized: GraphView,
                original_sigs: dict[str, Signature] | None = None,
                optimized_sigs: dict[str, Signature] | None = None) -> KernelMap:
    """Which original nodes each optimized node absorbed (see the module docstring)."""
    producer = {o: i for i, (_, _, _, _, outs) in enumerate(original.nodes) for o in outs if o}
    consumers: dict[str, list[int]] = {}
    for i, (_, _, _, ins, _) in enumerate(original.nodes):
        for t in ins:
            if t:
                consumers.setdefault(t, []).append(i)
    known = set(producer) | original.inputs | original.initializers
    const = constant_tensors(original)
    order = {t: -1 for t in original.inputs} | {o: producer[o] for o in producer}
    index = _SignatureIndex(original_sigs or {}, [t for t in order if t not in const])

    def downstream(tensors: set[str]) -> set[str]:
        seen, stack = set(tensors), list(tensors)
        while stack:
            for i in consumers.get(stack.pop(), ()):
                for o in original.nodes[i][4]:
                    if o and o not in seen:
                        seen.add(o)
                        stack.append(o)
        return seen

    phi = {t: t for t in (optimized.inputs | optimized.initializers) if t in known}
    folded_into_initializers = {t for t in optimized.initializers if t in producer}
    stop_always = const | original.inputs | folded_into_initializers
    claimed: dict[int, str] = {}
    noops: set[int] = set()
    result = KernelMap(op_types={n[0]: n[1] for n in original.nodes})
    for label, _, _, ins, outs in optimized.nodes:
        mapped_ins = {phi[t] for t in ins if t in phi}
        reach = None
        for out in outs:
            if not out:
                continue
            if out in known:
                phi[out] = out
            elif optimized_sigs and out in optimized_sigs:
                candidates = index.matches(optimized_sigs[out])
                live_ins = mapped_ins - const
                if live_ins and candidates:
                    reach = downstream(live_ins) if reach is None else reach
                    candidates = [c for c in candidates if c in reach]
                if candidates:
                    phi[out] = min(candidates, key=lambda c: order[c])
        stop = stop_always | mapped_ins
        starts = {producer[phi[o]] for o in outs if o in phi and phi[o] not in mapped_ins and phi[o] in producer}
        stack = list(starts)
        absorbed = []
        while stack:
            i = stack.pop()
            if i in claimed or i in noops:
                continue
            if i not in starts and original_sigs and _passes_values_through(original.nodes[i], original_sigs, const):
                noops.add(i)
            else:
                claimed[i] = label
                absorbed.append(i)
            stack.extend(producer[t] for t in original.nodes[i][3] if t and t not in stop and t in producer)
        result.kernels[label] = [original.nodes[i][0] for i in sorted(absorbed)]
    folded = _ancestors(original, producer, folded_into_initializers, claimed)
    for i, node in enumerate(original.nodes):
        if i in claimed:
            continue
        if i not in noops and (i in folded or all(o in const for o in node[4] if o)):
            result.folded.append(node[0])
        else:
            result.eliminated.append(node[0])
    return result


def _passes_values_through(node, sigs: dict[str, Signature], const: set[str]) -> bool:
    """Whether a node's first output holds exactly the values of one of its variable
    inputs in the unoptimized run (Identity, Dropout, a Reshape or Flatten inside a
    fused kernel): equal element sums and sums of squares."""
    out = node[4][0] if node[4] else ""
    return out in sigs and any(t and t not in const and sigs.get(t) == sigs[out] for t in node[3])


def _ancestors(view: GraphView, producer: dict[str, int], tensors: set[str], claimed: dict[int, str]) -> set[int]:
    """Unclaimed nodes that produce ``tensors`` or feed them."""
    found: set[int] = set()
    stack = [producer[t] for t in tensors]
    while stack:
        i = stack.pop()
        if i in found or i in claimed:
            continue
        found.add(i)
        stack.extend(producer[t] for t in view.nodes[i][3] if t in producer)
    return found


# -- running: value signatures, the profiler trace ------------------------------------------------
def signature(array) -> Signature:
    import numpy as np

    a = np.asarray(array)
    kind = "f" if a.dtype.kind in "fc" else "i"
    x = a.astype(np.float64, copy=False).ravel()
    return kind, float(x.sum()), float(np.dot(x, x))


def tensor_signatures(model, inputs: dict) -> dict[str, Signature] | None:
    """The signature of every top-level tensor of ``model`` (an onnx.ModelProto with its
    weights) run without graph optimisation on ``inputs``; None when it cannot run."""
    import onnx
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    have = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for out in node.output:
            if out and out not in have:
                exposed.graph.output.append(onnx.ValueInfoProto(name=out))
                have.add(out)
    if exposed.ByteSize() > MAX_SIGNATURE_MODEL_BYTES:
        return None
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(exposed.SerializeToString(), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {k: v for k, v in inputs.items() if k in {i.name for i in session.get_inputs()}})
    except Exception:  # a graph that only runs optimized (or on another provider): map by names alone
        return None
    sigs = {name: signature(v) for name, v in zip(names, values)}
    sigs.update({name: signature(v) for name, v in inputs.items()})
    return sigs


def kernel_times(trace: list[dict], skip_runs: int) -> dict[str, dict]:
    """Per kernel: durations (µs) per measured inference, provider, op_name and the
    memory figures the profiler reports, from an onnxruntime JSON trace."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run")
    runs = runs[skip_runs:]
    starts = [r[0] for r in runs]
    per_kernel: dict[str, dict] = {}
    suffix = "_kernel_time"
    for e in trace:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(suffix):
            continue
        k = bisect.bisect_right(starts, e["ts"]) - 1
        if k < 0 or e["ts"] > runs[k][1]:
            continue
        args = e.get("args", {})
        entry = per_kernel.setdefault(e["name"][: -len(suffix)], {
            "op_name": args.get("op_name"), "provider": args.get("provider"), "per_run": {}, "first_ts": e["ts"],
            "output_bytes": _int(args.get("output_size")), "activation_bytes": _int(args.get("activation_size")),
            "parameter_bytes": _int(args.get("parameter_size")),
        })
        entry["per_run"][k] = entry["per_run"].get(k, 0.0) + float(e["dur"])
    return per_kernel


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def trace_names(optimized: GraphView, times: dict[str, dict]) -> dict[str, str]:
    """Optimized node label -> its name in the trace. A named node keeps its name; the
    profiler calls an unnamed node ``<op_type>_<internal index>``, so unnamed nodes are
    paired in execution order with the trace names of their op type that match no node."""
    named = {label for label, *_ in optimized.nodes}
    out = {label: label for label in named if label in times}
    spare: dict[str, list[str]] = {}
    for name, t in sorted(times.items(), key=lambda item: item[1]["first_ts"]):
        if name not in named:
            spare.setdefault(t["op_name"], []).append(name)
    for label, op_type, _, _, _ in optimized.nodes:
        if label not in out and spare.get(op_type):
            out[label] = spare[op_type].pop(0)
    return out


def profile_rows(kmap: KernelMap, optimized: GraphView, times: dict[str, dict]) -> list[dict]:
    """One row per kernel that ran (execution order), then the folded and eliminated nodes."""
    rows = []
    names = trace_names(optimized, times)
    for label, op_type, domain, _, _ in optimized.nodes:
        if label not in names:
            continue
        t = times[names[label]]
        nodes = kmap.kernels.get(label, [])
        rows.append({
            "kernel": names[label], "op_type": t["op_name"] or op_type, "domain": domain or "ai.onnx",
            "provider": t["provider"], "nodes": nodes, "node_op_types": [kmap.op_types[n] for n in nodes],
            "duration_us": statistics.median(t["per_run"].values()), "count": len(t["per_run"]), "fate": "ran",
            "output_bytes": t["output_bytes"], "activation_bytes": t["activation_bytes"],
            "parameter_bytes": t["parameter_bytes"],
        })
    untimed = [n for label, *_ in optimized.nodes if label not in names for n in kmap.kernels.get(label, [])]
    for fate, nodes in (("folded", kmap.folded), ("eliminated", kmap.eliminated), ("untimed", untimed)):
        if nodes:
            rows.append({
                "kernel": None, "op_type": None, "domain": None, "provider": None, "nodes": list(nodes),
                "node_op_types": [kmap.op_types[n] for n in nodes], "duration_us": 0.0, "count": 0, "fate": fate,
                "output_bytes": None, "activation_bytes": None, "parameter_bytes": None,
            })
    return rows


def kernel_profile(runner: OrtRunner, path: str, runs: int = 10, warmup_runs: int = 3) -> list[dict]:
    """Profile ``path`` with onnxruntime and map its kernels to the original nodes."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="perfcast-kernels-") as tmp:
        optimized_path = Path(tmp) / "optimized.onnx"
        so = runner.session_options()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "trace")
        so.optimized_model_filepath = str(optimized_path)
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "optimized.data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1048576")
        session = runner.create_session(path, so)
        inputs = ort_inputs(session)
        for _ in range(warmup_runs + runs):
            try:
                session.run(None, inputs)
            except Exception as exc:
                raise ModelRejected("run", f"{type(exc).__name__}: {exc}") from None
        trace = json.loads(Path(session.end_profiling()).read_text())
        del session
        original = onnx.load(path)
        optimized = onnx.load(str(optimized_path))
        kmap = map_kernels(GraphView.from_onnx(original), GraphView.from_onnx(optimized),
                           tensor_signatures(original, inputs), tensor_signatures(optimized, inputs))
        return profile_rows(kmap, GraphView.from_onnx(optimized), kernel_times(trace, warmup_runs))
