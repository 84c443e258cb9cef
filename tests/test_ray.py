"""Sweeps on Ray: a real local Ray (2 CPUs), a worker killed mid-variant, and Ray's own two-node test cluster."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from edgecnn.formats import parse_formats
from edgecnn.harness.latency import LatencyOptions
from edgecnn.sweeps.sweep import SweepRequest, run_sweep
from edgecnn.schema.parity import CheckStatus
from edgecnn.sweeps.variants import Executor, RayCluster, VariantStatus

import ray  # the `cluster` extra; make setup installs it

LATENCY = LatencyOptions(threads=(1,), runs=20)


def sweep(out, alphas, resolutions, cluster=None):
    request = SweepRequest("mobilenet_v2", alphas, resolutions, parse_formats("tflite"), out, calib_count=8,
                           latency=LATENCY, cluster=cluster)
    return run_sweep(request)


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


@pytest.fixture(scope="module")
def serial_and_ray(serial_sweep, tmp_path_factory):
    """The session's serial sweep (conftest) and the same request run on a local Ray: (root, serial, on Ray),
    the serial folder in root / "serial" and the Ray one in root / "ray"."""
    import dataclasses

    request, serial = serial_sweep
    root = request.out.parent
    with RayCluster() as cluster:
        assert cluster.nodes and int(ray.cluster_resources()["CPU"]) == (os.cpu_count() or 1)
        on_ray = run_sweep(dataclasses.replace(request, out=root / "ray", cluster=cluster))
    return root, serial, on_ray


def test_a_sweep_on_ray_gives_what_the_serial_sweep_gives(serial_and_ray):
    root, serial, on_ray = serial_and_ray
    assert [r.variant for r in on_ray.rows] == [r.variant for r in serial.rows]
    for a, b in zip(serial.rows, on_ray.rows):
        assert (a.executor, b.executor) == (Executor.SERIAL, Executor.RAY)
        assert b.status == a.status == VariantStatus.DONE
        assert b.node.node_id != "local" and b.node.cores == a.node.cores
        assert b.int8_bytes == a.int8_bytes and b.params == a.params and b.macs == a.macs
        # the same files; the PyTorch reference sums in another order at another thread count
        assert b.int8_worst_cosine == pytest.approx(a.int8_worst_cosine, abs=1e-4)
        for name in ("model_fp32.tflite", "model_int8.tflite"):  # the same files: byte for byte
            assert (root / "ray" / b.variant / name).read_bytes() == (root / "serial" / a.variant / name).read_bytes()
    assert not [p.name for p in (root / "ray").iterdir() if ".partial-" in p.name]


def test_no_timing_phase_shares_a_machine_with_another_or_with_an_export(serial_and_ray):
    _, _, on_ray = serial_and_ray
    rows = on_ray.rows
    timings = [r.timing_window for r in rows]
    exports = [r.export_window for r in rows]
    assert all(timings) and all(exports)
    # the work did run side by side: the two exports overlapped (2 CPUs, 2 tasks)
    assert any(overlaps(a, b) for i, a in enumerate(exports) for b in exports[i + 1:])
    for i, timing in enumerate(timings):
        assert not any(overlaps(timing, other) for other in timings[i + 1:])
        assert not any(overlaps(timing, export) for export in exports)


def _kill_first_variant_worker(partial_glob, killed):
    """SIGKILL the Ray worker running a variant once its export has started writing."""
    deadline = time.time() + 600
    while time.time() < deadline and not killed:
        if list(partial_glob()):
            ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
            for line in ps.splitlines():
                if "ray::_variant_task" in line and "grep" not in line:
                    pid = int(line.split()[0])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.2)


@pytest.mark.slow  # a minute or more each; `make test-full` runs them
def test_a_worker_killed_mid_variant_is_retried_and_leaves_no_partial_folder(tmp_path):
    out = tmp_path / "sweep"
    killed = []
    partial = lambda: out.glob(".mobilenet_v2_a0.75_r32.partial-*")  # noqa: E731
    killer = threading.Thread(target=_kill_first_variant_worker, args=(partial, killed), daemon=True)
    with RayCluster() as cluster:
        killer.start()
        summary = sweep(out, [0.75], [32], cluster)
    killer.join(timeout=5)
    assert killed, "no worker was running the variant"
    (row,) = summary.rows
    assert row.status == VariantStatus.DONE and row.int8_ms["1"] > 0
    assert (out / row.variant / "validation" / "report.json").is_file()
    assert not [p.name for p in out.iterdir() if ".partial-" in p.name or ".old-" in p.name]


@pytest.mark.slow  # a minute or more each; `make test-full` runs them
def test_on_a_two_node_cluster_work_spreads_and_each_node_times_its_own(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        with RayCluster(cluster.address) as connected:
            assert len(connected.nodes) == 2
            summary = sweep(tmp_path / "sweep", [0.35, 0.5], [32], connected)
    finally:
        cluster.shutdown()
    rows = summary.rows
    assert [r.status for r in rows] == [VariantStatus.DONE, VariantStatus.DONE]
    assert len({r.node.node_id for r in rows}) == 2  # one task per node: each has one CPU
    for r in rows:  # timed where it ran: the report's machine is the node's
        assert r.timed_on.cores == r.node.cores and r.timing_window is not None


def test_an_unreachable_ray_address_is_one_line_and_quick(tmp_path):
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgecnn", "sweep", "--model", "mobilenet_v2", "--alphas", "0.35",
                             "--resolutions", "32", "--ray", "127.0.0.1:9", "--out", str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "no Ray cluster answers at 127.0.0.1:9" in lines[0]
    assert time.perf_counter() - started < 60
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_an_out_folder_a_node_does_not_see_is_refused(tmp_path):
    """The second node runs in a mount namespace of its own, where --out is a different (tmpfs) folder."""
    from ray.cluster_utils import Cluster

    out = tmp_path / "sweep"
    out.mkdir()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    node = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             f"mount -t tmpfs tmpfs '{out}' && exec '{ray_bin}' start --address='{cluster.address}' "
                             "--num-cpus=1 --block"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        with RayCluster(cluster.address) as connected:
            while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() < deadline:
                time.sleep(1)
            connected.nodes = [n for n in ray.nodes() if n["Alive"]]
            assert len(connected.nodes) == 2
            with pytest.raises(Exception, match="is not shared by every node"):
                connected.check_shared(out)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
        cluster.shutdown()
    assert list(out.iterdir()) == []  # the markers were taken away again


def test_the_scorecard_records_every_artifact_of_a_variant(serial_and_ray):
    """Over the serial sweep's folder: the variant is kept, not exported again, and recorded in full."""
    import json

    from edgecnn.sweeps.scorecard import SCHEMA, ScorecardRequest, read, run_scorecard

    root, serial, _ = serial_and_ray
    out = root / "serial"
    request = ScorecardRequest(["mobilenet_v2"], [0.35], parse_formats("tflite"), out, resolutions=[32],
                               calib_count=8, latency=LATENCY)
    card = run_scorecard(request)
    (row,) = card.rows
    assert (row.variant, row.family, row.status, row.executor) == ("mobilenet_v2_a0.35_r32", "mobilenet",
                                                                   VariantStatus.KEPT, Executor.SERIAL)
    assert row.published_top1 is None  # alpha 0.35 at 32 px: no published figure
    assert set(row.artifacts) == {"model_fp32.tflite", "model_int8.tflite"}
    for artifact in row.artifacts.values():
        assert artifact.bytes > 0 and artifact.parity in (CheckStatus.PASSED, CheckStatus.REPORTED)
        assert artifact.worst_cosine
    assert row.latency_ms["model_int8.tflite"]["1"] > 0
    assert row.int8_over_fp32["1"] == pytest.approx(
        row.latency_ms["model_int8.tflite"]["1"] / row.latency_ms["model_fp32.tflite"]["1"], abs=1e-3)
    assert json.loads((out / "scorecard.json").read_text())["schema"] == SCHEMA
    assert read(out / "scorecard.json") == card
    assert "mobilenet_v2_a0.35_r32" in (out / "scorecard.md").read_text()
    assert (out / "scorecard.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["--models", "resnet18,no_such_net"], "unknown model 'no_such_net'"),
    (["--formats", "onnx"], "--formats must include tflite"),
    (["--alphas", "0.5,x"], "--alphas takes comma-separated numbers, got 'x'"),
])
def test_bad_scorecard_input_is_one_line(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "edgecnn", "scorecard", *args, "--out", str(tmp_path / "card")],
                            capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "card").exists()


