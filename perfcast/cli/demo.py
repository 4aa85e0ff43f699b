"""``perfcast demo``: the main job on built-in models, for a first look."""

from __future__ import annotations

from perfcast import api
from perfcast.cli.output import human, human_bytes, table

DEMO_MODELS = ["zoo:resnet18", "zoo:resnet50", "zoo:mobilenet_v2"]


def register(sub) -> None:
    p = sub.add_parser("demo", help="analyse a few built-in networks and print a summary table")
    p.set_defaults(func=run)


def run(args) -> int:
    rows = []
    for ref in DEMO_MODELS:
        r = api.analyze(ref)
        rows.append([ref, str(r["nodes"]), human(r["macs"]), f"{r['params']:,}", human_bytes(r["weight_bytes"]),
                     human_bytes(r["activation_peak_bytes"])])
    print(table(["model", "nodes", "MACs", "params", "weights", "peak activations"], rows))
    return 0
