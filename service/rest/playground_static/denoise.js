// Denoising with a noise slider. The server prepares the input first (its resize and normalisation, answered
// with return_input=true); Gaussian noise is added here to that prepared image, which goes back at the model's
// size with normalize=none. Every image shown is one the server sent; PSNR is measured here against the
// prepared input.

import { postImage } from "./api.js";
import { $ } from "./dom.js";
import { addNoise, decodePng, psnr, toPng } from "./imaging.js";
import { runPanel, served } from "./panel.js";
import { blankPng, clearPrepared, describePrepared, seenInput, sendQuery, showPng } from "./prepared.js";
import { geometry, state, taskPath } from "./state.js";

const DEFAULT_SIGMA = 0.3;
const JSON_TYPE = "application/json";
const FIGURES = ["dn-original", "dn-noisy", "dn-output"];

export function clearDenoise() {
  for (const id of FIGURES) blankPng($(id));
  for (const id of ["psnr-noisy", "psnr-denoised"]) $(id).textContent = "";
  clearPrepared($("denoise-prepared"));
}

/** The slider starts at the noise the model was trained with (model.json's recipe), else 0.3. */
export function configureDenoise() {
  const sigma = state.meta.spec.recipe?.noise_sigma || DEFAULT_SIGMA;
  $("sigma").value = String(sigma);
  $("sigma-value").textContent = Number(sigma).toFixed(2);
}

function showPsnr(id, value) {
  const node = $(id);
  node.dataset.psnr = String(value);
  node.textContent = Number.isFinite(value) ? `PSNR ${value.toFixed(2)} dB` : "PSNR ∞ (identical)";
}

/** The server's preparation of the input, once per input (the slider only re-noises it). */
async function prepare(input) {
  const response = await postImage(`${taskPath("denoise")}${sendQuery(input)}`, input.blob, JSON_TYPE);
  const result = await response.json();
  const base64 = seenInput(result);
  return { base64, image: await decodePng(base64), prepared: result.prepared };
}

function prepared(input) {
  if (!input.clean) {
    input.clean = prepare(input);
    input.clean.catch(() => {
      input.clean = null; // the next run asks again
    });
  }
  return input.clean;
}

export function runDenoise() {
  return runPanel("denoise", "Denoising…", clearDenoise, async (input, current) => {
    const { grayscale } = geometry();
    const clean = await prepared(input);
    if (!current()) return "";
    showPng($("dn-original"), clean.base64, "The input as the server prepared it");
    describePrepared($("denoise-prepared"), clean.prepared, input);
    const noisy = addNoise(clean.image, Number($("sigma").value), grayscale);
    for (const id of ["dn-noisy", "dn-output"]) $(id).classList.add("pending");
    try {
      // already the model's size and prepared: no normalisation again (resizing to the same size changes nothing)
      const path = `${taskPath("denoise")}?normalize=none&return_input=true`;
      const result = await (await postImage(path, await toPng(noisy), JSON_TYPE)).json();
      const seen = seenInput(result);
      const output = result.results[0].image;
      const [seenPixels, outputPixels] = await Promise.all([decodePng(seen), decodePng(output)]);
      if (current()) {
        showPng($("dn-noisy"), seen, "The noisy input the model saw");
        showPng($("dn-output"), output, "The model's denoised output");
        showPsnr("psnr-noisy", psnr(clean.image, seenPixels, grayscale));
        showPsnr("psnr-denoised", psnr(clean.image, outputPixels, grayscale));
      }
      return served(result.model);
    } finally {
      if (current()) for (const id of ["dn-noisy", "dn-output"]) $(id).classList.remove("pending");
    }
  });
}

export function wireDenoiseControls() {
  let timer = null;
  $("sigma").addEventListener("input", () => {
    $("sigma-value").textContent = Number($("sigma").value).toFixed(2);
    clearTimeout(timer);
    timer = setTimeout(() => runDenoise(), 150);
  });
  $("renoise").addEventListener("click", () => runDenoise());
}
