"""``perfcast demo``: the main job on built-in models, for a first look: their static cost, and their
predicted latency and peak memory, with 90 % intervals, on the default device."""

from __future__ import annotations

from perfcast import api
from perfcast.cli.output import human, human_bytes, table

DEMO_MODELS = ["zoo:resnet18", "zoo:resnet50", "zoo:mobilenet_v2"]


def register(sub) -> None:
    p = sub.add_parser("demo", help="analyse a few built-in networks and predict them on the default device")
    p.set_defaults(func=run)


def _interval(value: float, lo: float, hi: float, fmt) -> str:
    return f"{fmt(value)} ({fmt(lo)}-{fmt(hi)})"


def run(args) -> int:
    rows = []
    graphs = [api.load(ref) for ref in DEMO_MODELS]  # built once, for the analysis and the prediction
    predicted = api.predict(graphs)
    for ref, graph, p in zip(DEMO_MODELS, graphs, predicted):
        r = api.analyze(graph)
        rows.append([ref, str(r["nodes"]), human(r["macs"]), f"{r['params']:,}", human_bytes(r["weight_bytes"]),
                     human_bytes(r["activation_peak_bytes"]),
                     _interval(p["latency_ms"], *p["latency_ms_interval"], lambda x: f"{x:.1f}"),
                     _interval(p["memory_bytes"], *p["memory_bytes_interval"], human_bytes)])
    print(table(["model", "nodes", "MACs", "params", "weights", "peak activations", "latency ms (90%)",
                 "peak memory (90%)"], rows))
    print(f"predicted for {predicted[0]['device']} by {predicted[0]['predictor']}; "
          f"`perfcast predict MODEL --device NAME_OR_FILE` for another model or device")
    return 0
