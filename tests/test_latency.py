"""Latency: measured (never asserted in time), well-formed, reported; phone runs built and parsed."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import edgecnn
from edgecnn.harness.bench import LATENCY_SCHEMA, run_bench
from edgecnn.harness.device import Adb, OnDeviceResult, REMOTE_DIR, connect, parse_benchmark_output
from edgecnn.schema.latency import Device
from edgecnn.util.errors import DeviceError, UsageError
from edgecnn.schema.manifest import to_json
from edgecnn.harness.latency import LatencyOptions, parse_threads
from edgecnn.schema.latency import LoadAndMemory


# benchmark_model's output as its current builds print it (INFO prefix, percentiles, periodic peak memory)
NEW_OUTPUT = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/edgecnn/model_int8.tflite]
INFO: #threads used for CPU inference: [4]
INFO: Loaded model /data/local/tmp/edgecnn/model_int8.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 2.08123
INFO: Initialized session in 41.205ms.
INFO: Running benchmark for at least 10 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=131 first=9120 curr=3391 min=3310 max=9120 avg=3815.4 std=702 p5=3342 median=3560 p95=5120

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=287 first=3402 curr=3377 min=3301 max=6211 avg=3486.9 std=318 p5=3318 median=3391 p95=4102

INFO: Inference timings in us: Init: 41205, First inference: 9120, Warmup (avg): 3815.4, Inference (avg): 3486.9
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=6.125 overall=11.5
INFO: Overall peak memory footprint (MB) via periodic monitoring: 14.3164
"""
# ...and as older builds print it: no prefix, no percentiles, scientific notation for long runs
OLD_OUTPUT = """STARTING!
Num runs: [50]
Num threads: [1]
Graph: [/data/local/tmp/edgecnn/model_fp32.tflite]
Loaded model /data/local/tmp/edgecnn/model_fp32.tflite
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=1512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=1290275 curr=1213402 min=1127568 max=1389954 avg=1.25034e+06 std=59798

Inference timings in us: Init: 17187, First inference: 1512391, Warmup (avg): 1.51239e+06, Inference (avg): 1.25034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
"""


@pytest.fixture(scope="module")
def exported(app_exports):
    """The session's export of the apps' random-weight variant (ONNX, TFLite, ExecuTorch; conftest)."""
    return app_exports / "mobilenet_v2_a0.35_r224"


def test_local_bench_times_every_artifact_and_pytorch_interleaved(exported, tmp_path):
    latency = run_bench(exported, threads=(1, 2), runs=20, out=tmp_path / "bench")
    assert set(latency.threads) == {"1", "2"}
    for timings in latency.threads.values():
        assert list(timings) == ["pytorch eager (fp32)", "model.onnx", "model_fp32.tflite", "model_int8.tflite",
                                 "model_fp32.pte", "model_int8.pte"]
        for t in timings.values():
            assert t.runs == 20 and 0 < t.min_ms <= t.median_ms <= t.p90_ms
    for name in ("model.onnx", "model_fp32.tflite", "model_int8.tflite", "model_int8.pte"):
        memory = latency.load_and_memory[name]
        assert memory.load_ms > 0 and memory.first_run_ms > 0 and memory.added_peak_rss_mib >= 0
        assert memory.peak_measured == "while loading and running"
    assert latency.machine.cores == os.cpu_count() and latency.machine.cpu
    written = json.loads((tmp_path / "bench" / "latency.json").read_text())
    assert written["schema"] == LATENCY_SCHEMA and written["device"] == "local"
    assert written["latency"] == to_json(latency)
    assert "## Latency" not in (tmp_path / "bench" / "latency.md").read_text()  # its own document
    assert "| model_int8.tflite |" in (tmp_path / "bench" / "latency.md").read_text()
    assert (tmp_path / "bench" / "latency.png").read_bytes()[:4] == b"\x89PNG"


# what a mobile engineer would measure: a fresh process with only the runtime imported, the session or
# interpreter created from the file and run once; milliseconds on stdout
DIRECT_LOAD = {
    "model_int8.tflite": """
import sys, time, numpy as np
from ai_edge_litert.interpreter import Interpreter
start = time.perf_counter()
interpreter = Interpreter(model_path=sys.argv[1])
interpreter.allocate_tensors()
print((time.perf_counter() - start) * 1000)
""",
    "model.onnx": """
import sys, time, numpy as np
import onnxruntime as ort
start = time.perf_counter()
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print((time.perf_counter() - start) * 1000)
""",
}


def test_load_time_is_the_runtimes_alone(exported):
    """The report's load time covers creating the runtime's interpreter or session from the file, not edgecnn's
    own imports (torch): within 3x of the same load measured directly in a fresh process, side by side, the
    best of three each."""
    import dataclasses

    from edgecnn.harness.latency import probe_all
    from edgecnn.schema.manifest import open_export

    manifest = open_export(exported)
    manifest = dataclasses.replace(manifest, artifacts=[a for a in manifest.artifacts if a.path in DIRECT_LOAD])
    reported = {name: [] for name in DIRECT_LOAD}
    direct = {name: [] for name in DIRECT_LOAD}
    for _ in range(3):
        probed = probe_all(manifest, exported)
        for name, script in DIRECT_LOAD.items():
            reported[name].append(probed[name].load_ms)
            result = subprocess.run([sys.executable, "-c", script, str(exported / name)], capture_output=True,
                                    text=True, timeout=300)
            assert result.returncode == 0, result.stderr
            direct[name].append(float(result.stdout))
    for name in DIRECT_LOAD:
        ratio = min(reported[name]) / min(direct[name])
        assert 1 / 3 <= ratio <= 3, (name, reported[name], direct[name])


