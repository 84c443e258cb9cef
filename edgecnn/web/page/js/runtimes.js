// The two WebAssembly runtimes the page runs model files with, behind one interface:
//   const model = await loadModel(entry, options); const raw = await model.run(tensor); model.close();
// `raw` is the output as the file gives it (Float32Array, or Int8Array of codes); `entry` is the file's
// catalog entry (its format, input and output dtype and shape: edgecnn/schema/catalog.py).
import * as ort from '../vendor/onnxruntime-web/ort.wasm.min.mjs';
import { loadLiteRt } from '../vendor/litertjs/core/index.js';

// Threads need cross-origin isolation (SharedArrayBuffer); without it both runtimes run on one.
export function threadCount() {
  return crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}


class OrtModel {
  static async load(entry, threads) {
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = new URL('../vendor/onnxruntime-web/', import.meta.url).href;
    const session = await ort.InferenceSession.create(await fetchBytes(entry.file), { executionProviders: ['wasm'] });
    return new OrtModel(entry, session);
  }

  constructor(entry, session) {
    this.shape = entry.input.shape; // batch 1, as the catalog writes every shape
    this.session = session;
    this.input = session.inputNames[0];
    this.output = session.outputNames[0];
  }

  async run(tensor) {
    const type = tensor instanceof Int8Array ? 'int8' : 'float32';
    const outputs = await this.session.run({ [this.input]: new ort.Tensor(type, tensor, this.shape) });
    const result = outputs[this.output];
    const data = result.data.slice();
    for (const value of Object.values(outputs)) value.dispose();
    return data;
  }

  close() {
    this.session.release();
  }
}

// LiteRT.js's public Tensor and CompiledModel.run() know float32, int32 and uint8 only ("Element type INT8
// is not supported", version 2.5.3), so a full-integer model with int8 input and output cannot go through
// them. The page uses the runtime's lower-level bindings that CompiledModel itself is built on: raw tensor
// buffers filled and read as bytes, whatever the element type. Measured against Python's ai_edge_litert on
// the same file and input: identical outputs, float32 bit for bit and int8 code for code.
let liteRt = null;

async function liteRtRuntime(threads) {
  if (liteRt === null) {
    const folder = new URL('../vendor/litertjs/wasm/', import.meta.url).href;
    liteRt = await loadLiteRt(folder, threads > 1 ? { threads: true } : {});
  }
  return liteRt;
}

class LiteRtModel {
  static async load(entry, threads) {
    const runtime = await liteRtRuntime(threads);
    const wasm = runtime.liteRtWasm;
    const environment = runtime.getDefaultEnvironment();
    const bytes = await fetchBytes(entry.file);
    const pointer = wasm._malloc(bytes.byteLength); // the model reads from this memory as long as it lives
    wasm.HEAPU8.set(bytes, pointer);
    const model = wasm.loadModel(environment.liteRtEnvironment, pointer, bytes.byteLength);
    const compiled = await wasm.compileModel(environment.liteRtEnvironment, model, {
      environment, accelerator: 'wasm', cpuOptions: { numThreads: threads }, gpuOptions: {}, webNNOptions: {},
    });
    return new LiteRtModel(entry, wasm, environment.liteRtEnvironment, pointer, model, compiled);
  }

  constructor(entry, wasm, environment, pointer, model, compiled) {
    Object.assign(this, { wasm, environment, pointer, model, compiled });
    this.outputType = { int8: Int8Array, float32: Float32Array }[entry.output.dtype];
    if (!this.outputType) throw new Error(`${entry.file}: output dtype ${entry.output.dtype} is not one this page reads`);
    this.inputType = model.getInputTensorType(0, 0);
  }

  async run(tensor) {
    const { wasm } = this;
    const bytes = new Uint8Array(tensor.buffer, tensor.byteOffset, tensor.byteLength);
    if (bytes.byteLength !== this.inputType.bytes()) {
      throw new Error(`input of ${bytes.byteLength} bytes for a model taking ${this.inputType.bytes()}`);
    }
    const input = wasm.LiteRtTensorBuffer.createManaged(this.environment, wasm.LiteRtTensorBufferType.HOST_MEMORY,
      this.inputType, bytes.byteLength);
    let outputs = [];
    try {
      wasm.HEAPU8.set(bytes, input.lock(wasm.LiteRtTensorBufferLockMode.WRITE));
      input.unlock();
      outputs = await this.compiled.run(0, [input]);
      const output = outputs[0];
      const start = output.lock(wasm.LiteRtTensorBufferLockMode.READ);
      const copy = wasm.HEAPU8.slice(start, start + output.packedSize()); // HEAPU8 may move when memory grows
      output.unlock();
      return new this.outputType(copy.buffer);
    } finally {
      for (const output of outputs) output.delete();
      input.delete();
    }
  }

  close() {
    this.compiled.delete();
    this.model.delete();
    this.wasm._free(this.pointer);
  }
}

// A model file's format decides its runtime: the catalog is the one the Android app reads too, whose .pte
// files the page skips.
const RUNTIMES = { onnx: OrtModel, tflite: LiteRtModel };

export const pageRuns = (entry) => Object.hasOwn(RUNTIMES, entry.format);

export async function loadModel(entry, { threads = threadCount() } = {}) {
  if (!pageRuns(entry)) throw new Error(`${entry.file}: no runtime for ${entry.format} files in this page`);
  return RUNTIMES[entry.format].load(entry, threads);
}

export const runtimeVersions = { 'onnxruntime-web': ort.env.versions?.web ?? 'unknown' };
