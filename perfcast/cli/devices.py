"""``perfcast devices [--json]``: the devices and predictors that ship with perfcast."""

from __future__ import annotations

from perfcast.cli.output import emit_json, table


def register(sub) -> None:
    p = sub.add_parser("devices", help="list the devices and predictors that ship with perfcast")
    p.add_argument("--json", action="store_true", help="print JSON (a list of devices)")
    p.set_defaults(func=run)


def run(args) -> int:
    from perfcast.devices import DEFAULT_DEVICE, shipped_devices

    infos = shipped_devices()
    if args.json:
        emit_json([{"name": d.name, "description": d.description, "targets": list(d.targets), "rows": d.rows,
                    "method": d.method, "predictors": list(d.predictors), "default": d.name == DEFAULT_DEVICE}
                   for d in infos])
        return 0
    rows = [[d.name + (" (default)" if d.name == DEFAULT_DEVICE else ""), ", ".join(d.targets),
             str(d.rows) if d.rows is not None else "-", d.method, ", ".join(d.predictors), d.description[:60]]
            for d in infos]
    print(table(["device", "targets", "rows", "method", "predictors", "description"], rows, "llrlll"))
    return 0
