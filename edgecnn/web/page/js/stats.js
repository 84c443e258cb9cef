// Ranking and latency statistics: the same rules as Python's golden top-5 (edgecnn/apps/golden.py).

// Dequantized logits of a raw output (int8 codes or float).
export function dequantize(raw, spec) {
  if (spec.scale === undefined) return Float64Array.from(raw);
  return Float64Array.from(raw, (code) => Math.fround((code - spec.zeroPoint) * Math.fround(spec.scale)));
}

// Softmax in float64, then the k best, ties to the lower index.
export function topK(logits, k = 5) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exps = Float64Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  const order = Array.from(exps.keys()).sort((a, b) => exps[b] - exps[a] || a - b);
  return order.slice(0, Math.min(k, order.length)).map((index) => ({ index, probability: exps[index] / sum }));
}

export function percentile(values, p) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * p;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}

// The last `size` latencies of one model file.
export class LatencyWindow {
  constructor(size = 50) {
    this.size = size;
    this.values = [];
  }

  add(ms) {
    this.values.push(ms);
    if (this.values.length > this.size) this.values.shift();
  }

  summary() {
    return { runs: this.values.length, p50: percentile(this.values, 0.5), p90: percentile(this.values, 0.9) };
  }
}
