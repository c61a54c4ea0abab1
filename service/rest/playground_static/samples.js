// Built-in samples, drawn here (no dataset files shipped) and sent as PNGs at their own size, like any upload:
// the server resizes and normalises them as it does every image.

import { canvasPng, makeCanvas } from "./imaging.js";

export const DIGIT_SAMPLES = [0, 2, 3, 5, 7, 9];
export const SCENE_SAMPLES = ["landscape", "shapes"];

const DIGIT_SIDE = 280; // the drawing pad's size
const SCENE_SIDE = 128; // on a 32-unit grid, 4 px a unit

/** A digit glyph, white on black as the pad draws, at the pad's size (not centred or scaled for MNIST). */
export function digitSample(digit) {
  const canvas = makeCanvas(DIGIT_SIDE, DIGIT_SIDE);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, DIGIT_SIDE, DIGIT_SIDE);
  ctx.fillStyle = "#fff";
  ctx.font = "bold 220px 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(String(digit), DIGIT_SIDE / 2, DIGIT_SIDE / 2 + 10);
  return canvasPng(canvas);
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

/** A small colour scene: a landscape or three shapes. */
export function sceneSample(kind) {
  const side = SCENE_SIDE;
  const s = side / 32;
  const canvas = makeCanvas(side, side);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#f1ece2";
  ctx.fillRect(0, 0, side, side);
  if (kind === "landscape") {
    const sky = ctx.createLinearGradient(0, 0, 0, side);
    sky.addColorStop(0, "#3b82c4");
    sky.addColorStop(0.6, "#bfe0f5");
    ctx.fillStyle = sky;
    ctx.fillRect(0, 0, side, side);
    fillCircle(ctx, "#f6c945", 23, 9, 4, s);
    fillPath(ctx, "#3f7d3a", [[0, 22], [9, 13], [18, 21], [26, 15], [32, 20], [32, 32], [0, 32]], s);
  } else {
    ctx.fillStyle = "#d2483c";
    ctx.fillRect(3 * s, 4 * s, 12 * s, 12 * s);
    fillCircle(ctx, "#2f6fb3", 22, 21, 7, s);
    fillPath(ctx, "#2b9a6b", [[5, 29], [11, 19], [17, 29]], s);
  }
  return canvasPng(canvas);
}
