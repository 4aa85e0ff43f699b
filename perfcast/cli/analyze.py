"""``perfcast analyze MODEL... [--json]``: static cost of each model."""

from __future__ import annotations

import sys

from perfcast import api
from perfcast.cli.output import emit_json, human, human_bytes, table
from perfcast.errors import PerfcastError


def register(sub) -> None:
    from perfcast.cli.main import add_model_options

    p = sub.add_parser("analyze", help="static analysis: MACs, params, bytes, peak activation memory")
    p.add_argument("models", nargs="+", metavar="MODEL", help="ONNX/TFLite file or spec string (zoo:resnet50, nb201:...)")
    p.add_argument("--json", action="store_true", help="print JSON (one object, or a list for several models)")
    add_model_options(p)
    p.set_defaults(func=run)


def format_report(r: dict) -> str:
    total_macs = r["macs"] or 1
    rows = [
        [o["op_type"], str(o["count"]), human(o["macs"]), f"{100 * o['macs'] / total_macs:.1f}%", human(o["flops"]), human(o["params"])]
        for o in r["by_op_type"]
    ]
    lines = [
        f"{r['model']}  ({r['format']}, {r['nodes']} nodes, hash {r['content_hash'][:12]})",
        table(["op type", "count", "MACs", "share", "FLOPs", "params"], rows),
        f"total: {human(r['macs'])}MACs, {human(r['flops'])}FLOPs, {r['params']:,} params, "
        f"weights {human_bytes(r['weight_bytes'])}, peak activations {human_bytes(r['activation_peak_bytes'])}",
    ]
    if r["unsupported_ops"]:
        lines.append("unsupported ops (not costed): " + ", ".join(r["unsupported_ops"]))
    if r["uncosted_nodes"]:
        lines.append(f"nodes with unknown shapes (not costed): {len(r['uncosted_nodes'])}")
    return "\n".join(lines)


def run(args) -> int:
    from perfcast.frontends.common import parse_input_shapes

    shapes = parse_input_shapes(args.input_shape)
    reports, failed = [], False
    for ref in args.models:
        try:
            reports.append(api.analyze(ref, batch_size=args.batch_size, input_shapes=shapes))
        except PerfcastError as exc:
            if len(args.models) == 1:
                raise
            sys.stderr.write(f"perfcast: {exc.subject}: {exc.problem}\n")
            failed = True
    if args.json:
        emit_json(reports[0] if len(args.models) == 1 else reports)
    else:
        print("\n\n".join(format_report(r) for r in reports))
    return 2 if failed else 0
