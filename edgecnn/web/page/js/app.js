// The page: pick a model file, classify camera frames or a photo, and check on every model change that the
// golden image gives Python's top-5. With ?selftest=1 it checks every model file and writes one JSON result
// into <pre id="selftest">.
import { decodeImage, drawnPixels, inputTensor, preprocess } from './preprocess.js';
import { loadModel, pageRuns, threadCount } from './runtimes.js';
import { LatencyWindow, dequantize, percentile, topK } from './stats.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const CATALOG_SCHEMA = 'edgecnn.app-catalog/1'; // edgecnn/schema/catalog.py
const FP32_RELATIVE_TOLERANCE = 1e-4; // of the largest |logit|; measured: 1.3e-5 for onnxruntime-web
const INT8_STEP_TOLERANCE = 1; // output codes; measured: 0 for LiteRT.js against Python's LiteRT

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

const asTyped = (bytes, dtype) => (dtype === 'int8' ? new Int8Array(bytes.buffer) : new Float32Array(bytes.buffer));
const median = (values) => percentile(values, 0.5);

// The page's input tensor against Python's, value by value: how many differ, and where the first one is
// (pixel row and column, channel), so that a failure names the preprocessing rather than the model file.
function inputDifference(page, python, spec) {
  const total = python.length;
  if (page.length !== total) return { differing: Math.max(page.length, total), total, first: null };
  let differing = 0;
  let first = -1;
  for (let i = 0; i < page.length; i++) {
    if (!Object.is(page[i], python[i])) {
      differing += 1;
      if (first < 0) first = i;
    }
  }
  if (first < 0) return { differing: 0, total, first: null };
  const resolution = spec.layout === 'NCHW' ? spec.shape[2] : spec.shape[1];
  const pixels = resolution * resolution;
  const channel = spec.layout === 'NCHW' ? Math.floor(first / pixels) : first % 3;
  const pixel = spec.layout === 'NCHW' ? first % pixels : Math.floor(first / 3);
  const where = { row: Math.floor(pixel / resolution), column: pixel % resolution,
                  channel: ['red', 'green', 'blue'][channel], page: page[first], python: python[first] };
  return { differing, total, first: where };
}

// What the page says of a variant's weights: random ones classify into classes that mean nothing.
function weightsNote(variant) {
  return variant.trained === false ? 'random weights, not a trained classifier: its classes mean nothing' : '';
}

// One line saying which part of a golden check failed: the input the page computed, or the model's outputs.
function verdictOf(input, top5Same, outputs) {
  if (input.differing) {
    const where = input.first ? `, first at pixel (row ${input.first.row}, column ${input.first.column}) `
      + `${input.first.channel}: page ${input.first.page}, Python ${input.first.python}` : ' (lengths differ)';
    return `the input differs from Python's (the preprocessing, not the model file): ${input.differing} of ${input.total} values${where}`;
  }
  if (!outputs.withinTolerance) return 'given the same input bytes, the model\'s outputs differ from Python\'s beyond tolerance';
  if (!top5Same) return 'given the same input bytes, the top-5 differs from Python\'s';
  return 'input bytes and outputs agree with Python';
}

// The browser's output against Python's for one golden image: top-5 and the largest difference.
function compareOutputs(entry, raw, reference) {
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < reference.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(raw[i] - reference[i]));
    maxRef = Math.max(maxRef, Math.abs(reference[i]));
  }
  const int8 = entry.output.dtype === 'int8';
  const logits = dequantize(raw, entry.output);
  const pythonLogits = dequantize(reference, entry.output);
  const maxAbsLogitDifference = Math.max(...logits.map((v, i) => Math.abs(v - pythonLogits[i])));
  const difference = int8 ? { maxStepDifference: maxAbs, maxAbsLogitDifference }
    : { maxAbsLogitDifference, maxRelativeDifference: maxAbs / maxRef };
  const withinTolerance = int8 ? maxAbs <= INT8_STEP_TOLERANCE : maxAbs / maxRef <= FP32_RELATIVE_TOLERANCE;
  return { ...difference, withinTolerance };
}

class Demo {
  constructor(catalog) {
    if (catalog.schema !== CATALOG_SCHEMA) {
      throw new Error(`catalog.json has schema ${catalog.schema}, this page reads ${CATALOG_SCHEMA}`);
    }
    this.catalog = catalog;
    // the files this page runs, each with its variant (resolution, crop, labels)
    this.entries = catalog.variants.flatMap((variant) => variant.files.filter(pageRuns)
      .map((file) => ({ ...file, variant })));
    if (!this.entries.length) throw new Error('the catalog lists no model file this page runs (ONNX or TFLite)');
    this.labels = new Map();
    this.model = null;
    this.entry = null;
    this.latency = new LatencyWindow();
    // ?threads=N: fewer threads than the page may use (benchmarks compare 1 and all)
    this.threads = Math.min(Number(params.get('threads') ?? Infinity), threadCount());
  }

