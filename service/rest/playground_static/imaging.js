// Pixel work done in the browser: fit an image to the model's input, MNIST-style centring of a drawing,
// Gaussian noise, PSNR and the squared-error heatmap. Images are ImageData (RGBA, alpha always 255);
// grayscale images keep R = G = B, so the server's luma conversion returns the same values.

const MNIST_SIZE = 28;
const MNIST_BOX = 20; // MNIST digits are scaled into a 20x20 box, then centred by centre of mass in 28x28

export function makeCanvas(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function context(canvas) {
  return canvas.getContext("2d", { willReadFrequently: true });
}

/** Decode a file or blob without colour management, so pixel values match what the server decodes. */
export async function decodeImage(blob, what = "the file") {
  try {
    return await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new Error(`Could not read ${what} as an image: it is not a PNG, JPEG, BMP or GIF file the browser can open.`);
  }
}

function toGray(image) {
  const d = image.data;
  for (let i = 0; i < d.length; i += 4) {
    const y = Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
    d[i] = d[i + 1] = d[i + 2] = y;
  }
  return image;
}

/** Pixels of a width x height canvas filled with `background`, after `draw(ctx)` with smooth scaling. */
function render(width, height, background, draw) {
  const ctx = context(makeCanvas(width, height));
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, width, height);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  draw(ctx);
  return ctx.getImageData(0, 0, width, height);
}

/** The source stretched to width x height on white (the server's rules: no crop, alpha onto white). */
export function fitToModel(source, width, height, grayscale) {
  const image = render(width, height, "#fff", (ctx) => ctx.drawImage(source, 0, 0, width, height));
  return grayscale ? toGray(image) : image;
}

function inkBounds(image) {
  const { width, height, data } = image;
  let left = width;
  let top = height;
  let right = -1;
  let bottom = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4] > 16) {
        left = Math.min(left, x);
        right = Math.max(right, x);
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
      }
    }
  }
  return right < 0 ? null : { left, top, width: right - left + 1, height: bottom - top + 1 };
}

function centreOfMass(image) {
  const { width, height, data } = image;
  let total = 0;
  let sx = 0;
  let sy = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = data[(y * width + x) * 4];
      total += v;
      sx += v * (x + 0.5);
      sy += v * (y + 0.5);
    }
  }
  return total ? { x: sx / total, y: sy / total } : { x: width / 2, y: height / 2 };
}

/**
 * MNIST preprocessing of a white-on-black drawing: crop to the ink, scale the longer side to 20 px keeping
 * the aspect ratio, then place it in 28x28 with its centre of mass at the centre. Returns null when empty.
 */
export function mnistCentre(source) {
  const full = context(source).getImageData(0, 0, source.width, source.height);
  const box = inkBounds(full);
  if (!box) return null;
  const scale = MNIST_BOX / Math.max(box.width, box.height);
  const w = box.width * scale;
  const h = box.height * scale;
  const draw = (dx, dy) =>
    toGray(
      render(MNIST_SIZE, MNIST_SIZE, "#000", (ctx) =>
        ctx.drawImage(source, box.left, box.top, box.width, box.height, dx, dy, w, h),
      ),
    );
  const x0 = (MNIST_SIZE - w) / 2;
  const y0 = (MNIST_SIZE - h) / 2;
  const centre = centreOfMass(draw(x0, y0));
  return draw(x0 + Math.round(MNIST_SIZE / 2 - centre.x), y0 + Math.round(MNIST_SIZE / 2 - centre.y));
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

/** Per-pixel squared error, colour-mapped with 0 -> black and the largest error -> pale yellow. */
export function errorHeatmap(input, output, grayscale) {
  const errors = squaredErrors(input, output, grayscale);
  const max = errors.reduce((m, v) => Math.max(m, v), 0);
  const image = new ImageData(input.width, input.height);
  errors.forEach((e, p) => {
    const [r, g, b] = colour(max > 0 ? e / max : 0);
    image.data.set([r, g, b, 255], p * 4);
  });
  return { image, max, mse: mean(errors) };
}

/** Show ImageData on a canvas at its own resolution (CSS scales it up, pixelated). */
export function paint(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  context(canvas).putImageData(image, 0, 0);
}

export function toPng(image) {
  const canvas = makeCanvas(image.width, image.height);
  context(canvas).putImageData(image, 0, 0);
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("could not encode PNG"))), "image/png"),
  );
}

/** A PNG from the server -> ImageData at the model's size, colour as the model sees it. */
export async function fromPng(blob, width, height, grayscale) {
  const bitmap = await decodeImage(blob, "the server's image");
  return fitToModel(bitmap, width, height, grayscale);
}

/** A centred digit glyph as a white-on-black 28x28 sample, MNIST-preprocessed like a drawing. */
export function digitSample(digit) {
  const canvas = makeCanvas(280, 280);
  const ctx = context(canvas);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, 280, 280);
  ctx.fillStyle = "#fff";
  ctx.font = "bold 220px 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(String(digit), 140, 150);
  return mnistCentre(canvas);
}

function fillPath(ctx, colour, points, scale) {
  ctx.fillStyle = colour;
  ctx.beginPath();
  for (const [x, y] of points) ctx.lineTo(x * scale, y * scale);
  ctx.fill();
}

function fillCircle(ctx, colour, x, y, r, scale) {
  ctx.fillStyle = colour;
  ctx.beginPath();
  ctx.arc(x * scale, y * scale, r * scale, 0, 2 * Math.PI);
  ctx.fill();
}

/** Small colour scenes drawn here (no dataset files shipped), on a 32-unit grid scaled to the model's size. */
export function sceneSample(kind, width, height) {
  const s = width / 32;
  return render(width, height, "#f1ece2", (ctx) => {
    if (kind === "landscape") {
      const sky = ctx.createLinearGradient(0, 0, 0, height);
      sky.addColorStop(0, "#3b82c4");
      sky.addColorStop(0.6, "#bfe0f5");
      ctx.fillStyle = sky;
      ctx.fillRect(0, 0, width, height);
      fillCircle(ctx, "#f6c945", 23, 9, 4, s);
      fillPath(ctx, "#3f7d3a", [[0, 22], [9, 13], [18, 21], [26, 15], [32, 20], [32, 32], [0, 32]], s);
    } else {
      ctx.fillStyle = "#d2483c";
      ctx.fillRect(3 * s, 4 * s, 12 * s, 12 * s);
      fillCircle(ctx, "#2f6fb3", 22, 21, 7, s);
      fillPath(ctx, "#2b9a6b", [[5, 29], [11, 19], [17, 29]], s);
    }
  });
}
