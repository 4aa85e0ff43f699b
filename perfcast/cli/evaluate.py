"""``perfcast evaluate --data shared|local|DIR --protocol a|b|c|all --out DIR``: accuracy of the
predictors on held-out networks, written as report.md, metrics.json, predictions.csv.gz and PNG plots
(see :mod:`perfcast.evaluation.harness` for the protocols)."""

from __future__ import annotations

import shlex
import time
from datetime import datetime, timezone
from pathlib import Path

from perfcast.errors import UsageError

LOCAL_DEFAULT = Path(__file__).resolve().parents[2] / "data" / "local-ort-cpu"
DEFAULT_MAX_ROWS = 1500
QUICK = {"max_rows": 150, "train_sizes": "50,all", "ks": "5,10", "draws": 1}


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate predictors on measured data: report.md, metrics.json, plots")
    p.add_argument("--data", default="shared", metavar="shared|local|DIR",
                   help="the shared public data, the local dataset (data/local-ort-cpu), or a folder of either kind")
    p.add_argument("--protocol", default="all", metavar="a|b|c|all",
                   help="a in-distribution, b new device from k samples, c leave one space out (comma list or all)")
    p.add_argument("--methods", default=None, metavar="M1,M2", help="predictors to evaluate (default: every one)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.md, metrics.json and plots")
    p.add_argument("--sources", default=None, metavar="S1,S2", help="shared data sources (default: all)")
    p.add_argument("--devices", default=None, metavar="D1,D2", help="devices (default: all), e.g. hwnasbench:edgegpu")
    p.add_argument("--where", default=None, metavar="COLUMN=VALUE",
                   help="shared data: keep only CSV rows with this value, e.g. dataset=cifar10")
    p.add_argument("--max-rows", type=int, default=None, metavar="N",
                   help=f"rows drawn per source file (default {DEFAULT_MAX_ROWS}; 0 = every row)")
    p.add_argument("--train-sizes", default="100,900,all", metavar="N,...", help="protocol a training sizes")
    p.add_argument("--ks", default="5,10,20", metavar="K,...", help="protocol b samples of the new device")
    p.add_argument("--draws", type=int, default=3, metavar="N", help="protocol b random draws per k")
    p.add_argument("--fewshot", default=None, metavar="M1,M2",
                   help="protocol b: multi-device methods trained on the other devices, e.g. help,nnlqp,hwfeat,fewshot")
    p.add_argument("--base", default="gbt", metavar="NAME", help="protocol b: method of the other devices' predictors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help=f"a small run for tests: {QUICK['max_rows']} rows per source, train sizes "
                        f"{QUICK['train_sizes']}, k {QUICK['ks']}, {QUICK['draws']} draw")
    p.set_defaults(func=run)


def _list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    return items or None


def _ints(option: str, text: str, allow_all: bool = False) -> tuple:
    out = []
    for item in _list(text) or []:
        if allow_all and item == "all":
            out.append(None)
        elif item.isdigit():
            out.append(int(item))
        else:
            raise UsageError(option, f"{item!r} is not a positive integer" + (" or 'all'" if allow_all else ""))
    if not out:
        raise UsageError(option, "is empty")
    return tuple(out)


def parse_protocols(text: str) -> tuple[str, ...]:
    from perfcast.evaluation.harness import PROTOCOLS

    items = _list(text) or []
    if items == ["all"]:
        return PROTOCOLS
    for p in items:
        if p not in PROTOCOLS:
            raise UsageError("--protocol", f"unknown protocol {p!r} (known: {', '.join(PROTOCOLS)}, all)")
    if not items:
        raise UsageError("--protocol", "is empty")
    return tuple(dict.fromkeys(items))


def parse_where(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    column, eq, value = text.partition("=")
    if not eq or not column or not value:
        raise UsageError("--where", f"expected COLUMN=VALUE, not {text!r}")
    return {column: value}


def load_tables(data: str, sources, devices, max_rows: int | None, seed: int, where: dict | None = None):
    """The label tables of ``--data`` and a line that says what they are."""
    from perfcast.evaluation import tables

    if data == "local" or (data != "shared" and tables.is_local_folder(data)):
        folder = LOCAL_DEFAULT if data == "local" else Path(data)
        if sources or where:
            raise UsageError("--sources" if sources else "--where", "applies to the shared data only")
        return tables.local_tables(folder, max_rows, seed, devices), f"local dataset {folder}"
    folder = None if data == "shared" else data
    found = tables.shared_tables(folder, sources, devices, max_rows, seed, where)
    from perfcast.datasets.shared import shared_folder

    return found, f"shared data {shared_folder(folder)}"


def run(args) -> int:
    from perfcast.evaluation.harness import GraphCache, Settings, evaluate, total_steps
    from perfcast.evaluation.report import write_report
    from perfcast.progress import Progress

    quick = QUICK if args.quick else {}
    max_rows = args.max_rows if args.max_rows is not None else quick.get("max_rows", DEFAULT_MAX_ROWS)
    if max_rows < 0:
        raise UsageError("--max-rows", f"must be 0 (every row) or positive, not {max_rows}")
    if args.draws < 1:
        raise UsageError("--draws", f"must be at least 1, not {args.draws}")
    settings = Settings(
        methods=tuple(_list(args.methods) or ()), protocols=parse_protocols(args.protocol),
        train_sizes=_ints("--train-sizes", quick.get("train_sizes", args.train_sizes), allow_all=True),
        ks=_ints("--ks", quick.get("ks", args.ks)), draws=quick.get("draws", args.draws), base_method=args.base,
        seed=args.seed, fewshot=tuple(_list(args.fewshot) or ()),
    ).checked()
    found, data_line = load_tables(args.data, _list(args.sources), _list(args.devices), max_rows or None, args.seed,
                                   parse_where(args.where))
    start = time.monotonic()
    progress = Progress(total_steps(found, settings), "evaluate")
    ev = evaluate(found, settings, GraphCache(), progress)
    progress.close()
    command = "perfcast evaluate " + " ".join(shlex.quote(a) for a in command_line(args))
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    shown = {"methods": ",".join(settings.methods), "fewshot": ",".join(settings.fewshot),
             "protocols": ",".join(settings.protocols),
             "train_sizes": ",".join("all" if s is None else str(s) for s in settings.train_sizes),
             "ks": ",".join(map(str, settings.ks)), "draws": settings.draws, "base": settings.base_method,
             "max_rows_per_source": max_rows or "all", "test_fraction": settings.test_fraction,
             "alpha": settings.alpha, "seed": settings.seed}
    out = write_report(ev, args.out, command, date, data_line, shown)
    elapsed = time.monotonic() - start
    print(f"evaluated {len(found)} device tables in {elapsed:.0f} s: {len(ev.records)} metric rows, "
          f"{len(ev.notes)} notes; wrote {out / 'report.md'}")
    return 0


def command_line(args) -> list[str]:
    """The options of ``args`` as a command line that reproduces the run."""
    out = ["--data", args.data, "--protocol", args.protocol]
    for flag, value in (("--methods", args.methods), ("--fewshot", args.fewshot), ("--sources", args.sources),
                        ("--devices", args.devices), ("--where", args.where), ("--max-rows", args.max_rows)):
        if value is not None:
            out += [flag, str(value)]
    if args.quick:
        out.append("--quick")
    else:
        out += ["--train-sizes", args.train_sizes, "--ks", args.ks, "--draws", str(args.draws)]
    return out + ["--base", args.base, "--seed", str(args.seed), "--out", str(args.out)]
