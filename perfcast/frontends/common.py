"""Checks shared by the file front ends."""

from __future__ import annotations

import os
import re
from pathlib import Path

from perfcast.errors import ModelLoadError, UsageError


def check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(str(path), "no such file")
    if p.is_dir():
        raise ModelLoadError(str(path), "is a directory, not a model file")
    if not os.access(p, os.R_OK):
        raise ModelLoadError(str(path), "cannot be read (permission denied)")
    if p.stat().st_size == 0:
        raise ModelLoadError(str(path), "is an empty file")
    return p


_SHAPE_RE = re.compile(r"^([^=]+)=(\d+(?:[x,]\d+)*)$")


def parse_input_shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``name=1x3x224x224`` items."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items or []:
        m = _SHAPE_RE.match(item.strip())
        if not m:
            raise UsageError(f"--input-shape {item}", "expected NAME=D1xD2x... with positive integers")
        dims = tuple(int(d) for d in re.split(r"[x,]", m.group(2)))
        if any(d <= 0 for d in dims):
            raise UsageError(f"--input-shape {item}", "dimensions must be positive")
        shapes[m.group(1)] = dims
    return shapes
