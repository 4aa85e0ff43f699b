"""``perfcast calibrate --runtime R [--threads N] --out DEV.json [--count N] [--db URL]
[--budget-minutes M]``: this machine as a new device, from the built-in calibration set."""

from __future__ import annotations

from perfcast import api
from perfcast.calibration import DEFAULT_COUNT, MIN_COUNT, RUNTIMES
from perfcast.cli.output import bases_line, emit_json, table


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="profile the built-in calibration set here and write a device file")
    p.add_argument("--runtime", default="ort-cpu", help=f"runtime to measure ({', '.join(RUNTIMES)}; default ort-cpu)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="intra-op threads (default 1)")
    p.add_argument("--out", required=True, metavar="DEV.json", help="the device file to write")
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, metavar="N",
                   help=f"calibration networks to measure, the first N of the set ({MIN_COUNT}..{DEFAULT_COUNT}, "
                        f"default {DEFAULT_COUNT})")
    p.add_argument("--db", default=None, metavar="URL",
                   help="also keep the measurements in this store (default: a temporary one)")
    p.add_argument("--budget-minutes", type=float, default=None, metavar="M",
                   help="start no chunk of networks that would end after M minutes of profiling (default: no limit)")
    p.add_argument("--base", action="append", metavar="NAME_OR_FILE",
                   help="a device to transfer from (repeatable; default: the shipped CPU device "
                        "ort-cpu-1t@amd-epyc, trained on every space)")
    p.add_argument("--name", default=None, help="the new device's name (default: the file name without .json)")
    p.add_argument("--workers", type=int, default=3, help="fresh worker processes per network (default 3)")
    p.add_argument("--time-budget", type=float, default=0.6, metavar="S",
                   help="timed seconds per network per worker (default 0.6)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="time limit per network per process")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = api.calibrate(
        args.out, runtime=args.runtime, threads=args.threads, count=args.count, db=args.db,
        budget_minutes=args.budget_minutes, bases=args.base, name=args.name,
        progress=False if args.no_progress else None,
        workers=args.workers, time_budget_s=args.time_budget, timeout_s=args.timeout,
    )
    if args.json:
        emit_json(summary)
        return 0
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """The human-readable summary of a calibration."""
    c = summary["calibration"]
    lines = [f"measured {c['measured']} of {c['networks']} calibration networks on {c['measured_device']} "
             f"in {c['profiling_s'] / 60:.1f} min; failed {len(c['failed'])}, "
             f"skipped by the budget {len(c['skipped_by_budget'])}"]
    lines += [f"  failed {f['model'][:60]}: {f['error'].splitlines()[0][:100]}" for f in c["failed"]]
    held_out = "leave-one-out" if summary["method"] == "transfer" else "cross-validated"
    rows = [[target, str(e["rows"]), f"{e['in_sample_median_pct']:.1f}%", f"{e['in_sample_mape_pct']:.1f}%",
             f"{e['held_out_median_pct']:.1f}%", f"{e['held_out_p90_pct']:.1f}%",
             f"+-{e['interval90_halfwidth_pct']:.1f}%"]
            for target, e in summary["errors"].items()]
    lines.append(table(["target", "rows", "in-sample median", "in-sample MAPE", f"{held_out} median",
                        f"{held_out} p90", "90% interval"], rows))
    for target, chosen in summary.get("bases", {}).items():
        lines.append(bases_line(target, chosen))
    lines.append(f"wrote {summary['out']}: device {summary['device']}, method {summary['method']}, "
                 f"targets {', '.join(summary['targets'])}")
    return "\n".join(lines)
