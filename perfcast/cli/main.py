"""The ``perfcast`` command: one module per command group, errors mapped here.

Exit status: 0 success, 2 bad input or usage (one line on stderr), 1 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys

from perfcast.errors import PerfcastError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that takes MODEL references."""
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="batch size (default 1)")
    p.add_argument("--input-shape", action="append", metavar="NAME=DxDx...",
                   help="shape of a model input with symbolic dimensions, e.g. input=1x3x224x224")


def build_parser() -> argparse.ArgumentParser:
    from perfcast.cli import adapt, analyze, calibrate, dataset, demo, devices, evaluate, generate, predict, profile

    parser = _Parser(prog="perfcast", description="Predict latency, memory and energy of neural networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (analyze, generate, profile, predict, adapt, calibrate, devices, dataset, demo, evaluate):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except PerfcastError as exc:
        sys.stderr.write(f"perfcast: {exc.subject}: {exc.problem}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("perfcast: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # an internal error: one line unless PERFCAST_DEBUG is set
        if os.environ.get("PERFCAST_DEBUG"):
            raise
        sys.stderr.write(f"perfcast: internal error: {type(exc).__name__}: {exc}\n")
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
