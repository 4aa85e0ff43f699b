"""Output formatting, in one place: JSON, tables, human-readable numbers."""

from __future__ import annotations

import json
import sys


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}{unit}".rstrip()
    return f"{n:g} {unit}".rstrip()


def human_bytes(n: float) -> str:
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{int(n)} B"


def table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A plain-text table; ``align`` has one of 'l'/'r' per column (default: first left)."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w) for c, w, a in zip(cells, widths, align))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def bases_line(target: str, chosen: list[dict]) -> str:
    """``  target <- device (base target), ...`` for the bases an adapted device maps, marking those
    read on the folded or pruned graphs (devices adapted before pruning was a reading say
    ``folded: true``)."""
    def graphs(c: dict) -> str:
        reading = c.get("graphs", "folded" if c.get("folded") else "as given")
        return "" if reading == "as given" else f", {reading} graphs"
    return f"  {target} <- " + ", ".join(f"{c['device']} ({c['target']}{graphs(c)})" for c in chosen)
