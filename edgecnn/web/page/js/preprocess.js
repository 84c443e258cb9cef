// From a decoded image to the exact tensor a model file takes: edgecnn/data/preprocess.py, re-implemented.
// Golden tests in tests/test_web_demo.py prove it equal to Python's, byte for byte (int8 codes) and bit for
// bit (float), for two images of different aspect ratios.

// Decoded RGBA pixels of an image file. `colorSpaceConversion: 'none'` matters: with the default the browser
// applies the file's colour profile (an Adobe RGB JPEG came out with 89% of its bytes changed) while PIL,
// which computes Python's tensor, ignores it.
export async function decodeImage(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  try {
    return drawnPixels(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

// RGBA pixels of anything a canvas can draw (an ImageBitmap, a playing <video>).
export function drawnPixels(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(source, 0, 0);
  return { rgba: context.getImageData(0, 0, width, height).data, width, height };
}

// Triangle-filter weights whose support widens with the downscale factor, sampled at pixel centres and
// normalised per output pixel (PIL's BILINEAR filter): rows[o] = {first, weights}.
function resizeWeights(inSize, outSize) {
  const scale = inSize / outSize;
  const support = Math.max(scale, 1.0);
  const rows = [];
  for (let o = 0; o < outSize; o++) {
    const centre = (o + 0.5) * scale;
    const all = new Float64Array(inSize);
    let sum = 0;
    for (let i = 0; i < inSize; i++) {
      all[i] = Math.max(0, 1 - Math.abs(i + 0.5 - centre) / support);
      sum += all[i];
    }
    let first = 0;
    while (first < inSize && all[first] === 0) first++;
    let last = inSize - 1;
    while (last > first && all[last] === 0) last--;
    rows.push({ first, weights: all.slice(first, last + 1).map((w) => w / sum) });
  }
  return rows;
}

// Round half to even, as numpy's rint.
function roundHalfEven(value) {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// The central square (side = floor(shorter side x cropFraction)) resized to resolution x resolution:
// Uint8Array (R, R, 3) RGB, the model's input before layout.
export function preprocess({ rgba, width, height }, resolution, cropFraction) {
  const side = Math.max(1, Math.floor(Math.min(width, height) * cropFraction));
  const left = Math.floor((width - side) / 2);
  const top = Math.floor((height - side) / 2);
  const weights = resizeWeights(side, resolution);
  // vertical pass first, as Python's: (R, side, 3) float64
  const vertical = new Float64Array(resolution * side * 3);
  for (let r = 0; r < resolution; r++) {
    const { first, weights: w } = weights[r];
    for (let k = 0; k < w.length; k++) {
      const row = (top + first + k) * width + left;
      for (let s = 0; s < side; s++) {
        const pixel = (row + s) * 4;
        const out = (r * side + s) * 3;
        vertical[out] += w[k] * rgba[pixel];
        vertical[out + 1] += w[k] * rgba[pixel + 1];
        vertical[out + 2] += w[k] * rgba[pixel + 2];
      }
    }
  }
  const pixels = new Uint8Array(resolution * resolution * 3);
  for (let r = 0; r < resolution; r++) {
    for (let q = 0; q < resolution; q++) {
      const { first, weights: w } = weights[q];
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let k = 0; k < w.length; k++) sum += w[k] * vertical[(r * side + first + k) * 3 + c];
        pixels[(r * resolution + q) * 3 + c] = Math.min(255, Math.max(0, roundHalfEven(sum)));
      }
    }
  }
  return pixels;
}

// (R, R, 3) RGB -> the tensor described by a catalog input spec: raw 0..255 floats for float graphs (the
// normalisation is inside them), int8 codes through the manifest's per-channel lookup table for int8 ones;
// NHWC or NCHW.
export function inputTensor(pixels, spec) {
  const count = pixels.length / 3;
  const nchw = spec.layout === 'NCHW';
  let tensor;
  if (spec.dtype === 'int8') {
    const table = spec.lookupTable;
    tensor = new Int8Array(pixels.length);
    for (let i = 0; i < count; i++) {
      for (let c = 0; c < 3; c++) tensor[nchw ? c * count + i : i * 3 + c] = table[c][pixels[i * 3 + c]];
    }
  } else if (spec.dtype === 'float32') {
    tensor = new Float32Array(pixels.length);
    for (let i = 0; i < count; i++) {
      for (let c = 0; c < 3; c++) tensor[nchw ? c * count + i : i * 3 + c] = pixels[i * 3 + c];
    }
  } else {
    throw new Error(`input dtype ${spec.dtype} is not one this page feeds`);
  }
  return tensor;
}
