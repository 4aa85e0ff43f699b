"""``perfcast generate``: write the networks of a space as ONNX files plus a manifest.

Resumable: a network already in the manifest with its file present is skipped.
Files are written under a temporary name and renamed, and a manifest row is
appended only after its file is complete, so an interrupted run loses nothing.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from perfcast.analysis import analyze_graph
from perfcast.errors import UsageError
from perfcast.progress import Progress
from perfcast.spaces.registry import build_spec, sample_specs, spaces

MANIFEST_FIELDS = ["model", "path", "content_hash", "macs", "params", "nodes"]


def read_manifest(path: Path, required: tuple[str, ...] = tuple(MANIFEST_FIELDS)) -> list[dict]:
    """The rows of a manifest (none if the file does not exist yet); its columns must
    include ``required``."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and set(required) - set(rows[0]):
        raise UsageError(str(path), f"not a perfcast manifest (columns {', '.join(required)} expected)")
    return rows


def generate(space: str, count: int, seed: int, out_dir: str | os.PathLike, progress: bool | None = None,
             batch_size: int = 1) -> list[dict]:
    """Write ``count`` networks of ``space`` (starting at ``seed``) to ``out_dir``; return the manifest rows."""
    if space not in spaces():
        raise UsageError(f"--space {space}", f"unknown space (known: {', '.join(spaces())})")
    if count < 1:
        raise UsageError("--count", f"must be at least 1, not {count}")
    if seed < 0:
        raise UsageError("--seed", f"must be non-negative, not {seed}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(str(out), "exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    rows = read_manifest(manifest)
    done = {r["model"] for r in rows if (out / r["path"]).exists()}
    specs = sample_specs(space, count, seed)
    bar = Progress(len(specs), f"generate {space}", enabled=progress)
    bar.update(sum(1 for s in specs if s in done), "resuming")
    new_file = not manifest.exists() or manifest.stat().st_size == 0
    from perfcast.frontends.onnx_writer import to_onnx

    with open(manifest, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        if new_file:
            writer.writeheader()
        for spec in specs:
            if spec in done:
                continue
            graph = build_spec(spec, batch_size)
            a = analyze_graph(graph)
            name = f"{space}_{graph.content_hash[:16]}.onnx"
            target = out / name
            if not target.exists():
                tmp = out / f".{name}.tmp"
                tmp.write_bytes(to_onnx(graph, seed=0).SerializeToString())
                os.replace(tmp, target)
            row = {"model": spec, "path": name, "content_hash": graph.content_hash, "macs": a.macs,
                   "params": a.params, "nodes": len(graph.nodes)}
            writer.writerow(row)
            f.flush()
            rows.append(row)
            done.add(spec)
            bar.update(1, spec)
    bar.close()
    return [r for r in rows if r["model"] in set(specs)]
