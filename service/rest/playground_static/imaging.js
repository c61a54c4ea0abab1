// Pixel work left in the browser: decoding the server's PNGs, Gaussian noise for the denoise demo, PSNR, colour-
// mapping the server's anomaly map and, for models without one, the squared-error heatmap. Nothing here prepares
// an image for a model: the server does that (resize, digit normalisation) and answers with what the model saw. Images are ImageData (RGBA, alpha 255); the server's
// grayscale PNGs decode to R = G = B.

export function makeCanvas(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function context(canvas) {
  return canvas.getContext("2d", { willReadFrequently: true });
}

export const pngDataUrl = (base64) => `data:image/png;base64,${base64}`;

export function base64ToBlob(text, type = "image/png") {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

/** A PNG from the server (base64 or Blob) -> its pixels at its own size, without colour management. */
export async function decodePng(png) {
  const blob = typeof png === "string" ? base64ToBlob(png) : png;
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new Error("Could not read the server's image: it is not a PNG the browser can open.");
  }
  const ctx = context(makeCanvas(bitmap.width, bitmap.height));
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return ctx.getImageData(0, 0, ctx.canvas.width, ctx.canvas.height);
}

function gaussian() {
  // Box-Muller; 1 - random() keeps the log argument in (0, 1]
  return Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
}

/** Gaussian noise of std `sigma` on pixels in [0, 1], clipped and quantised (one draw per gray pixel). */
export function addNoise(image, sigma, grayscale) {
  const out = new ImageData(new Uint8ClampedArray(image.data), image.width, image.height);
  const d = out.data;
  for (let i = 0; i < d.length; i += 4) {
    if (grayscale) {
      const v = Math.round(d[i] + 255 * sigma * gaussian());
      d[i] = d[i + 1] = d[i + 2] = v; // Uint8ClampedArray clips to 0..255
    } else {
      for (let c = 0; c < 3; c++) d[i + c] = Math.round(d[i + c] + 255 * sigma * gaussian());
    }
  }
  return out;
}

/** Mean squared error per pixel in [0, 1] units, over the model's channels (1 for grayscale, else 3). */
function squaredErrors(a, b, grayscale) {
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(`images of different sizes: ${a.width}×${a.height} and ${b.width}×${b.height}`);
  }
  const channels = grayscale ? 1 : 3;
  const errors = new Float32Array(a.width * a.height);
  for (let p = 0; p < errors.length; p++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) {
      const diff = (a.data[p * 4 + c] - b.data[p * 4 + c]) / 255;
      sum += diff * diff;
    }
    errors[p] = sum / channels;
  }
  return errors;
}

function mean(values) {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** PSNR in dB of `test` against `reference` (peak 1.0); Infinity for identical images. */
export function psnr(reference, test, grayscale) {
  const mse = mean(squaredErrors(reference, test, grayscale));
  return mse === 0 ? Infinity : 10 * Math.log10(1 / mse);
}

// A perceptually ordered dark-to-bright map (magma-like): black, purple, red, orange, pale yellow.
const STOPS = [
  [0.0, [0, 0, 4]],
  [0.25, [80, 18, 123]],
  [0.5, [183, 55, 121]],
  [0.75, [252, 137, 97]],
  [1.0, [252, 253, 191]],
];

function colour(t) {
  for (let i = 1; i < STOPS.length; i++) {
    const [t1, c1] = STOPS[i];
    if (t <= t1) {
      const [t0, c0] = STOPS[i - 1];
      const f = (t - t0) / (t1 - t0);
      return c0.map((v, k) => Math.round(v + f * (c1[k] - v)));
    }
  }
  return STOPS[STOPS.length - 1][1];
}

/** Values >= 0 (row-major, width × height) colour-mapped with 0 -> black and the largest -> pale yellow. */
function heatImage(values, width, height) {
  const max = values.reduce((m, v) => Math.max(m, v), 0);
  const image = new ImageData(width, height);
  values.forEach((v, p) => {
    const [r, g, b] = colour(max > 0 ? Math.max(0, v) / max : 0);
    image.data.set([r, g, b, 255], p * 4);
  });
  return { image, max };
}

/**
 * The server's per-pixel anomaly map (`anomaly_map`: H rows of W numbers, as the REST API answers it) colour-mapped
 * like the fallback heatmap. Only drawn: the numbers (and so the legend's largest one) are the server's.
 */
export function anomalyMapImage(rows, width, height) {
  if (!Array.isArray(rows) || rows.length !== height || rows.some((row) => !Array.isArray(row) || row.length !== width)) {
    throw new Error(`The server's anomaly map is not ${height} rows of ${width} values.`);
  }
  return heatImage(rows.flat(), width, height);
}

/** Fallback for models without an anomaly_map output: per-pixel squared error of two server images, computed here. */
export function errorHeatmap(input, output, grayscale) {
  return heatImage(squaredErrors(input, output, grayscale), input.width, input.height);
}

/** Show ImageData on a canvas at its own resolution (CSS scales it up, pixelated). */
export function paint(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  context(canvas).putImageData(image, 0, 0);
}

export function canvasPng(canvas) {
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("could not encode PNG"))), "image/png"),
  );
}

export function toPng(image) {
  const canvas = makeCanvas(image.width, image.height);
  context(canvas).putImageData(image, 0, 0);
  return canvasPng(canvas);
}