  async labelsOf(variant) {
    if (!this.labels.has(variant.labels)) {
      const response = await fetch(variant.labels);
      this.labels.set(variant.labels, (await response.text()).split('\n').filter((line) => line.length));
    }
    return this.labels.get(variant.labels);
  }

  async use(entry) {
    if (this.model) this.model.close();
    this.model = null;
    const started = performance.now();
    this.model = await loadModel(entry, { threads: this.threads });
    this.entry = entry;
    this.loadMs = performance.now() - started;
    this.latency = new LatencyWindow();
    return this.loadMs;
  }

  async classifyPixels(decoded) {
    const { entry } = this;
    const pixels = preprocess(decoded, entry.variant.resolution, entry.variant.preprocessing.cropFraction);
    const tensor = inputTensor(pixels, entry.input);
    const started = performance.now();
    const raw = await this.model.run(tensor);
    const ms = performance.now() - started;
    this.latency.add(ms);
    return { pixels, tensor, raw, ms, top: topK(dequantize(raw, entry.output), 5) };
  }

  // The golden images through the loaded model file, against Python's results.
  async selfTest(runs) {
    const { entry } = this;
    const images = [];
    for (const golden of this.catalog.golden.images) {
      const expected = this.catalog.golden.results.find((r) => r.key === entry.key && r.image === golden.name);
      const decoded = await decodeImage(new Blob([await fetchBytes(golden.file)]));
      const result = await this.classifyPixels(decoded);
      const pythonInput = asTyped(await fetchBytes(expected.inputTensor), entry.input.dtype);
      const pythonOutput = asTyped(await fetchBytes(expected.outputTensor), entry.output.dtype);
      const top5 = result.top.map((t) => t.index);
      const input = inputDifference(result.tensor, pythonInput, entry.input);
      const outputs = compareOutputs(entry, result.raw, pythonOutput);
      const top5Same = top5.join() === expected.top5.join();
      images.push({ image: golden.name, inputValuesDiffering: input.differing, firstInputDifference: input.first,
                    top5, pythonTop5: expected.top5, top5Same, ...outputs,
                    verdict: verdictOf(input, top5Same, outputs),
                    passed: input.differing === 0 && top5Same && outputs.withinTolerance });
    }
    const decoded = await decodeImage(new Blob([await fetchBytes(this.catalog.golden.images[0].file)]));
    const pixels = preprocess(decoded, entry.variant.resolution, entry.variant.preprocessing.cropFraction);
    const tensor = inputTensor(pixels, entry.input);
    const times = [];
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      await this.model.run(tensor);
      times.push(performance.now() - started);
    }
    const failed = images.find((i) => !i.passed);
    return { key: entry.key, runtime: entry.runtime, precision: entry.precision, threads: this.threads,
             weightsNote: weightsNote(entry.variant),
             passed: !failed, ...(failed ? { error: `${failed.image}: ${failed.verdict}` } : {}),
             loadMs: this.loadMs, medianMs: median(times),
             p90Ms: percentile(times, 0.9), runs, images };
  }
}

// ---- the interactive page --------------------------------------------------------------------------------

function showTop(labels, top) {
  const list = $('top5');
  list.replaceChildren(...top.map(({ index, probability }) => {
    const item = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = labels[index] ?? `class ${index}`;
    const value = document.createElement('span');
    value.className = 'probability';
    value.textContent = `${(probability * 100).toFixed(1)}%`;
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = `${Math.max(1, probability * 100)}%`;
    item.append(name, value, bar);
    return item;
  }));
}

function showPreview(pixels, resolution) {
  const canvas = $('preview');
  canvas.width = resolution;
  canvas.height = resolution;
  const rgba = new Uint8ClampedArray(resolution * resolution * 4);
  for (let i = 0; i < resolution * resolution; i++) {
    rgba.set(pixels.subarray(i * 3, i * 3 + 3), i * 4);
    rgba[i * 4 + 3] = 255;
  }
  canvas.getContext('2d').putImageData(new ImageData(rgba, resolution, resolution), 0, 0);
}

function showStats(demo) {
  const { p50, p90, runs } = demo.latency.summary();
  $('stats').textContent = `${demo.entry.runtime}, ${demo.threads} thread${demo.threads > 1 ? 's' : ''} · load ` +
    `${demo.loadMs.toFixed(0)} ms · latency p50 ${runs ? p50.toFixed(2) : '–'} ms, p90 ${runs ? p90.toFixed(2) : '–'} ms ` +
    `(last ${runs} runs)`;
}

