"""``perfcast predict MODEL... [--device NAME_OR_FILE] [--predictor NAME] [--json]`` and
``perfcast predict --models IN.csv --out OUT.csv``: predicted latency, memory and energy."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from perfcast import api
from perfcast.cli.output import emit_json, human_bytes, table
from perfcast.errors import UsageError

OUT_FIELDS = ["model", "latency_ms", "latency_lo", "latency_hi", "memory_bytes", "energy_mj", "in_domain"]


def register(sub) -> None:
    from perfcast.cli.main import add_model_options

    p = sub.add_parser("predict", help="predict latency, peak memory and energy of models on a device")
    p.add_argument("models", nargs="*", metavar="MODEL", help="ONNX/TFLite file or spec string (zoo:resnet50, nb201:...)")
    p.add_argument("--device", default=None, metavar="NAME_OR_FILE",
                   help="a shipped device (see perfcast devices) or a device file (default: ort-cpu-1t@amd-epyc)")
    p.add_argument("--predictor", default=None, metavar="NAME", help="one of the device's predictors (default: its default)")
    p.add_argument("--models", dest="models_csv", metavar="IN.csv",
                   help="bulk: a CSV with a column 'model' (paths relative to its folder, or spec strings)")
    p.add_argument("--out", metavar="OUT.csv", help="bulk: where to write the predictions")
    p.add_argument("--alpha", type=float, default=0.1, help="miscoverage of the intervals (default 0.1: 90%%)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="bulk: processes that build and score the models (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON (one object, or a list for several models)")
    add_model_options(p)
    p.set_defaults(func=run)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _read_model_column(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "model" not in [c.strip() for c in reader.fieldnames or []]:
                raise UsageError(f"{path} row 1", f"missing column 'model' (columns: {', '.join(reader.fieldnames or []) or 'none'})")
            refs = []
            for row in reader:
                ref = {(k or "").strip(): v for k, v in row.items()}.get("model") or ""
                if not ref.strip():
                    raise UsageError(f"{path} row {reader.line_num}", "model is empty")
                refs.append(ref.strip())
    except OSError as exc:
        raise UsageError(str(path), f"cannot read ({exc.strerror or exc})") from None
    if not refs:
        raise UsageError(str(path), "has no models")
    return refs


def run_bulk(args) -> int:
    """Predict every model of ``--models`` into ``--out`` (written whole, or not at all)."""
    if not args.out or args.models:
        raise UsageError("--models", "needs --out OUT.csv and no MODEL arguments")
    src = Path(args.models_csv)
    refs = _read_model_column(src)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    rows = api.predict_many(refs, device=args.device, predictor=args.predictor, batch_size=args.batch_size,
                            folder=src.parent, alpha=args.alpha, where=lambda k, ref: f"{src} row {k + 1}",
                            workers=args.workers)
    n = 0
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, OUT_FIELDS)
            writer.writeheader()
            for r in rows:
                n += 1
                lo, hi = r["latency_ms_interval"]
                writer.writerow({k: _cell(v) for k, v in {
                    "model": r["model"], "latency_ms": r["latency_ms"], "latency_lo": lo, "latency_hi": hi,
                    "memory_bytes": r["memory_bytes"], "energy_mj": r["energy_mj"], "in_domain": r["in_domain"]}.items()})
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    print(f"wrote {n} predictions to {out}")
    return 0


def format_row(r: dict) -> list[str]:
    lo, hi = r["latency_ms_interval"]
    return [r["model"][:60], f"{r['latency_ms']:.4g}", f"[{lo:.4g}, {hi:.4g}]",
            human_bytes(r["memory_bytes"]) if r["memory_bytes"] is not None else "-",
            f"{r['energy_mj']:.4g}" if r["energy_mj"] is not None else "-", "yes" if r["in_domain"] else "NO"]


def run(args) -> int:
    from perfcast.frontends.common import parse_input_shapes

    if args.models_csv:
        return run_bulk(args)
    if not args.models:
        raise UsageError("predict", "give MODEL arguments or --models IN.csv --out OUT.csv")
    if args.out:
        raise UsageError("--out", "is for bulk prediction with --models IN.csv")
    results = api.predict(args.models, device=args.device, predictor=args.predictor, batch_size=args.batch_size,
                          input_shapes=parse_input_shapes(args.input_shape), alpha=args.alpha)
    if args.json:
        emit_json(results[0] if len(args.models) == 1 else results)
        return 0
    print(f"device {results[0]['device']}, predictor {results[0]['predictor']}")
    print(table(["model", "latency ms", f"{100 * (1 - args.alpha):g}% interval", "memory", "energy mJ", "in domain"],
                [format_row(r) for r in results], "lrrrrl"))
    return 0