USER_MODEL_PY = '''
import torch
from torch import nn


class Pair(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))
'''


@pytest.mark.slow  # `make test-full`: the serial sweep of a user's model runs in `make test` (test_sweep)
def test_your_own_model_is_swept_across_resolutions_serially_and_on_ray(tmp_path):
    """`sweep --model FILE.py:ATTR`: the Ray workers import the model from the file, as the serial sweep does."""
    (tmp_path / "pairs.py").write_text(USER_MODEL_PY)
    request = SweepRequest(f"{tmp_path / 'pairs.py'}:Pair", [1.0], [32, 48], parse_formats("tflite"),
                           tmp_path / "serial", calib_count=8, latency=LATENCY, model_args={"classes": 3})
    serial = run_sweep(request)
    with RayCluster() as cluster:
        on_ray = run_sweep(dataclasses.replace(request, out=tmp_path / "ray", cluster=cluster))
    assert [r.variant for r in serial.rows] == [r.variant for r in on_ray.rows] == ["Pair_r32", "Pair_r48"]
    for a, b in zip(serial.rows, on_ray.rows):
        assert a.status == b.status == VariantStatus.DONE and b.executor == Executor.RAY
        assert a.macs == b.macs > 0 and a.int8_ms["1"] > 0 and b.int8_ms["1"] > 0
        manifest = json.loads((tmp_path / "ray" / b.variant / "manifest.json").read_text())
        assert manifest["origin"]["arguments"] == {"classes": 3} and manifest["num_classes"] == 3
        for name in ("model_fp32.tflite", "model_int8.tflite"):
            assert (tmp_path / "ray" / b.variant / name).read_bytes() == (tmp_path / "serial" / a.variant / name).read_bytes()
    assert serial.rows[0].macs < serial.rows[1].macs
