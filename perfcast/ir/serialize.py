"""JSON serialization of the graph IR, with a schema version."""

from __future__ import annotations

import json
from typing import Any

from perfcast.errors import ModelLoadError
from perfcast.ir.graph import Graph, Node, Tensor

SCHEMA_VERSION = 1


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def graph_to_dict(graph: Graph) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "name": graph.name,
        "source_format": graph.source_format,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "tensors": [
            {
                "name": t.name,
                "shape": list(t.shape) if t.shape is not None else None,
                "dtype": t.dtype,
                "constant": t.constant,
                **({"value": list(t.value)} if t.value is not None else {}),
            }
            for t in graph.tensors.values()
        ],
        "nodes": [
            {
                "name": n.name,
                "op_type": n.op_type,
                **({"domain": n.domain} if n.domain else {}),
                "inputs": list(n.inputs),
                "outputs": list(n.outputs),
                "attrs": {k: _plain(v) for k, v in n.attrs.items()},
            }
            for n in graph.nodes
        ],
    }


def graph_from_dict(data: dict, source: str = "graph") -> Graph:
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ModelLoadError(source, f"IR schema version {version!r} is not {SCHEMA_VERSION}")
    try:
        tensors = [
            Tensor(
                name=t["name"],
                shape=tuple(t["shape"]) if t["shape"] is not None else None,
                dtype=t["dtype"],
                constant=bool(t["constant"]),
                value=tuple(t["value"]) if t.get("value") is not None else None,
            )
            for t in data["tensors"]
        ]
        nodes = [
            Node(n["name"], n["op_type"], n["inputs"], n["outputs"], n.get("attrs", {}), n.get("domain", ""))
            for n in data["nodes"]
        ]
        return Graph(nodes, tensors, data["inputs"], data["outputs"], data.get("name", ""), data.get("source_format", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(source, f"malformed IR JSON ({exc})") from None


def dumps(graph: Graph) -> str:
    return json.dumps(graph_to_dict(graph), separators=(",", ":"))


def loads(text: str, source: str = "graph") -> Graph:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(source, f"not JSON ({exc.msg} at line {exc.lineno})") from None
    return graph_from_dict(data, source)
