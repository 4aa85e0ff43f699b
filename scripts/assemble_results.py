"""Assemble docs/results.md from the evaluations that scripts/make_results.sh writes (each report
rendered again from its metrics.json; plots copied to docs/results/).
Usage: python scripts/assemble_results.py OUT_DIR"""

import json
import pathlib
import re
import sys

from perfcast.evaluation.report import render_metrics

PARTS = {
    "nb201-cifar10": "HW-NAS-Bench NAS-Bench-201, CIFAR-10 networks (protocol a)",
    "nb201-graph": "HW-NAS-Bench NAS-Bench-201, CIFAR-10 networks: graph-learning methods (protocol a)",
    "shared": "All public data: new devices from k samples (protocol b)",
    "shared-c": "All public data: leave one space out (protocol c)",
    "fewshot": "All public data: multi-device few-shot methods (protocol b)",
    "shared-a": "All public data: in-distribution reference (protocol a)",
    "local": "Local dataset, this machine's CPU (protocols a and c)",
}


def training_section(path: pathlib.Path, out: pathlib.Path) -> list[str]:
    """The shipped devices' training times, from ``scripts/train_shipped.py --timings``."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    data["command"] = data["command"].replace(str(out), "OUT")
    lines = ["", "## Shipped devices: training", "",
             f"Command: `{data['command']}` (one core). 'graphs' is building the networks from their specs, "
             "'training' the features and the fit (conformal residuals included).", "",
             "| device | method | networks | targets | file KiB | graphs s | training s |",
             "|---|---|---|---|---|---|---|"]
    for d in data["devices"]:
        lines.append(f"| {d['device']} | {d['method']} | {d['rows']} | {', '.join(d['targets'])} | {d['kib']} | "
                     f"{d['build_s']} | {d['train_s']} |")
    params = dict.fromkeys((d["method"], json.dumps(d["params"], sort_keys=True)) for d in data["devices"])
    lines += ["", "Parameters: " + "; ".join(f"{method} {text}" for method, text in params) + "."]
    return lines


def unseen_section(path: pathlib.Path) -> list[str]:
    """What ``benchmarks/calibrate_unseen.py`` printed: this machine calibrated, then networks of
    families in no space and no zoo entry measured and predicted."""
    if not path.is_file():
        return []
    return ["", "## Calibrated here: networks of unseen families", "",
            "Command: `benchmarks/calibrate_unseen.py` (runs `perfcast calibrate`, then measures and predicts "
            "26 plain-PyTorch networks of families that no space and no zoo entry holds; one core).", "",
            "```", *(line.rstrip() for line in path.read_text(encoding="utf-8").rstrip().splitlines()), "```"]


def _records(path: pathlib.Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["records"] if path.is_file() else []


def _mean(rows: list[dict], key: str, digits: int) -> str:
    """Mean of ``key`` over the rows that have it, with how many do not where some lack it."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return ""
    lacking = len(rows) - len(values)
    return f"{sum(values) / len(values):.{digits}f}" + (f" ({lacking} undefined)" if lacking else "")


def fewshot_means_section(out: pathlib.Path) -> list[str]:
    """Mean (not median) Spearman and MAPE over the measured latency settings of protocol b per
    method and k, beside the same settings' in-distribution gbt fitted on every training network."""
    seen: dict[tuple, dict] = {}
    for name in ("shared", "fewshot"):
        for r in _records(out / name / "metrics.json"):
            if r["protocol"] == "b" and r["target"] == "latency_ms" and r["kind"] == "measured":
                seen.setdefault((r["method"], (r["source"], r["device"]), r["k"]), r)
    if not seen:
        return []
    ks = sorted({k for _, _, k in seen})
    methods = list(dict.fromkeys(m for m, _, _ in seen))
    devices = sorted({d for _, d, _ in seen})
    lines = ["", "## Few-shot goal figures: means over the measured latency settings", "",
             f"Protocol b as above, averaged (mean, not median) over the {len(devices)} measured latency "
             "settings (device and batch size) of the public data.", "",
             "| method | " + " | ".join(f"Spearman (k {k}) | MAPE % (k {k})" for k in ks) + " |",
             "|---|" + "---|---|" * len(ks)]
    for m in methods:
        cells = []
        for k in ks:
            rows = [seen[(m, d, k)] for d in devices if (m, d, k) in seen]
            cells += [_mean(rows, "spearman", 3), _mean(rows, "mape_pct", 2)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    full = {(r["source"], r["device"]): r for r in _records(out / "shared-a" / "metrics.json")
            if r["protocol"] == "a" and r["method"] == "gbt" and r["target"] == "latency_ms"
            and r["train_size"] == "all" and (r["source"], r["device"]) in devices}
    if full:
        sp, mape = _mean(list(full.values()), "spearman", 3), _mean(list(full.values()), "mape_pct", 2)
        low = sorted(f"{r['source']} {r['device']} {r['spearman']:.3f}" for r in full.values()
                     if r.get("spearman") is not None and r["spearman"] < 0.85)
        lines += ["", f"In-distribution reference on the same test networks of {len(full)} of these settings: "
                  f"gbt fitted on all training networks of the device (up to 1,200; section above) has mean "
                  f"Spearman {sp} and MAPE {mape} %. With every training label of its own device it "
                  f"stays below Spearman 0.85 on {len(low)} settings ({'; '.join(low) or 'none'}): noise in "
                  "the labels (phone latencies are whole milliseconds in the source) bounds what any "
                  "method reaches from k samples."]
    return lines


def main(out: pathlib.Path) -> None:
    plots = pathlib.Path("docs/results")
    plots.mkdir(parents=True, exist_ok=True)
    text = ["# Results", "",
            "Regenerate with `scripts/make_results.sh OUT` (each section starts with its `perfcast evaluate` command).",
            "Latency in ms, energy in mJ, memory in bytes; MAPE in percent; Spearman and Kendall over distinct",
            "networks; 'cover 90%' is the share of test labels inside the 90% conformal intervals. A method",
            "that reproduces a simulator's labels exactly (the lookup table on simulator-estimated devices",
            "that sum per-layer costs) has residuals that all tie at zero: its intervals cover every label."]
    for name, title in PARTS.items():
        path = out / name / "metrics.json"
        if not path.is_file():
            continue
        for png in (out / name).glob("*.png"):
            (plots / f"{name}-{png.name}").write_bytes(png.read_bytes())
        report = [re.sub(r"\(([^)/]+\.png)\)", rf"(results/{name}-\1)", line).replace(str(out), "OUT")
                  for line in render_metrics(path).splitlines()]
        text += ["", f"## {title}", ""]
        text += [("#" + line) if line.startswith("#") else line for line in report[1:]]
    text += fewshot_means_section(out)
    for name in ("label-noise.md", "ceiling.md", "memory-repeat.md"):
        section = out / name
        if section.is_file():
            text += ["", *section.read_text(encoding="utf-8").splitlines()]
    text += unseen_section(out / "unseen.txt")
    text += training_section(out / "training.json", out)
    pathlib.Path("docs/results.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    print("wrote docs/results.md")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
