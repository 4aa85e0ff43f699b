"""Load + analyse time of real-size ONNX files (with weights): ResNet-50 and a
12-layer transformer encoder (BERT-base). Goal: under 1 s each on a 2-core machine.

    .venv/bin/python benchmarks/analyze_speed.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from perfcast import api
from perfcast.frontends.onnx_writer import to_onnx

MODELS = {"resnet50": "zoo:resnet50", "transformer encoder, 12 layers (bert_base)": "zoo:bert_base"}


def main(repeats: int = 5) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'model':45s} {'file MB':>8s} {'median s':>9s} {'min s':>7s}  MACs       params")
        for label, spec in MODELS.items():
            path = Path(tmp) / f"{spec.split(':')[1]}.onnx"
            path.write_bytes(to_onnx(api.load(spec)).SerializeToString())
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                r = api.analyze(str(path))
                times.append(time.perf_counter() - t0)
            size = path.stat().st_size / 1e6
            print(f"{label:45s} {size:8.1f} {statistics.median(times):9.3f} {min(times):7.3f}  "
                  f"{r['macs'] / 1e9:.2f} G  {r['params']:,}")


if __name__ == "__main__":
    main()
