"""`edgecnn export` refuses bad input with one line, exit 2, no traceback, and writes nothing."""
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

import edgecnn


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "edgecnn", "export", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo owned",))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with open(tmp_path / "code.pt", "wb") as f:
        pickle.dump({"weight": Payload()}, f)
    torch.save(edgecnn.create_model("resnet18", alpha=0.25).state_dict(), tmp_path / "resnet18.pt")
    torch.save(edgecnn.create_model("mobilenet_v2", alpha=0.35), tmp_path / "whole_model.pt")  # not its state_dict
    torch.save(edgecnn.create_model("mobilenet_v2", num_classes=10).state_dict(), tmp_path / "ten_classes.pt")
    whole = (tmp_path / "ten_classes.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[:len(whole) // 2])  # a download cut short
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad_images" / "nested").mkdir(parents=True)
    (tmp_path / "bad_images" / "nested" / "broken.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    (tmp_path / "a_file").write_text("x")
    return tmp_path


CASES = [
    (["--model", "mobilenet_v5"], "unknown model 'mobilenet_v5'; did you mean mobilenet_v2"),
    (["--model", "mobilenet_v2", "--alpha", "0"], "alpha must be in (0, 4]"),
    (["--model", "mobilenet_v2", "--resolution", "20"], "too small for mobilenet_v2"),
    (["--model", "mobilenet_v2", "--formats", "onnx,pdf"], "unknown format 'pdf'; choose from onnx, tflite, coreml"),
    (["--model", "mobilenet_v2", "--weights", "missing.pt"],
     "--weights missing.pt: no such file, and not a named checkpoint (fashion-mnist-demo, "),
    (["--model", "mobilenet_v2", "--weights", "imagenet"], "lite0-imagenet, torchvision); did you mean lite0-imagenet?"),
    (["--model", "mobilenet_v2", "--weights", "notes.txt"], "notes.txt is not a"),
    (["--model", "mobilenet_v2", "--weights", "code.pt"],
     "code.pt holds pickled Python objects, not just tensors; edgecnn loads weights only and never unpickles code"),
    (["--model", "mobilenet_v2", "--weights", "whole_model.pt"], "whole_model.pt holds a pickled edgecnn."),
    (["--model", "mobilenet_v2", "--weights", "whole_model.pt"],
     "not just tensors; edgecnn loads weights only and never unpickles code: save the weights with "
     "torch.save(model.state_dict(), path)"),
    (["--model", "mobilenet_v2", "--weights", "resnet18.pt"],
     "resnet18.pt does not fit mobilenet_v2: missing: features.0.0.weight"),
    (["--model", "mobilenet_v2", "--weights", "ten_classes.pt"],
     "shape (file vs model): classifier.1.weight (10, 1280) vs (1000, 1280)"),
    (["--model", "mobilenet_v2", "--weights", "truncated.pt"], "truncated.pt is not a readable PyTorch checkpoint"),
    (["--model", "mobilenet_v2", "--weights", "fashion-mnist-demo", "--alpha", "1"],
     "fashion-mnist-demo is mobilenet_v2 alpha 0.5 with 10 classes (trained at 32 px), not alpha 1 with 10"),
    (["--model", "mobilenet_v2", "--weights", "fashion-mnist-demo", "--num-classes", "1000"],
     "not alpha 0.5 with 1000 classes"),
    (["--model", "resnet18", "--weights", "fashion-mnist-demo"], "fashion-mnist-demo is for mobilenet_v2, not resnet18"),
    (["--model", "mobilenet_v2", "--calib", "nowhere"], "image folder not found: nowhere"),
    (["--model", "mobilenet_v2", "--calib", "empty"], "no images"),
    (["--model", "mobilenet_v2", "--calib", "bad_images"],
     "no readable image in bad_images: all 1 failed to decode (nested/broken.jpg, ...)"),
    (["--model", "mobilenet_v2", "--calib-count", "1"], "--calib-count must be at least 2"),
    (["--model", "mobilenet_v2", "--out", "a_file/x"], "cannot write to a_file"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_input(files, args, message):
    before = sorted(p.name for p in files.iterdir())
    result = run(*args, "--formats", "onnx", cwd=files) if "--formats" not in args else run(*args, cwd=files)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgecnn")]
    assert errors == [errors[-1]] and message in errors[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "owned" not in result.stdout and "\x1b" not in result.stderr
    assert sorted(p.name for p in files.iterdir()) == before  # nothing written, nothing removed


def test_an_unreadable_calibration_image_is_skipped_named_and_recorded(files, tmp_path):
    from PIL import Image

    from edgecnn.schema.manifest import open_export

    mixed = files / "mixed"
    (mixed / "deep").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 90)).save(mixed / "good.png")
    (mixed / "deep" / "bad.jpg").write_bytes(b"\xff\xd8 this is no jpeg either")
    result = run("--model", "mobilenet_v2", "--alpha", "0.35", "--resolution", "32", "--formats", "onnx",
                 "--calib", "mixed", "--calib-count", "4", "--no-validate", "--out", "out", cwd=files)
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert notes == ["[edgecnn] note: calibration image skipped: cannot read image mixed/deep/bad.jpg: "
                     "UnidentifiedImageError"]
    calibration = open_export(files / "out").calibration
    assert calibration.files == ["good.png"] and calibration.skipped == ["deep/bad.jpg"] and calibration.count == 4


def test_existing_export_is_not_touched_without_force(files):
    target = files / "export" / "mobilenet_v2_a1.0_r224"
    target.mkdir(parents=True)
    (target / "manifest.json").write_text("{}")
    result = run("--model", "mobilenet_v2", cwd=files)
    assert result.returncode == 2 and "already exists; pass --force" in result.stderr
    assert (target / "manifest.json").read_text() == "{}"


# the step that finishes just before the float conversion begins, and the float conversion itself, after
# which the int8 graph is traced and calibrated; with two formats, inside a converting child process
@pytest.mark.parametrize("moment,formats", [pytest.param("built (alpha", "tflite", marks=pytest.mark.slow),
                                            pytest.param("tflite fp32: converted", "tflite", marks=pytest.mark.slow),
                                            ("tflite fp32: converted", "onnx,tflite")])
def test_an_interrupted_export_leaves_nothing_behind(files, moment, formats):
    process = subprocess.Popen([sys.executable, "-m", "edgecnn", "export", "--model", "mobilenet_v2", "--alpha",
                                "0.35", "--resolution", "96", "--formats", formats, "--calib-count", "20"],
                               cwd=files, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if moment in line:  # inside a converter, then inside torch.export: both must stop cleanly
            break
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest[-2000:]
    assert "stopping at the next safe point" in rest and "interrupted; nothing was written" in rest
    assert "Traceback" not in rest
    assert not (files / "export").exists()  # not even the folder it created for the export
