// "What the model saw": the server prepares every encoded image (its resize mode, digit normalisation) and,
// asked with return_input=true, answers with the prepared input as a base64 PNG in `prepared.inputs`. The page
// shows those bytes as they came and describes the preprocessing the answer reports; it never redoes it.

import { el } from "./dom.js";
import { pngDataUrl } from "./imaging.js";
import { geometry } from "./state.js";

const NORMALIZE_WORDS = { digit: "digit normalisation", none: "no normalisation" };
const RESIZE_DETAIL = {
  stretch: "scaled to the model's size, the aspect ratio not kept",
  "center-crop": "cropped around the centre to the model's aspect ratio, then scaled",
  letterbox: "scaled whole to fit, the borders filled by reflection",
};
const DIGIT_DETAIL =
  "a light background inverted, the ink cropped, fitted into 20×20 and centred by mass (the resize mode is not used)";

/** e.g. "no normalisation, center-crop": what model.json declares or a response's `prepared` reports. Digit
 * normalisation does its own geometry (the server reports resize "none"), so it is named alone. */
export function preprocessingWords({ resize, normalize }) {
  if (normalize === "digit" || resize === "none") return NORMALIZE_WORDS[normalize] ?? normalize;
  return `${NORMALIZE_WORDS[normalize] ?? normalize}, ${resize}`;
}

/** The query of a task call for `input`: always return_input, and the resize override chosen for uploads. */
export function sendQuery(input, extra = {}) {
  const params = new URLSearchParams({ ...extra, return_input: "true" });
  if (input.resize) params.set("resize", input.resize);
  return `?${params}`;
}

/** The preprocessing a response reports, in words, on `node` (and as data-resize / data-normalize). */
export function describePrepared(node, prepared, input) {
  const { width, height, grayscale, resize: modelResize } = geometry();
  node.dataset.resize = prepared.resize;
  node.dataset.normalize = prepared.normalize;
  const chosen = input.resize ? ` (chosen here; the model's default is ${modelResize})` : "";
  const detail = prepared.normalize === "digit" ? DIGIT_DETAIL : (RESIZE_DETAIL[prepared.resize] ?? "");
  node.replaceChildren(
    el("strong", { text: preprocessingWords(prepared) }),
    `${chosen} → ${width}×${height} ${grayscale ? "grayscale" : "RGB"}`,
    el("span", { class: "prepared-detail", text: detail }),
  );
}

export function clearPrepared(node) {
  node.replaceChildren();
  delete node.dataset.resize;
  delete node.dataset.normalize;
}

/** The server's PNG (base64) on an <img>, as its own data URL; CSS upscales it crisply. */
export function showPng(img, base64, alt) {
  img.src = pngDataUrl(base64);
  img.alt = alt;
}

export function blankPng(img) {
  img.removeAttribute("src");
  img.alt = "";
}

/** The input the model saw, from a JSON task answer asked with return_input=true. */
export function seenInput(result) {
  const base64 = result.prepared?.inputs?.[0];
  if (!base64) throw new Error("The server did not send back the prepared input (return_input=true).");
  return base64;
}
