"""``perfcast generate --space S --count N --seed K --out DIR``."""

from __future__ import annotations

from perfcast import api


def register(sub) -> None:
    p = sub.add_parser("generate", help="write networks of a space as ONNX files plus DIR/manifest.csv")
    p.add_argument("--space", required=True, help="space prefix, e.g. nb201, fbnet, ofa, kws, imgcls, zoo")
    p.add_argument("--count", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="K")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--batch-size", type=int, default=1, metavar="N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    rows = api.generate(args.space, args.count, args.seed, args.out, batch_size=args.batch_size,
                        progress=False if args.no_progress else None)
    print(f"{len(rows)} networks of {args.space} in {args.out} (manifest: {args.out}/manifest.csv)")
    return 0
