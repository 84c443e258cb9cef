// From a decoded image to the exact tensor a model file takes: edgecnn/data/preprocess.py, re-implemented.
// tests/test_preprocess_languages.py holds it to Python's and Java's bytes on random images of every shape
// at every resolution; the page's self-test checks it again in the browser.

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

const COEFFICIENT_BITS = 20;

// a / b for non-negative integer Numbers below 2^53, exactly: the float quotient, corrected by one if the
// division rounded across an integer.
function integerDivide(a, b) {
  let quotient = Math.floor(a / b);
  if (quotient * b > a) quotient -= 1;
  else if ((quotient + 1) * b <= a) quotient += 1;
  return quotient;
}

// Fixed-point triangle-filter coefficients (the rule in edgecnn/data/preprocess.py): with M = max(in, out),
// output o weighs input i by u = max(0, 2M - |(2i + 1) out - (2o + 1) in|), and q = round half up
// (u x 2^20 / sum of u). rows[o] = {first, coefficients}: the non-zero ones, from input index first on.
export function resizeCoefficients(inSize, outSize) {
  const longer = Math.max(inSize, outSize);
  const rows = [];
  for (let o = 0; o < outSize; o++) {
    const u = new Array(inSize);
    let total = 0;
    let first = inSize;
    let last = -1;
    for (let i = 0; i < inSize; i++) {
      u[i] = Math.max(0, 2 * longer - Math.abs((2 * i + 1) * outSize - (2 * o + 1) * inSize));
      total += u[i];
      if (u[i] > 0) {
        first = Math.min(first, i);
        last = i;
      }
    }
    const scaled = 2 ** (COEFFICIENT_BITS + 1);
    const coefficients = u.slice(first, last + 1).map((w) => integerDivide(w * scaled + total, 2 * total));
    rows.push({ first, coefficients });
  }
  return rows;
}

// The central square (side = floor(shorter side x cropFraction)) resized to resolution x resolution:
// Uint8Array (R, R, 3) RGB, the model's input before layout. Every value below is an integer under 2^53,
// so Numbers carry it exactly and the bytes equal Python's and Java's.
export function preprocess({ rgba, width, height }, resolution, cropFraction) {
  const side = Math.max(1, Math.floor(Math.min(width, height) * cropFraction));
  const left = Math.floor((width - side) / 2);
  const top = Math.floor((height - side) / 2);
  const taps = resizeCoefficients(side, resolution);
  // rows first: (R, side, 3) integer sums
  const vertical = new Float64Array(resolution * side * 3);
  for (let r = 0; r < resolution; r++) {
    const { first, coefficients: q } = taps[r];
    for (let k = 0; k < q.length; k++) {
      const row = (top + first + k) * width + left;
      for (let s = 0; s < side; s++) {
        const pixel = (row + s) * 4;
        const out = (r * side + s) * 3;
        vertical[out] += q[k] * rgba[pixel];
        vertical[out + 1] += q[k] * rgba[pixel + 1];
        vertical[out + 2] += q[k] * rgba[pixel + 2];
      }
    }
  }
  const half = 2 ** (2 * COEFFICIENT_BITS - 1);
  const unit = 2 ** (2 * COEFFICIENT_BITS);
  const pixels = new Uint8Array(resolution * resolution * 3);
  for (let r = 0; r < resolution; r++) {
    for (let p = 0; p < resolution; p++) {
      const { first, coefficients: q } = taps[p];
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let k = 0; k < q.length; k++) sum += q[k] * vertical[(r * side + first + k) * 3 + c];
        pixels[(r * resolution + p) * 3 + c] = Math.min(255, Math.max(0, Math.floor((sum + half) / unit)));
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