function setStatus(text, kind = '') {
  $('status').textContent = text;
  $('status').className = `status ${kind}`;
}

async function classifyAndShow(demo, decoded) {
  const result = await demo.classifyPixels(decoded);
  showPreview(result.pixels, demo.entry.variant.resolution);
  showTop(await demo.labelsOf(demo.entry.variant), result.top);
  showStats(demo);
}

async function selectModel(demo, entry) {
  setStatus(`loading ${entry.key}…`);
  $('selftest-badge').textContent = 'self-test running…';
  $('selftest-badge').className = 'badge';
  await demo.use(entry);
  const report = await demo.selfTest(3);
  const passed = report.passed;
  $('selftest-badge').textContent = passed ? 'self-test passed: golden input bytes and top-5 = Python\'s'
    : `self-test FAILED: ${report.error}`;
  $('selftest-badge').className = `badge ${passed ? 'pass' : 'fail'}`;
  const golden = await decodeImage(new Blob([await fetchBytes(demo.catalog.golden.images[0].file)]));
  await classifyAndShow(demo, golden);
  setStatus(`${entry.variant.model} α${entry.variant.alpha} ${entry.variant.resolution}px · ${entry.precision}`
    + (weightsNote(entry.variant) ? ` · ${weightsNote(entry.variant)}` : ''));
}

let cameraLoop = null;

async function toggleCamera(demo) {
  const video = $('camera');
  if (cameraLoop) {
    cameraLoop.stop();
    cameraLoop = null;
    $('camera-button').textContent = 'Camera';
    return;
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    setStatus('The camera needs a secure page: open the https:// address that make web-serve prints.', 'error');
    return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: 'environment' } }, audio: false });
  video.srcObject = stream;
  await video.play();
  $('camera-button').textContent = 'Stop camera';
  let running = true;
  video.hidden = false;
  video.parentElement.classList.add('live');
  cameraLoop = {
    stop: () => {
      running = false;
      stream.getTracks().forEach((t) => t.stop());
      video.srcObject = null;
      video.hidden = true;
      video.parentElement.classList.remove('live');
    },
  };
  const step = async () => {
    if (!running) return;
    if (video.videoWidth) await classifyAndShow(demo, drawnPixels(video, video.videoWidth, video.videoHeight));
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

async function interactive(demo) {
  const select = $('model');
  demo.entries.forEach((entry, index) => {
    const option = document.createElement('option');
    option.value = String(index);
    const v = entry.variant;
    option.textContent = `${v.model} α${v.alpha} ${v.resolution}px · ${entry.precision} · ${entry.runtime}`;
    select.append(option);
  });
  const guard = (work) => work.catch((err) => setStatus(String(err?.message ?? err), 'error'));
  select.addEventListener('change', () => guard(selectModel(demo, demo.entries[Number(select.value)])));
  $('photo').addEventListener('change', (event) => {
    const file = event.target.files[0];
    if (file) guard(decodeImage(file).then((decoded) => classifyAndShow(demo, decoded)));
  });
  $('camera-button').addEventListener('click', () => guard(toggleCamera(demo)));
  await guard(selectModel(demo, demo.entries[0]));
}

// ---- ?selftest=1 --------------------------------------------------------------------------------------------

async function selfTestAll(demo) {
  const runs = Number(params.get('runs') ?? 20);
  const files = [];
  for (const entry of demo.entries) {
    try {
      await demo.use(entry);
      files.push(await demo.selfTest(runs));
    } catch (err) {
      files.push({ key: entry.key, runtime: entry.runtime, precision: entry.precision, passed: false,
                   error: String(err?.message ?? err) });
    }
  }
  return { schema: 'edgecnn.web-selftest/1', userAgent: navigator.userAgent, crossOriginIsolated,
           threads: demo.threads, passed: files.every((f) => f.passed), files };
}

async function main() {
  const out = $('selftest');
  try {
    const demo = new Demo(await fetchJson('catalog.json'));
    if (params.get('selftest') === '1') {
      out.textContent = JSON.stringify(await selfTestAll(demo), null, 1);
    } else {
      await interactive(demo);
      return;
    }
  } catch (err) {
    out.textContent = JSON.stringify({ schema: 'edgecnn.web-selftest/1', passed: false, error: String(err?.message ?? err) });
    setStatus(String(err?.message ?? err), 'error');
  }
  out.dataset.done = '1';
}

main();
