"""``perfcast dataset export|load|import-shared``: measured datasets as compact files."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("dataset", help="export measurements to a dataset folder, or load one into the store")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    e = actions.add_parser("export", help="write the store's profiler measurements to DIR")
    e.add_argument("out", metavar="DIR")
    e.add_argument("--db", default=None, metavar="URL")
    e.add_argument("--device", default=None, help="only this device")
    e.set_defaults(func=run_export)
    ld = actions.add_parser("load", help="add a dataset folder (e.g. data/local-ort-cpu) to the store")
    ld.add_argument("folder", metavar="DIR")
    ld.add_argument("--db", default=None, metavar="URL")
    ld.set_defaults(func=run_load)
    im = actions.add_parser("import-shared", help="import the public measurements of the shared data folder")
    im.add_argument("folder", metavar="DIR", nargs="?", default=None,
                    help="shared data folder (default: ../shared/data beside the repository, or $PERFCAST_SHARED_DATA)")
    im.add_argument("--db", default=None, metavar="URL")
    im.add_argument("--only", default=None, metavar="NAME",
                    help="one source: hwnasbench_nb201, help_nasbench201, help_fbnet or help_ofa")
    im.set_defaults(func=run_import_shared)


def run_export(args) -> int:
    from perfcast.datasets.local import export_dataset
    from perfcast.store import open_store

    with open_store(args.db) as store:
        counts = export_dataset(store, args.out, args.device)
    print(f"exported {counts['measurements']} measurements, {counts['kernels']} kernel rows, "
          f"{counts['devices']} devices to {args.out}")
    return 0


def run_load(args) -> int:
    from perfcast.datasets.local import load_dataset
    from perfcast.store import open_store

    with open_store(args.db) as store:
        counts = load_dataset(store, args.folder)
    print(f"loaded {counts['added']} measurements ({counts['skipped']} already there) from {args.folder}")
    return 0


def run_import_shared(args) -> int:
    from perfcast.datasets.shared import choose_sources, import_shared, shared_folder
    from perfcast.store import open_store

    folder = shared_folder(args.folder)
    choose_sources(args.only)
    with open_store(args.db) as store:
        counts = import_shared(store, folder, args.only)
    for source, per_device in counts.items():
        print(f"{source}: {sum(per_device.values())} measurements added "
              f"({', '.join(f'{d} {n}' for d, n in per_device.items())})")
    return 0
