"""``perfcast profile MODEL... --runtime R [--threads N] [--db URL] [--json]``."""

from __future__ import annotations

import statistics

from perfcast import api
from perfcast.cli.output import emit_json, table


def register(sub) -> None:
    p = sub.add_parser("profile", help="measure models on a real runtime here and store the measurements")
    p.add_argument("models", nargs="*", metavar="MODEL", help="ONNX/TFLite file or spec string")
    p.add_argument("--from", dest="manifest", metavar="MANIFEST", help="a manifest.csv from perfcast generate")
    p.add_argument("--runtime", default="ort-cpu", help="ort-cpu (default), litert, ort-cuda, torch-cuda")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="intra-op threads (default 1)")
    p.add_argument("--db", default=None, metavar="URL", help="store URL (default $PERFCAST_DB or ~/.perfcast/perfcast.db)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N")
    p.add_argument("--workers", type=int, default=3, help="fresh worker processes per model (default 3)")
    p.add_argument("--time-budget", type=float, default=0.6, metavar="S", help="timed seconds per model per worker")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="time limit per model per process")
    p.add_argument("--chunk", type=int, default=16, help="models measured (and committed) together")
    p.add_argument("--kernels", action="store_true", help="also record onnxruntime per-kernel profiles")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--force", action="store_true", help="measure again even when a good measurement exists")
    p.add_argument("--max-cv", type=float, default=0.05, metavar="X",
                   help="a stored measurement counts as good when its repeat CV is at most X (default 0.05)")
    p.add_argument("--reference-baseline-ms", type=float, default=None, metavar="MS",
                   help="drift baseline of the compute reference (default: that of the device's first stored "
                        "measurement, else this run's first chunk); a device file from calibrate lists its own")
    p.add_argument("--memory-reference-baseline-ms", type=float, default=None, metavar="MS",
                   help="drift baseline of the memory reference (as above)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = api.profile(
        args.models, runtime=args.runtime, threads=args.threads, db=args.db, manifest=args.manifest,
        batch_size=args.batch_size, workers=args.workers, time_budget_s=args.time_budget, timeout_s=args.timeout,
        chunk=args.chunk, kernels=args.kernels, memory=not args.no_memory, force=args.force, max_cv=args.max_cv,
        progress=False if args.no_progress else None, reference_baseline_ms=args.reference_baseline_ms,
        memory_reference_baseline_ms=args.memory_reference_baseline_ms,
    )
    if args.json:
        emit_json(summary.measured[0] if len(summary.measured) == 1 and not summary.skipped else summary.measured)
        return 0
    rows = [
        [m["model"][:48], m["status"], f"{m['latency_ms']['median']:.3f}" if m["latency_ms"] else "-",
         f"{100 * m['repeat_cv']:.1f}%" if m["repeat_cv"] is not None else "-",
         f"{m['peak_memory_bytes'] / 2**20:.1f}" if m["peak_memory_bytes"] is not None else "-",
         (m["error"] or "").splitlines()[0][:80] if m["error"] else ""]
        for m in summary.measured
    ]
    if rows:
        print(table(["model", "status", "latency ms", "cv", "memory MiB", "error"], rows, "llrrrl"))
    cvs = [m["repeat_cv"] for m in summary.measured if m["repeat_cv"] is not None]
    print(f"measured {len(summary.measured)}, failed {len(summary.failed)}, skipped (already measured) "
          f"{len(summary.skipped)}" + (f", median repeat CV {100 * statistics.median(cvs):.1f}%" if cvs else ""))
    return 0
