"""Profiler core: statistics, drift correction, runners, failure handling, peak memory,
energy counters and per-kernel profiles.

Timing runs use short budgets (a few hundredths of a second per block) and one or two
workers: they check the protocol's behaviour, not the latency figures themselves.
"""

import math
import re
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import load_script
from perfcast.errors import PerfcastError, UsageError
from perfcast.frontends.onnx_writer import to_onnx
from perfcast.ir.builder import GraphBuilder
from perfcast.profiling import energy, profile, stats
from perfcast.profiling.kernels import GraphView, kernel_profile, map_kernels
from perfcast.profiling.memory import MemoryProbe
from perfcast.profiling.reference import add_chain_tflite, write_trivial
from perfcast.profiling.runners import cpu_model, input_shape, make_inputs, make_runner, slug
from perfcast.profiling.worker import FAULT_ENV, groups, time_block

F = TensorProto.FLOAT
FAST = dict(time_budget_s=0.04, rounds=2, warmup_runs=1, warmup_s=0.01, min_runs=4, max_extra_workers=0)


def write(graph_or_model, path: Path) -> Path:
    model = graph_or_model if isinstance(graph_or_model, onnx.ModelProto) else to_onnx(graph_or_model)
    path.write_bytes(model.SerializeToString())
    return path


def tiny_cnn(channels: int = 8):
    b = GraphBuilder("tiny")
    x = b.act(b.conv(b.input((1, 3, 16, 16)), channels, 3), "relu")
    b.output(b.linear(b.flatten(b.global_avgpool(x)), 4))
    return b.build()


def impossible_reshape_model() -> onnx.ModelProto:
    """Reshape of a (N, 5) input to (3, 7): only detectable when it runs (N is symbolic)."""
    shape = numpy_helper.from_array(np.array([3, 7], np.int64), "target_shape")
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Reshape", ["r", "target_shape"], ["y"], name="bad_reshape")],
        "bad", [helper.make_tensor_value_info("x", F, ["N", 5])], [helper.make_tensor_value_info("y", F, None)],
        initializer=[shape])
    return onnx_model(g)