@pytest.mark.quick
def test_without_runs_each_configuration_gets_its_share_of_the_time_budget():
    from edgecnn.harness.latency import measure_interleaved

    calls = {"fast": 0, "slow": 0}

    def fast():
        calls["fast"] += 1

    def slow():
        calls["slow"] += 1
        sum(range(200_000))

    timed = measure_interleaved({"fast": fast, "slow": slow}, budget_s=0.05, progress=False)
    assert timed["fast"].runs == 10 * 20  # capped at 20 per round
    assert 10 <= timed["slow"].runs < timed["fast"].runs  # at least once per round


@pytest.mark.parametrize("text, message", [("0", "--threads must be at least 1, got 0"),
                                           ("1,two", "--threads takes whole numbers or 'all'"),
                                           ("", "--threads is empty")])
@pytest.mark.quick
def test_bad_thread_counts(text, message):
    with pytest.raises(UsageError, match=message):
        parse_threads(text)


@pytest.mark.quick
def test_thread_counts_parse():
    assert parse_threads("1,all") == [1, os.cpu_count()] and parse_threads("2,2,1") == [2, 1]
    with pytest.raises(UsageError, match="--runs must be at least 1"):
        LatencyOptions(runs=0)


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--runs", "0"], "--runs must be at least 1, got 0"),
    (["--device", "usb"], "unknown device 'usb'; choose from local, adb"),
    (["--device", "adb"], "--device adb needs --benchmark-binary"),
])
def test_bench_cli_refuses_bad_input_in_one_line(exported, args, message):
    result = subprocess.run([sys.executable, "-m", "edgecnn", "bench", str(exported), *args],
                            capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"edgecnn: error: {message}"), result.stderr


@pytest.mark.quick
def test_benchmark_model_output_is_parsed_in_both_formats():
    new = parse_benchmark_output(NEW_OUTPUT)
    assert new.runs == 287  # the timed run, not the warm-up's count=131
    assert new.median_ms == 3.391 and new.p95_ms == 4.102 and new.min_ms == 3.301
    assert new.avg_ms == 3.4869 and new.init_ms == 41.205 and new.first_run_ms == 9.12
    assert new.memory_delta_mb == {"init": 6.125, "overall": 11.5} and new.peak_memory_mb == 14.3164
    old = parse_benchmark_output(OLD_OUTPUT)
    assert old.runs == 50 and old.median_ms is None and old.p95_ms is None
    assert old.avg_ms == 1250.34 and old.warmup_avg_ms == 1512.39 and old.peak_memory_mb is None
    with pytest.raises(DeviceError, match="printed no timings"):
        parse_benchmark_output("ERROR: Could not open '/data/local/tmp/edgecnn/x.tflite'.\nAborted\n")


@pytest.mark.quick
def test_phone_results_join_the_report_in_the_local_shape():
    from edgecnn.harness.bench import on_device_as_latency
    from edgecnn.harness.report import latency_table

    result = OnDeviceResult(Device("R58M", "Pixel 7", "arm64-v8a", "benchmark_model", "bm"),
                            {"4": {"model_int8.tflite": parse_benchmark_output(NEW_OUTPUT),
                                   "model_fp32.tflite": parse_benchmark_output(OLD_OUTPUT)}})
    latency = on_device_as_latency(result)
    int8, fp32 = latency.threads["4"]["model_int8.tflite"], latency.threads["4"]["model_fp32.tflite"]
    assert int8.median_ms == 3.391 and not int8.median_is_mean
    assert fp32.median_ms == 1250.34 and fp32.median_is_mean  # no median printed: the mean, flagged
    assert latency.load_and_memory["model_int8.tflite"] == LoadAndMemory(load_ms=41.205, first_run_ms=9.12,
                                                                         added_peak_rss_mib=11.5)
    table = latency_table(latency)
    assert "median / p95 / min" in table and "Pixel 7 (arm64-v8a), serial R58M" in table


@pytest.mark.quick
def test_adb_commands_are_built_for_the_chosen_phone_and_threads(tmp_path):
    adb = Adb("/usr/bin/adb", "R58M")
    assert adb.push(tmp_path / "model_int8.tflite", f"{REMOTE_DIR}/model_int8.tflite") == [
        "/usr/bin/adb", "-s", "R58M", "push", str(tmp_path / "model_int8.tflite"), f"{REMOTE_DIR}/model_int8.tflite"]
    assert adb.benchmark(f"{REMOTE_DIR}/model_int8.tflite", threads=4, runs=50) == [
        "/usr/bin/adb", "-s", "R58M", "shell",
        f"{REMOTE_DIR}/benchmark_model --graph={REMOTE_DIR}/model_int8.tflite --num_threads=4 --num_runs=50 "
        "--warmup_runs=10 --use_xnnpack=true"]


@pytest.mark.quick
def test_adb_missing_from_path(tmp_path, monkeypatch):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="needs Android's adb on PATH"):
        connect(None, binary)
    with pytest.raises(UsageError, match="benchmark binary not found"):
        connect(None, tmp_path / "nowhere")


@pytest.mark.skipif(shutil.which("adb") is None, reason="adb is not installed (make setup installs it with apt)")
def test_no_phone_attached_is_one_clear_line(exported, tmp_path):
    """The real adb, with no phone on this machine: the refusal a user without a phone sees."""
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    result = subprocess.run([sys.executable, "-m", "edgecnn", "bench", str(exported), "--device", "adb",
                             "--benchmark-binary", str(binary)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("edgecnn: error: no Android device attached (adb devices "
                                                      "lists none): connect a phone with USB debugging on")
    assert "Traceback" not in result.stderr
