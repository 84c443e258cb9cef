"""`make bench`: edgecnn's mobilenet_v2 export against the baseline a user would otherwise pick.

1. Times the full `edgecnn export` of mobilenet_v2 alpha 0.75 at 224 (three formats, 100 calibration images,
   self-check) as a user runs it.
2. Builds Keras' MobileNetV2 (same alpha and resolution, weights=None, a Rescaling layer in front so that it
   also takes raw 0..255 pixels) and converts it with TensorFlow's own converter to float and to full int8
   (int8 input/output) calibrated on the same images.
3. Times PyTorch eager, ONNX Runtime fp32, and the four .tflite files with ai_edge_litert at 1 and 2 threads,
   interleaved, and writes JSON, a table and a PNG plot to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def export_ours(alpha: float, resolution: int, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgecnn", "export", "--model", "mobilenet_v2", "--alpha", str(alpha),
                    "--resolution", str(resolution), "--calib-count", "100", "--out", str(out), "--force"],
                   check=True)
    return time.perf_counter() - start


def convert_keras(alpha: float, resolution: int, calibration: np.ndarray, out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((resolution, resolution, 3))
    x = tf.keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)  # Keras' own MobileNetV2 preprocessing
    backbone = tf.keras.applications.MobileNetV2(input_shape=(resolution, resolution, 3), alpha=alpha,
                                                 weights=None, classes=1000, classifier_activation=None)
    model = tf.keras.Model(inputs, backbone(x))

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    (out / "keras_fp32.tflite").write_bytes(converter.convert())

    def representative():
        for image in calibration:
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    (out / "keras_int8.tflite").write_bytes(converter.convert())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.data.calibration import load_calibration
    from edgecnn.exporter.pipeline import prepare_model
    from edgecnn.harness.latency import machine, measure_interleaved
    from edgecnn.zoo.spec import VariantSpec

    args.out.mkdir(parents=True, exist_ok=True)
    spec = VariantSpec.create("mobilenet_v2", alpha=args.alpha, resolution=args.resolution)
    work = Path(tempfile.mkdtemp(prefix="edgecnn-bench-"))
    print(f"[bench] exporting {spec.id} with edgecnn", file=sys.stderr)
    export_seconds = export_ours(args.alpha, args.resolution, work / spec.id)
    ours = work / spec.id
    calibration = load_calibration(args.resolution, 100, progress=False).images
    print("[bench] converting Keras MobileNetV2 with TensorFlow's converter", file=sys.stderr)
    convert_keras(args.alpha, args.resolution, calibration, work)

    image = calibration[:1]
    model, _ = prepare_model(spec, None, calibration)
    torch_input = torch.from_numpy(image).permute(0, 3, 1, 2).float().contiguous()

    def tflite(path: Path, threads: int):
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        x = np.zeros(detail["shape"], dtype=detail["dtype"])
        interpreter.set_tensor(detail["index"], x)
        return interpreter.invoke

    configs = {}
    results = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(ours / "model.onnx"), options, providers=["CPUExecutionProvider"])
        onnx_input = {"image": torch_input.numpy()}
        configs = {
            "pytorch eager fp32": lambda: model(torch_input),
            "onnxruntime fp32": lambda s=session: s.run(None, onnx_input),
            "edgecnn tflite fp32": tflite(ours / "model_fp32.tflite", threads),
            "keras tflite fp32": tflite(work / "keras_fp32.tflite", threads),
            "edgecnn tflite int8": tflite(ours / "model_int8.tflite", threads),
            "keras tflite int8": tflite(work / "keras_int8.tflite", threads),
        }
        print(f"[bench] timing at {threads} thread(s)", file=sys.stderr)
        with torch.inference_mode():
            timings = measure_interleaved(configs, rounds=args.rounds)
        results[threads] = {name: t.to_dict() for name, t in timings.items()}

    ratios = {t: {"int8 edgecnn/keras": r["edgecnn tflite int8"]["median_ms"] / r["keras tflite int8"]["median_ms"],
                  "fp32 edgecnn/keras": r["edgecnn tflite fp32"]["median_ms"] / r["keras tflite fp32"]["median_ms"]}
              for t, r in results.items()}
    report = {"variant": spec.id, "export_wall_seconds": round(export_seconds, 2),
              "latency_ms": {f"{t} threads": r for t, r in results.items()},
              "ratios_of_medians": {f"{t} threads": {k: round(v, 4) for k, v in r.items()} for t, r in ratios.items()},
              "machine": to_json(machine()), "command": "make bench"}
    json_path = args.out / f"{spec.id}.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    plot(report, args.out / f"{spec.id}.png")
    print(f"[bench] wrote {json_path} and {json_path.with_suffix('.png')}", file=sys.stderr)
    return 0


def table(report: dict) -> str:
    lines = [f"{report['variant']}: full export {report['export_wall_seconds']:.1f} s wall",
             f"{'configuration':24} {'threads':>7} {'median ms':>10} {'p90 ms':>8} {'min ms':>8}"]
    for threads, results in report["latency_ms"].items():
        for name, t in results.items():
            lines.append(f"{name:24} {threads.split()[0]:>7} {t['median_ms']:10.3f} {t['p90_ms']:8.3f} {t['min_ms']:8.3f}")
    for threads, ratios in report["ratios_of_medians"].items():
        lines.append(f"ratios at {threads}: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report["latency_ms"]), figsize=(12, 4.5), sharey=False)
    for ax, (threads, results) in zip(np.atleast_1d(axes), report["latency_ms"].items()):
        names = list(results)
        medians = [results[n]["median_ms"] for n in names]
        p90 = [results[n]["p90_ms"] - results[n]["median_ms"] for n in names]
        colors = ["#888888" if n.startswith(("pytorch", "onnx")) else "#1f77b4" if "edgecnn" in n else "#ff7f0e"
                  for n in names]
        ax.barh(names, medians, xerr=[np.zeros(len(names)), p90], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(f"{report['variant']}, {threads}")
        ax.set_xlabel("latency per image, ms (bar: median, whisker: p90)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