def onnx_model(graph) -> onnx.ModelProto:
    """Opset 17, IR version 10 (what the installed onnxruntime reads)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


# -- statistics -------------------------------------------------------------------------------------
def test_summary_statistics_on_known_samples():
    samples = [float(v) for v in range(10, 0, -1)]
    s = stats.summarize(samples)
    assert s == {"median": 5.5, "mean": 5.5, "min": 1.0, "p10": pytest.approx(1.9), "p90": pytest.approx(9.1)}
    assert s["p10"] == pytest.approx(np.percentile(samples, 10)) and s["p90"] == pytest.approx(np.percentile(samples, 90))
    assert stats.percentile([4.0], 90) == 4.0
    assert stats.cv([1.0, 2.0, 3.0]) == pytest.approx(0.5)
    assert stats.cv([2.0]) is None


def test_standard_error_shrinks_with_the_number_of_workers():
    # worker medians 1.0, 1.1 and 0.9 ms (reference 1 ms, baseline 1 ms): CV 0.1, standard error 0.1 / sqrt(3)
    blocks = [stats.Block((m,) * 3, 1.0, worker) for worker, m in enumerate([1.0, 1.1, 0.9])]
    assert stats.standard_error(blocks) == pytest.approx(0.1 / math.sqrt(3))
    # the same spread over twice the workers: the error falls by sqrt(2)
    doubled = blocks + [stats.Block(b.samples_ms, 1.0, b.worker + 3) for b in blocks]
    assert stats.cv(stats.worker_medians(doubled)) == pytest.approx(math.sqrt(0.04 / 5))
    assert stats.standard_error(doubled) == pytest.approx(math.sqrt(0.04 / 5) / math.sqrt(6))
    assert stats.standard_error(blocks[:1]) == 0.0


def test_drift_correction_divides_out_a_simulated_slowdown():
    # a 2.0 ms model and a 0.5 ms reference on a machine that gets 30 % and 10 % slower
    slowdowns = {0: 1.0, 1: 1.3, 2: 1.1}
    blocks = [stats.Block((2.0 * f,) * 5, 0.5 * f, worker) for worker, f in slowdowns.items()]
    s = stats.latency_stats(blocks, baseline_ms=0.5)
    assert s.latency_ms == {"median": pytest.approx(2.0), "mean": pytest.approx(2.0), "min": pytest.approx(2.0),
                            "p10": pytest.approx(2.0), "p90": pytest.approx(2.0)}
    assert s.reference_ratio == pytest.approx(4.0)
    assert s.repeat_cv == pytest.approx(0.0, abs=1e-12)
    assert s.worker_medians_ms == [pytest.approx(2.0)] * 3
    assert s.raw_median_ms == pytest.approx(2.2)
    assert stats.repeat_cv(blocks[:1]) is None
    raw_cv = stats.cv([2.0, 2.6, 2.2])
    assert raw_cv == pytest.approx(statistics.stdev([2.0, 2.6, 2.2]) / statistics.fmean([2.0, 2.6, 2.2]))
    # the baseline only scales: a fixed baseline of 1 ms doubles every corrected figure
    assert stats.latency_stats(blocks, baseline_ms=1.0).latency_ms["median"] == pytest.approx(4.0)


def memory_bound_blocks(weight: float, level_ms: float = 2.0) -> list:
    """Blocks of a model whose time follows the compute reference with ``weight`` and the
    memory reference with ``1 - weight``, while the two references drift independently
    (baselines A = 0.5 ms, M = 0.25 ms)."""
    slowdowns = [(1.0, 1.0), (1.1, 1.4), (1.0, 1.25), (1.3, 1.05), (0.95, 1.6), (1.2, 1.2)]
    return [stats.Block((level_ms * fa ** weight * fm ** (1 - weight),) * 3, 0.5 * fa, k % 3,
                        memory_ref_median_ms=0.25 * fm) for k, (fa, fm) in enumerate(slowdowns)]


@pytest.mark.parametrize("weight", [0.0, 0.35, 1.0])
def test_two_references_divide_out_a_slowdown_of_compute_and_memory(weight):
    blocks = memory_bound_blocks(weight)
    assert stats.reference_weight(blocks, 0.5, 0.25) == pytest.approx(weight)
    combined = stats.combine_references(blocks, 0.5, 0.25, stats.reference_weight(blocks, 0.5, 0.25))
    s = stats.latency_stats(combined, baseline_ms=0.5)
    assert s.latency_ms["min"] == pytest.approx(2.0) and s.latency_ms["p90"] == pytest.approx(2.0)
    assert s.repeat_cv == pytest.approx(0.0, abs=1e-9)
    # the compute reference alone leaves the memory part of the drift in the label
    alone = stats.latency_stats(blocks, baseline_ms=0.5)
    assert (alone.repeat_cv > 0.05) == (weight < 1.0)


def test_reference_weight_is_clipped_and_falls_back_to_the_compute_reference():
    # a model that slows twice as much as the memory reference: the weight stays in 0..1
    fast = [stats.Block((2.0 * (b.memory_ref_median_ms / 0.25) ** 2,), b.ref_median_ms, b.worker,
                        memory_ref_median_ms=b.memory_ref_median_ms) for b in memory_bound_blocks(0.0)]
    assert stats.reference_weight(fast, 0.5, 0.25) == 0.0
    without_memory = [stats.Block(b.samples_ms, b.ref_median_ms, b.worker) for b in memory_bound_blocks(0.5)]
    assert stats.reference_weight(without_memory, 0.5, 0.25) == 1.0
    assert stats.combine_references(without_memory, 0.5, None, 0.5) == without_memory
    # both references moved together, or too few blocks: nothing tells them apart
    together = [stats.Block((1.0,), 0.5 * f, 0, memory_ref_median_ms=0.25 * f) for f in (1.0, 1.2, 0.9)]
    assert stats.reference_weight(together, 0.5, 0.25) == stats.WEIGHT_PRIOR[0] == 0.5
    assert stats.reference_weight(memory_bound_blocks(0.0)[:2], 0.5, 0.25) == 0.5


def test_noisy_blocks_pull_the_reference_weight_towards_the_prior():
    """A memory-bound model (w = 0) whose block medians carry noise: the least-squares slope
    moves with the noise, the posterior weight lies between it and the prior mean 0.5."""
    noise = [1.15, 0.88, 1.0, 1.12, 0.9, 1.05]
    blocks = [stats.Block(tuple(x * n for x in b.samples_ms), b.ref_median_ms, b.worker,
                          memory_ref_median_ms=b.memory_ref_median_ms)
              for b, n in zip(memory_bound_blocks(0.0), noise)]
    xs = [math.log(b.ref_median_ms / 0.5) - math.log(b.memory_ref_median_ms / 0.25) for b in blocks]
    ys = [math.log(b.samples_ms[0]) - math.log(b.memory_ref_median_ms / 0.25) for b in blocks]
    slope = float(np.polyfit(xs, ys, 1)[0])
    weight = stats.reference_weight(blocks, 0.5, 0.25)
    assert min(slope, 0.5) < weight < max(slope, 0.5)
    assert abs(weight - slope) > 0.02 and abs(weight - slope) < abs(0.5 - slope)


def test_blocks_rebuild_from_raw_samples_and_block_references():
    blocks = memory_bound_blocks(0.5)
    raw = [x for b in blocks for x in b.samples_ms]
    rows = [[b.worker, len(b.samples_ms), b.ref_median_ms, b.memory_ref_median_ms] for b in blocks]
    assert stats.rebuild_blocks(raw, rows) == blocks
    with pytest.raises(ValueError, match="covers 18 samples, not 19"):
        stats.rebuild_blocks(raw + [1.0], rows)


def test_energy_per_inference_from_metered_blocks():
    blocks = [stats.Block((1.0,) * 4, 1.0, 0, energy_uj=8000.0), stats.Block((1.0,) * 6, 1.0, 1, energy_uj=2000.0)]
    assert stats.energy_per_run_mj(blocks) == pytest.approx(1.0)  # 10 mJ over 10 inferences
    assert stats.energy_per_run_mj([stats.Block((1.0,), 1.0, 0)]) is None


# -- runners ------------------------------------------------------------------------------------------
def test_unknown_runtime_and_bad_threads_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match=r"--runtime tensorrt: unknown runtime \(known: litert, ort-cpu, ort-cuda, torch-cuda\)"):
        profile([write(tiny_cnn(), tmp_path / "m.onnx")], runtime="tensorrt")
    with pytest.raises(UsageError, match="--threads"):
        make_runner("ort-cpu", 0)
    with pytest.raises(UsageError, match="--kernels"):
        profile([tmp_path / "m.onnx"], runtime="litert", kernels=True)
    with pytest.raises(UsageError, match="--reference-weight: must be between 0 and 1, not 1.5"):
        profile([tmp_path / "m.onnx"], reference_weight=1.5)
    with pytest.raises(UsageError, match="--memory-reference-baseline-ms: must be positive, not -1"):
        profile([tmp_path / "m.onnx"], memory_reference_baseline_ms=-1)


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has an NVIDIA GPU")
@pytest.mark.parametrize("runtime", ["ort-cuda", "torch-cuda"])
def test_gpu_runtimes_say_there_is_no_cuda_device(runtime):
    with pytest.raises(UsageError, match=rf"^--runtime {runtime}: no CUDA device here \("):
        make_runner(runtime)


def test_device_description(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n")
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert slug(cpu_model(cpuinfo)) == "intel-xeon-platinum-8375c"
    assert slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    runner = make_runner("ort-cpu", 2)
    assert runner.device_name() == f"ort-cpu-2t@{slug(cpu_model())}"
    info = runner.device_info()
    assert info["runtime"] == "ort-cpu" and info["threads"] == 2 and info["cpu_model"] == cpu_model()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", info["runtime_versions"]["onnxruntime"])


class Sleeper:
    """A session whose inference waits 2 ms without using the CPU."""

    def run(self):
        time.sleep(0.002)


def test_timing_clock_counts_the_thread_cpu_time_with_one_thread():
    assert make_runner("ort-cpu", 1).timing_clock == "thread_cpu"
    assert make_runner("ort-cpu", 2).timing_clock == "wall"
    on_cpu = time_block(Sleeper(), 0.0, 5, 5, clock="thread_cpu")
    assert len(on_cpu.samples_ms) == len(on_cpu.wall_ms) == 5
    assert all(w >= 2.0 for w in on_cpu.wall_ms) and max(on_cpu.samples_ms) < 0.5
    on_wall = time_block(Sleeper(), 0.0, 5, 5, clock="wall")
    assert on_wall.samples_ms == on_wall.wall_ms and on_wall.energy_uj is None


def test_generated_inputs_are_deterministic_and_valid_indices():
    assert input_shape(["N", 3, None, -1, 8]) == (1, 3, 1, 1, 8)
    a = make_inputs([("x", (2, 3), "float32"), ("ids", (1, 64), "int64"), ("mask", (1, 4), "bool")])
    b = make_inputs([("x", (2, 3), "float32"), ("ids", (1, 64), "int64"), ("mask", (1, 4), "bool")])
    assert a["x"].dtype == np.float32 and np.array_equal(a["x"], b["x"])
    assert a["ids"].dtype == np.int64 and set(np.unique(a["ids"])) == {0, 1}
    assert not a["mask"].any()


# -- the protocol -------------------------------------------------------------------------------------
def test_batch_goes_on_past_models_the_runtime_rejects(tmp_path):
    good_a = write(tiny_cnn(8), tmp_path / "good_a.onnx")
    bad_run = write(impossible_reshape_model(), tmp_path / "bad_reshape.onnx")
    bad_load = tmp_path / "garbage.onnx"
    bad_load.write_bytes(b"this is not a protobuf" * 10)
    good_b = write(tiny_cnn(16), tmp_path / "good_b.onnx")
    calls = []
    res = profile([good_a, bad_run, bad_load, good_b], workers=2, memory=False,
                  progress=lambda done, total, note: calls.append((done, total)), **FAST)
    assert [r.status for r in res] == ["ok", "failed", "failed", "ok"]
    assert [r.error_kind for r in res] == [None, "run", "load", None]
    assert "Reshape" in res[1].error_message and "bad_reshape" in res[1].error_message
    assert "INVALID_PROTOBUF" in res[2].error_message or "Protobuf parsing failed" in res[2].error_message
    for r in (res[0], res[3]):
        assert r.workers == 2 and len(r.worker_medians_ms) == 2
        assert len(r.raw_samples_ms) >= 2 * FAST["min_runs"]
        assert r.latency_ms["min"] <= r.latency_ms["p10"] <= r.latency_ms["median"] <= r.latency_ms["p90"]
        assert r.latency_ms_raw_median == pytest.approx(statistics.median(r.raw_samples_ms))
        assert r.latency_clock == "thread_cpu" and r.latency_ms_wall_median > 0
        assert r.latency_ms["median"] == pytest.approx(r.reference_ratio * r.reference_baseline_ms)
        assert 0.0 <= r.reference_weight <= 1.0 and r.memory_reference_baseline_ms > 0
        # the stored block references recompute the label
        blocks = stats.rebuild_blocks(r.raw_samples_ms, r.block_references_ms)
        assert {b.worker for b in blocks} == {0, 1}
        combined = stats.combine_references(blocks, r.reference_baseline_ms, r.memory_reference_baseline_ms,
                                            r.reference_weight)
        assert stats.latency_stats(combined, r.reference_baseline_ms).latency_ms == pytest.approx(r.latency_ms)
        assert r.repeat_cv is not None and r.repeat_cv >= 0
        assert r.device == make_runner("ort-cpu").device_name()
        assert len(r.environment["load_average_before"]) == 3 and "load_average_after" in r.environment
    assert res[1].latency_ms is None and res[1].raw_samples_ms == []
    assert calls[-1][0] == calls[-1][1]
    assert "\n" not in res[1].error_message


def test_high_spread_triggers_extra_workers(tmp_path):
    model = write(tiny_cnn(8), tmp_path / "m.onnx")
    (steady,) = profile([model], workers=2, memory=False, **{**FAST, "cv_threshold": 10.0, "max_extra_workers": 2})
    assert steady.workers == 2
    # a threshold of 0 counts any spread as too high: both extra workers are used
    (spread,) = profile([model], workers=2, memory=False, **{**FAST, "cv_threshold": 0.0, "max_extra_workers": 2})
    assert spread.workers == 4 and len(spread.worker_medians_ms) == 4


def test_workers_load_models_in_bounded_groups(tmp_path):
    files = []
    for k, size in enumerate([10, 10, 30, 5, 5]):
        f = tmp_path / f"m{k}"
        f.write_bytes(b"x" * size)
        files.append([k, str(f)])
    assert [[i for i, _ in g] for g in groups(files, size=3, max_bytes=25)] == [[0, 1], [2], [3, 4]]
    assert [[i for i, _ in g] for g in groups(files, size=2, max_bytes=1000)] == [[0, 1], [2, 3], [4]]


def test_single_model_the_runtime_rejects_is_a_usage_error(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\x01 not onnx")
    with pytest.raises(UsageError) as err:
        profile([bad], workers=1, memory=False, **FAST)
    assert str(err.value).startswith(str(bad) + ": ") and "\n" not in str(err.value)
    with pytest.raises(PerfcastError, match="no such file"):
        profile([tmp_path / "missing.onnx"], workers=1, memory=False, **FAST)


def test_hanging_and_crashing_models_are_recorded_and_the_batch_goes_on(tmp_path, monkeypatch):
    # Simulation: the worker sleeps forever (or kills itself with SIGSEGV) when it loads
    # the named file, standing in for a runtime that hangs or segfaults on a network.
    models = [write(tiny_cnn(8), tmp_path / n) for n in ("before.onnx", "hangs.onnx", "after.onnx")]
    monkeypatch.setenv(FAULT_ENV, "hang:hangs.onnx")
    res = profile(models, workers=2, memory=False, timeout_s=1.5, **FAST)
    assert [(r.status, r.error_kind) for r in res] == [("ok", None), ("failed", "timeout"), ("ok", None)]
    assert "time limit of 1.5 s" in res[1].error_message
    assert res[0].workers == 2 and res[2].workers == 2

    monkeypatch.setenv(FAULT_ENV, "crash:hangs.onnx")
    res = profile(models, workers=1, memory=False, **FAST)
    assert [(r.status, r.error_kind) for r in res] == [("ok", None), ("failed", "crash"), ("ok", None)]
    assert res[1].error_message == "worker process killed by SIGSEGV"


def test_litert_runner_times_tflite_models(tmp_path):
    model = tmp_path / "adds.tflite"
    model.write_bytes(add_chain_tflite((1, 64), 4))
    (r,) = profile([model], runtime="litert", workers=1, memory=False, **FAST)
    assert r.status == "ok" and r.runtime == "litert" and r.device.startswith("litert-1t@")
    assert r.latency_ms["median"] > 0


# -- memory and energy -----------------------------------------------------------------------------
def elementwise_chain(channels: int):
    """Sigmoid then Tanh on a (1, C, 512, 512) float input: input, Sigmoid output and Tanh
    output are alive together, 3 * C * 1 MiB at the peak."""
    b = GraphBuilder("activations")
    b.output(b.act(b.act(b.input((1, channels, 512, 512)), "sigmoid"), "tanh"))
    return b.build()


def test_peak_memory_follows_the_activation_bytes_and_repeats(tmp_path):
    big = write(elementwise_chain(8), tmp_path / "big.onnx")
    tiny = write(tiny_cnn(4), tmp_path / "tiny.onnx")
    probe = MemoryProbe("ort-cpu", 1, write_trivial(tmp_path), timeout_s=60)
    first, error = probe.peak_memory(0, big)
    assert error is None
    second, _ = probe.peak_memory(0, big)
    small, _ = probe.peak_memory(1, tiny)
    activation_bytes = 3 * 8 * 512 * 512 * 4
    assert abs(second - first) / first < 0.01
    assert 0.9 * activation_bytes < first - small < 1.1 * activation_bytes
    assert small < 0.1 * activation_bytes


def test_memory_readings_tell_a_peak_while_loading_from_one_while_running(tmp_path):
    # weights of 32 MiB and tiny activations peak while the session loads; a network without
    # weights peaks while it runs, by its two 8 MiB outputs (the input is made with the session)
    b = GraphBuilder("weights")
    b.output(b.linear(b.input((1, 2048)), 4096))
    heavy = write(b.build(), tmp_path / "heavy.onnx")
    busy = write(elementwise_chain(8), tmp_path / "busy.onnx")
    probe = MemoryProbe("ort-cpu", 1, write_trivial(tmp_path), timeout_s=60, processes=1)
    (w,), error = probe.readings(0, heavy)
    assert error is None
    (a,), _ = probe.readings(1, busy)
    for e in (w, a):
        assert e["vm_rss_before_bytes"] < e["vm_hwm_loaded_bytes"] <= e["vm_hwm_bytes"]
    loaded, final = (w[k] - w["vm_rss_before_bytes"] for k in ("vm_hwm_loaded_bytes", "vm_hwm_bytes"))
    assert loaded > 32 * 2**20 and final - loaded < 0.05 * final
    loaded, final = (a[k] - a["vm_rss_before_bytes"] for k in ("vm_hwm_loaded_bytes", "vm_hwm_bytes"))
    assert final - loaded > 0.9 * 2 * 8 * 2**20


def test_rapl_reader_on_a_fake_sysfs_with_wraparound(tmp_path):
    # a mock of /sys/class/powercap: two packages, a sub-zone and a psys zone that must not be added
    def zone(name, label, energy_uj, max_uj):
        d = tmp_path / name
        d.mkdir()
        (d / "name").write_text(label + "\n")
        (d / "energy_uj").write_text(f"{energy_uj}\n")
        (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
        return d

    p0 = zone("intel-rapl:0", "package-0", 1_000, 262_143_328_850)
    p1 = zone("intel-rapl:1", "package-1", 262_143_000_000, 262_143_328_850)
    zone("intel-rapl:0:0", "core", 5, 10**9)
    zone("intel-rapl:2", "psys", 7, 10**9)
    meter = energy.open_meter("rapl", tmp_path)
    assert [z.name for z in meter.zones] == ["package-0", "package-1"]
    before = meter.read()
    (p0 / "energy_uj").write_text("501000\n")  # +500,000 uJ
    (p1 / "energy_uj").write_text("171150\n")  # wrapped: +328,850 to the top, then +171,150
    assert meter.delta_uj(before, meter.read()) == 500_000 + 328_850 + 171_150
    assert energy.wrapped_delta(10, 4, 16) == 10
    assert energy.energy_source(gpu=False, rapl_root=tmp_path) == "rapl"
    assert energy.open_meter("rapl", tmp_path / "none") is None


def test_energy_is_none_without_a_counter_and_memory_is_reported(tmp_path):
    if energy.rapl_zones():
        pytest.skip("this machine has readable RAPL counters")
    assert energy.energy_source(gpu=False) is None
    (r,) = profile([write(tiny_cnn(8), tmp_path / "m.onnx")], workers=1, memory=True, memory_processes=1, **FAST)
    assert r.status == "ok" and r.energy_mj is None
    assert 0 <= r.peak_memory_bytes < 20 * 2**20


# -- kernel profiles ---------------------------------------------------------------------------------
def residual_block_model() -> onnx.ModelProto:
    """Conv+Relu, Conv + residual Add + Relu, Conv+BatchNorm, a Reshape whose shape is
    computed from constants (folded) and an Identity (eliminated)."""
    b = GraphBuilder("resblock")
    x = b.input((1, 16, 16, 16))
    r1 = b.act(b.conv(x, 16, 3, bias=True), "relu")
    r2 = b.act(b.add(b.conv(r1, 16, 3, bias=True), r1), "relu")
    y = b.bn(b.conv(r2, 16, 1))
    model = to_onnx(b.build())
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), "c_one"),
                          numpy_helper.from_array(np.array([-1], np.int64), "c_rest")])
    g.node.extend([
        helper.make_node("Concat", ["c_one", "c_rest"], ["flat_shape"], axis=0, name="shape_concat"),
        helper.make_node("Identity", [y], ["same"], name="identity"),
        helper.make_node("Reshape", ["same", "flat_shape"], ["flat"], name="flatten_reshape"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("flat", F, [1, 16 * 16 * 16]))
    return model


def rows_by_node(rows):
    owner = {}
    for row in rows:
        for n in row["nodes"]:
            assert n not in owner, f"{n} is in two rows"
            owner[n] = row
    return owner


def test_kernel_profile_maps_fused_kernels_to_every_original_node(tmp_path):
    model = residual_block_model()
    path = write(model, tmp_path / "res.onnx")
    rows = kernel_profile(make_runner("ort-cpu"), str(path), runs=5, warmup_runs=2)
    owner = rows_by_node(rows)
    original = {n.name: n.op_type for n in model.graph.node}
    assert set(owner) == set(original)
    by_type = {}
    for name, op in original.items():
        by_type.setdefault(op, []).append(name)
    conv1, conv2, conv3 = by_type["Conv"]
    relu1, relu2 = by_type["Relu"]
    # fusions seen from tensor names: activation and BatchNorm go with their convolution
    assert owner[relu1] is owner[conv1] and owner[conv1]["fate"] == "ran"
    assert owner[by_type["BatchNormalization"][0]] is owner[conv3]
    assert owner[relu2]["fate"] == "ran" and owner[by_type["Add"][0]]["fate"] == "ran"
    assert owner["shape_concat"]["fate"] == "folded"
    assert owner["identity"]["fate"] == "eliminated"
    ran = [r for r in rows if r["fate"] == "ran"]
    assert all(r["count"] == 5 and r["duration_us"] >= 0 and r["provider"] == "CPUExecutionProvider" for r in ran)
    assert owner[conv1]["op_type"] in ("Conv", "FusedConv")
    for row in rows:
        assert row["node_op_types"] == [original[n] for n in row["nodes"]]


def test_kernel_profile_sees_a_decomposed_layer_norm_and_matmul_add_as_single_kernels(tmp_path):
    """LayerNorm written out as 9 elementwise/reduce nodes and MatMul + Add: onnxruntime
    fuses each into one kernel, which must own all of its original nodes."""
    d = 32
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("two", 2.0), ("eps", 1e-5))] + [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("gamma", (d,)), ("beta", (d,)), ("w", (d, d)), ("b", (d,)))
    ]
    N = helper.make_node
    nodes = [
        N("ReduceMean", ["x"], ["mu"], axes=[-1], name="ln_mean"),
        N("Sub", ["x", "mu"], ["xc"], name="ln_sub"),
        N("Pow", ["xc", "two"], ["sq"], name="ln_pow"),
        N("ReduceMean", ["sq"], ["var"], axes=[-1], name="ln_var"),
        N("Add", ["var", "eps"], ["var_eps"], name="ln_add_eps"),
        N("Sqrt", ["var_eps"], ["std"], name="ln_sqrt"),
        N("Div", ["xc", "std"], ["xn"], name="ln_div"),
        N("Mul", ["xn", "gamma"], ["xs"], name="ln_scale"),
        N("Add", ["xs", "beta"], ["ln"], name="ln_shift"),
        N("MatMul", ["ln", "w"], ["mm"], name="fc_matmul"),
        N("Add", ["mm", "b"], ["fc"], name="fc_bias"),
        N("HardSwish", ["fc"], ["y"], name="hswish"),
    ]
    g = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", F, [4, d])],
                          [helper.make_tensor_value_info("y", F, [4, d])], initializer=inits)
    path = write(onnx_model(g), tmp_path / "ln.onnx")
    rows = kernel_profile(make_runner("ort-cpu"), str(path), runs=3, warmup_runs=1)
    owner = rows_by_node(rows)
    ln = [n.name for n in nodes[:9]]
    assert all(owner[n] is owner["ln_mean"] for n in ln)
    assert owner["ln_mean"]["op_type"] == "LayerNormalization" and owner["ln_mean"]["fate"] == "ran"
    assert owner["fc_matmul"] is owner["fc_bias"] and owner["fc_bias"]["fate"] == "ran"
    # onnxruntime expands HardSwish into unnamed HardSigmoid and Mul kernels; the trace
    # names them <op>_<index>, and the Mul, which writes the output, owns the node
    assert owner["hswish"]["fate"] == "ran" and owner["hswish"]["op_type"] == "Mul"
    assert all(r["fate"] == "ran" for r in rows)


def test_kernel_map_without_value_signatures_uses_names_alone():
    """A renamed output cannot be identified without values: its kernel claims nothing and
    the next kernel whose output keeps its name takes the work."""
    N = helper.make_node
    original = helper.make_graph(
        [N("Conv", ["x", "w"], ["c"], name="conv"), N("Relu", ["c"], ["r"], name="relu"),
         N("Flatten", ["r"], ["y"], name="flat")], "o",
        [helper.make_tensor_value_info("x", F, [1, 1, 4, 4])], [helper.make_tensor_value_info("y", F, None)],
        initializer=[numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")])
    optimized = helper.make_graph(
        [N("ReorderInput", ["x"], ["t0"], name="reorder_in", domain="com.microsoft.nchwc"),
         N("Conv", ["t0", "w_blocked"], ["t1"], name="conv_nchwc", domain="com.microsoft.nchwc"),
         N("ReorderOutput", ["t1"], ["r"], name="reorder_out", domain="com.microsoft.nchwc"),
         N("Flatten", ["r"], ["y"], name="flat")], "p",
        [helper.make_tensor_value_info("x", F, [1, 1, 4, 4])], [helper.make_tensor_value_info("y", F, None)],
        initializer=[numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w_blocked")])
    o = GraphView.from_onnx(onnx_model(original))
    p = GraphView.from_onnx(onnx_model(optimized))
    names_only = map_kernels(o, p)
    assert names_only.kernels == {"reorder_in": [], "conv_nchwc": [], "reorder_out": ["conv", "relu"], "flat": ["flat"]}
    sigs_o = {"x": ("f", 1.0, 9.0), "c": ("f", 2.0, 10.0), "r": ("f", 3.0, 5.0), "y": ("f", 3.0, 5.0)}
    sigs_p = {"x": ("f", 1.0, 9.0), "t0": ("f", 1.0, 9.0), "t1": ("f", 3.0, 5.0), "r": ("f", 3.0, 5.0),
              "y": ("f", 3.0, 5.0)}
    by_value = map_kernels(o, p, sigs_o, sigs_p)
    assert by_value.kernels == {"reorder_in": [], "conv_nchwc": ["conv", "relu"], "reorder_out": [], "flat": ["flat"]}
    assert by_value.folded == [] and by_value.eliminated == []


def test_the_memory_repeat_table_bands_networks_by_stored_peak():
    module = load_script("memory_repeat")
    mib = 2**20
    stored = np.array([1.0, 2.0, 20.0, 100.0]) * mib
    new = np.array([1.1, 2.0, 19.0, 100.0]) * mib  # 10 %, 0 %, 5 %, 0 % apart
    pred = np.array([1.0, 2.2, 20.0, 90.0]) * mib  # 0 %, 10 %, 0 %, 10 % off
    loading = np.array([False, False, True, True])
    rows = {r[0]: r for r in module.band_rows(stored, new, pred, loading)}
    assert list(rows) == ["0 to 3 MiB", "10 to 50 MiB", "50 MiB and more", "all"]  # no network of 3 to 10 MiB
    small = rows["0 to 3 MiB"]
    assert small[1] == "2" and small[2] == "5.00" and small[5] == f"{5 / math.sqrt(2):.2f}"
    assert small[6] == "5.00" and small[7] == "0%" and small[8] == "-" and small[9] == "5.00"
    every = rows["all"]
    assert every[1] == "4" and every[2] == "3.75" and every[7] == "50%"
    assert every[8] == "5.00" and every[9] == "5.00"  # loading: 0 % and 10 %; running: 0 % and 10 %
