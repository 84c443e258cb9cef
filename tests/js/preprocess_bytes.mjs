// The JavaScript side of tests/test_preprocess_languages.py, under Node: the web page's own preprocess.js on
// the images of a file (little-endian int32 width, int32 height, float64
// crop fraction, then RGB bytes row by row); for each image and
// each resolution from the first to the last, the sha256 of the preprocessed bytes, one hex line each.
// usage: node preprocess_bytes.mjs PREPROCESS_JS IMAGES FIRST LAST
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [modulePath, imagesPath, first, last] = process.argv.slice(2);
const { preprocess } = await import(pathToFileURL(modulePath).href);
const data = readFileSync(imagesPath);
const lines = [];
for (let offset = 0; offset < data.length;) {
  const width = data.readInt32LE(offset);
  const height = data.readInt32LE(offset + 4);
  const cropFraction = data.readDoubleLE(offset + 8);
  offset += 16;
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[4 * i] = data[offset + 3 * i];
    rgba[4 * i + 1] = data[offset + 3 * i + 1];
    rgba[4 * i + 2] = data[offset + 3 * i + 2];
    rgba[4 * i + 3] = 255;
  }
  offset += width * height * 3;
  for (let resolution = Number(first); resolution <= Number(last); resolution++) {
    const pixels = preprocess({ rgba, width, height }, resolution, cropFraction);
    lines.push(createHash('sha256').update(pixels).digest('hex'));
  }
}
process.stdout.write(lines.join('\n') + '\n');
