"""ONNX front end: shapes, symbolic dimensions, external data, and bad input."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perfcast import api
from perfcast.errors import GraphError, ModelLoadError, UsageError
from perfcast.frontends.onnx import load_onnx

F = TensorProto.FLOAT


def conv_model(batch="N", opset=20, h=32):
    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", F, [batch, 3, h, "W"] if h == "H" else [batch, 3, h, h])],
        [helper.make_tensor_value_info("y", F, None)], initializer=[w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


def test_symbolic_batch_takes_batch_size(tmp_path):
    p = save(conv_model(), tmp_path / "m.onnx")
    g = load_onnx(p)
    assert g.tensors["y"].shape == (1, 8, 32, 32)
    g4 = load_onnx(p, batch_size=4)
    assert g4.tensors["y"].shape == (4, 8, 32, 32)
    assert api.analyze(str(p), batch_size=4)["macs"] == 4 * api.analyze(str(p))["macs"]


def test_symbolic_spatial_dims_need_input_shape(tmp_path):
    p = save(conv_model(h="H"), tmp_path / "m.onnx")
    with pytest.raises(UsageError, match="--input-shape x="):
        load_onnx(p)
    g = load_onnx(p, input_shapes={"x": (2, 3, 20, 24)})
    assert g.tensors["y"].shape == (2, 8, 20, 24)
    with pytest.raises(UsageError, match="no such input"):
        load_onnx(p, input_shapes={"nope": (1, 3, 4, 4)})


def test_old_opset_is_rejected(tmp_path):
    p = save(conv_model(opset=9), tmp_path / "old.onnx")
    with pytest.raises(ModelLoadError, match="opset 9"):
        load_onnx(p)


def test_external_data_inside_folder_is_fine_outside_is_refused(tmp_path):
    m = conv_model()
    inside = tmp_path / "model"
    inside.mkdir()
    onnx.save_model(m, inside / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    g = load_onnx(inside / "m.onnx")
    assert g.tensors["w"].shape == (8, 3, 3, 3) and g.tensors["w"].constant
    assert api.analyze(str(inside / "m.onnx"))["params"] == 8 * 27
    # point the same model's external data outside its folder
    evil = onnx.load(inside / "m.onnx", load_external_data=False)
    for init in evil.graph.initializer:
        for e in init.external_data:
            if e.key == "location":
                e.value = "../secret.bin"
    (tmp_path / "secret.bin").write_bytes(b"\0" * 1000)
    p = save(evil, inside / "evil.onnx")
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        load_onnx(p)
    for init in evil.graph.initializer:
        for e in init.external_data:
            if e.key == "location":
                e.value = "/etc/passwd"
    with pytest.raises(ModelLoadError, match="outside"):
        load_onnx(save(evil, inside / "evil2.onnx"))


def test_cycle_and_dangling_input_in_onnx(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
        "g", [helper.make_tensor_value_info("x", F, [1, 4])], [helper.make_tensor_value_info("b", F, None)],
    )
    with pytest.raises((GraphError, ModelLoadError)) as err:
        load_onnx(save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), tmp_path / "c.onnx"))
    assert "c.onnx" in str(err.value)
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "ghost"], ["y"])],
        "g", [helper.make_tensor_value_info("x", F, [1, 4])], [helper.make_tensor_value_info("y", F, None)],
    )
    with pytest.raises((GraphError, ModelLoadError)) as err:
        load_onnx(save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), tmp_path / "d.onnx"))
    assert "ghost" in str(err.value)


BAD_INPUTS = {
    "missing": None,
    "directory": "dir",
    "empty": b"",
    "random": bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)),
    "not_a_model": numpy_helper.from_array(np.ones((3, 4), np.float32), "t").SerializeToString(),
}


@pytest.mark.parametrize("kind", [*BAD_INPUTS, "truncated", "cycle", "external", "unknown_spec"])
def test_cli_bad_input_one_line_exit_2(kind, tmp_path, run_cli):
    path = tmp_path / f"{kind}.onnx"
    if kind == "directory":
        path = tmp_path / "adir.onnx"
        path.mkdir()
    elif kind == "truncated":
        full = conv_model().SerializeToString()
        path.write_bytes(full[: len(full) // 2])
    elif kind == "cycle":
        g = helper.make_graph(
            [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
            "g", [helper.make_tensor_value_info("x", F, [1, 4])], [helper.make_tensor_value_info("b", F, None)])
        save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), path)
    elif kind == "external":
        m = conv_model()
        m.graph.initializer[0].ClearField("raw_data")
        m.graph.initializer[0].data_location = TensorProto.EXTERNAL
        m.graph.initializer[0].external_data.add(key="location", value="../../outside.bin")
        save(m, path)
    elif kind == "unknown_spec":
        path = "nosuchspace:abc"
    elif BAD_INPUTS[kind] is not None:
        path.write_bytes(BAD_INPUTS[kind])
    code, out, err = run_cli("analyze", str(path), "--json")
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0]


def test_cli_json_keys_and_several_models(tmp_path, run_cli):
    p = save(conv_model(), tmp_path / "m.onnx")
    import json

    code, out, err = run_cli("analyze", str(p), "--json")
    assert code == 0, err
    r = json.loads(out)
    for key in ["model", "format", "nodes", "op_counts", "macs", "flops", "params", "weight_bytes",
                "activation_peak_bytes", "unsupported_ops"]:
        assert key in r
    assert r["macs"] == 8 * 32 * 32 * 27 and r["params"] == 216 and r["format"] == "onnx"
    assert r["op_counts"] == {"Conv": 1, "Relu": 1}
    code, out, err = run_cli("analyze", str(p), str(p), "--json", "--batch-size", "2")
    rs = json.loads(out)
    assert isinstance(rs, list) and len(rs) == 2 and rs[0]["macs"] == 2 * r["macs"]
    code, out, err = run_cli("analyze", str(p))
    assert code == 0 and "Conv" in out and "share" in out
    code, out, err = run_cli("analyze", str(p), "--batch-size", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1
