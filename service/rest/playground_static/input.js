// The input: the drawing pad, an uploaded file or a sample. Each is sent to the server as it is: the pad as a
// PNG at its own size, a file as its original bytes, a sample as the PNG the page drew. Nothing is resized,
// converted or centred here; the server prepares every image and answers with what the model saw.

import { $, bytes, el, prettyName } from "./dom.js";
import { DrawingPad } from "./drawpad.js";
import { DIGIT_SAMPLES, SCENE_SAMPLES, digitSample, sceneSample } from "./samples.js";
import { geometry, state } from "./state.js";

let pad;
let onInput = () => {};
let inputUrl = null; // the object URL of the current input's bytes, revoked when the next one comes

function typeName(blob) {
  const subtype = (blob.type || "").replace(/^image\//, "");
  return subtype && subtype !== blob.type ? subtype.replace(/^x-/, "").toUpperCase() : "file";
}

/**
 * The input's own bytes on an <img> (the browser decodes them only to show them); small images are upscaled
 * crisply. Resolves with the natural size, or null when the browser cannot display the file.
 */
export function showOriginal(img, input) {
  return new Promise((resolve) => {
    img.onload = () => {
      img.classList.toggle("upscaled", img.naturalWidth < img.clientWidth);
      resolve({ width: img.naturalWidth, height: img.naturalHeight });
    };
    img.onerror = () => {
      img.removeAttribute("src");
      img.alt = "";
      resolve(null);
    };
    img.alt = `${input.label}, as sent`;
    img.src = input.url;
  });
}

function setInput({ label, kind, blob }) {
  const resize = kind === "upload" ? $("resize-select").value || null : null;
  if (inputUrl) URL.revokeObjectURL(inputUrl);
  inputUrl = URL.createObjectURL(blob);
  const input = { label, kind, blob, url: inputUrl, resize };
  state.input = input;
  $("input-label").textContent = label;
  const sent = `${typeName(blob)}, ${bytes(blob.size)}, sent as is`;
  $("input-size").textContent = sent;
  showOriginal($("input-preview"), input).then((size) => {
    if (state.input !== input) return;
    $("input-size").textContent = size
      ? `${size.width}×${size.height} ${sent}`
      : `${sent} (the browser cannot display this file)`;
  });
  onInput();
}

export function configureInput(meta) {
  const { width, height, grayscale, resize, normalize } = geometry();
  const digits = normalize === "digit";
  $("workbench").hidden = false;
  $("pad-block").hidden = !grayscale;
  pad.clear();
  $("pad-note").textContent = digits ? "Sent as drawn; the server centres it" : "Sent as drawn";
  const samples = grayscale
    ? DIGIT_SAMPLES.map((d) => [`Digit ${d}`, () => digitSample(d)])
    : SCENE_SAMPLES.map((s) => [prettyName(s), () => sceneSample(s)]);
  $("sample-buttons").replaceChildren(
    ...samples.map(([label, make]) => {
      const button = el("button", { type: "button", class: "chip-button", text: label });
      button.addEventListener("click", async () =>
        setInput({ label: `Sample: ${label.toLowerCase()}`, kind: "sample", blob: await make() }),
      );
      return button;
    }),
  );
  $("file-input").value = "";
  const select = $("resize-select");
  select.value = "";
  select.options[0].textContent = `model default (${resize})`;
  select.disabled = digits; // digit normalisation fits the ink itself and ignores the resize mode
  $("resize-hint").textContent = digits
    ? "Not used: this model's digit normalisation fits the ink itself."
    : `How the server fits a non-square upload into ${width}×${height}.`;
  const preview = $("input-preview");
  preview.removeAttribute("src");
  preview.alt = "";
  $("input-label").textContent = "No input yet";
  $("input-size").textContent =
    `${meta.name} takes ${width}×${height} ${grayscale ? "grayscale" : "RGB"}; the server prepares what you send`;
}

function setInputFile(file) {
  if (file && state.meta) setInput({ label: file.name, kind: "upload", blob: file });
}

/** `changed()` runs for every new input (state.input set). */
export function wireInput(changed) {
  onInput = changed;
  pad = new DrawingPad($("pad"), async () => setInput({ label: "Your drawing", kind: "drawing", blob: await pad.toPng() }));
  $("pad-clear").addEventListener("click", () => pad.clear());
  $("file-input").addEventListener("change", (event) => setInputFile(event.target.files[0]));
  $("resize-select").addEventListener("change", () => {
    if (state.input?.kind === "upload") setInput(state.input);
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    setInputFile(event.dataTransfer.files[0]);
  });
}
