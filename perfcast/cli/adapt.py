"""``perfcast adapt --samples S.csv --out DEV.json [--base NAME]...``: a device from a few measurements."""

from __future__ import annotations

from perfcast import api
from perfcast.cli.output import bases_line, emit_json


def register(sub) -> None:
    p = sub.add_parser("adapt", help="make a device file from a few measurements of a new device")
    p.add_argument("--samples", required=True, metavar="S.csv",
                   help="CSV with columns model, latency_ms (optional energy_mj, memory_bytes); "
                        "model is a path relative to the CSV's folder or a spec string")
    p.add_argument("--out", required=True, metavar="DEV.json", help="the device file to write")
    p.add_argument("--base", action="append", metavar="NAME_OR_FILE",
                   help="a device to transfer from (repeatable; default: every shipped device)")
    p.add_argument("--name", default=None, help="the new device's name (default: the file name without .json)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="batch size of the measured models (default 1)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = api.adapt(args.samples, args.out, bases=args.base, name=args.name, batch_size=args.batch_size)
    if args.json:
        emit_json(summary)
        return 0
    print(f"wrote {summary['out']}: device {summary['device']}, method {summary['method']}, "
          f"{summary['rows']} measurements, targets {', '.join(summary['targets'])}")
    for target, chosen in summary.get("bases", {}).items():
        print(bases_line(target, chosen))
    return 0
