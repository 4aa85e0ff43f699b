"""``perfcast generate``: ONNX files plus a manifest, deterministic and resumable."""

import csv
import os

import onnxruntime as ort
import pytest

from perfcast import api
from perfcast.errors import UsageError
from perfcast.frontends.onnx import load_onnx


def manifest(folder):
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("space", ["nb201", "kws", "fbnet"])
def test_same_seed_same_networks_and_files_run(space, tmp_path):
    a = api.generate(space, 3, 7, tmp_path / "a", progress=False)
    b = api.generate(space, 3, 7, tmp_path / "b", progress=False)
    assert [r["content_hash"] for r in a] == [r["content_hash"] for r in b]
    assert [r["model"] for r in a] == [r["model"] for r in b]
    rows = manifest(tmp_path / "a")
    assert [r["model"] for r in rows] == [r["model"] for r in a]
    for row in rows:
        path = tmp_path / "a" / row["path"]
        graph = load_onnx(path)
        assert graph.content_hash == row["content_hash"] == api.load(row["model"]).content_hash
        assert int(row["macs"]) == api.analyze(str(path))["macs"]
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert len(session.get_outputs()) >= 1
    other = api.generate(space, 3, 8, tmp_path / "c", progress=False)
    assert [r["model"] for r in other] != [r["model"] for r in a]


def test_generate_resumes_without_rewriting(tmp_path):
    out = tmp_path / "out"
    first = api.generate("kws", 2, 0, out, progress=False)
    stamps = {r["path"]: os.stat(out / r["path"]).st_mtime_ns for r in first}
    # an interrupted run leaves a temporary file behind and no manifest row for it
    (out / ".kws_deadbeef.onnx.tmp").write_bytes(b"partial")
    rows = api.generate("kws", 4, 0, out, progress=False)
    assert [r["model"] for r in rows] == [f"kws:{i}" for i in range(4)]
    assert len(manifest(out)) == 4  # no duplicate rows
    for r in first:
        assert os.stat(out / r["path"]).st_mtime_ns == stamps[r["path"]]


def test_generate_zoo_lists_entries(tmp_path):
    rows = api.generate("zoo", 2, 0, tmp_path, progress=False)
    assert all(r["model"].startswith("zoo:") for r in rows) and len(rows) == 2


def test_generate_bad_arguments(tmp_path, run_cli):
    with pytest.raises(UsageError):
        api.generate("nospace", 1, 0, tmp_path)
    with pytest.raises(UsageError):
        api.generate("kws", 0, 0, tmp_path)
    code, out, err = run_cli("generate", "--space", "nospace", "--count", "1", "--out", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nospace" in err
    code, out, err = run_cli("generate", "--space", "rnn", "--count", "2", "--seed", "3", "--out", str(tmp_path / "g"),
                             "--no-progress")
    assert code == 0, err
    assert [r["model"] for r in manifest(tmp_path / "g")] == ["rnn:3", "rnn:4"]
