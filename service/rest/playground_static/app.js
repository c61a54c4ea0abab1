// The playground page: model picker, one input (drawing, upload, sample) and the panel of the model's task.
// Everything goes through the public REST API (api.js); pixels are prepared and measured in imaging.js.

import { currentApiKey, describe, getJson, modelPath, postImage, request, setApiKey, setKeyPrompt } from "./api.js";
import { DrawingPad } from "./drawpad.js";
import * as img from "./imaging.js";

const $ = (id) => document.getElementById(id);
const TOP_K = 5;
const DIGIT_SAMPLES = [0, 2, 3, 5, 7, 9];
const SCENE_SAMPLES = ["landscape", "shapes"];
const DEFAULT_SIGMA = 0.3;

const state = {
  meta: null, // GET /v1/models/{name}/versions/{v}: runtime facts + model.json as `spec`
  input: null, // { label, file: Blob | null, image: ImageData | null (model size), decodeError }
  artifactUrls: [],
};

// ---- small DOM helpers -------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function showMessage(id, message) {
  const box = $(id);
  box.textContent = message;
  box.hidden = !message;
}

const showBanner = (message) => showMessage("banner", message);
const showPanelError = (task, message) => showMessage(`${task}-error`, message);
const setStatus = (task, text) => ($(`${task}-status`).textContent = text);

// Responses that arrive after the input or model changed are dropped: only the latest call per key counts.
const tickets = {};
function ticket(key) {
  const mine = (tickets[key] ?? 0) + 1;
  tickets[key] = mine;
  return () => tickets[key] === mine;
}

function geometry() {
  const pre = state.meta.spec.preprocessing;
  return { width: pre.width, height: pre.height, grayscale: pre.color_mode === "grayscale" };
}

function percent(p) {
  return p > 0 && p < 0.0005 ? "<0.1%" : `${(100 * p).toFixed(1)}%`;
}

function number(value, digits = 4) {
  return Number(value).toPrecision(digits).replace(/\.?0+(e|$)/, "$1");
}

function formatMetric(name, value) {
  const key = name.toLowerCase();
  if (/psnr/.test(key)) return `${value.toFixed(2)} dB`;
  if (/(accuracy|precision|recall|f1|auc|rate|top)/.test(key) && value >= 0 && value <= 1) return percent(value);
  return number(value);
}

function prettyName(file) {
  const stem = file.replace(/\.[^.]+$/, "").replace(/[_-]+/g, " ");
  return stem.charAt(0).toUpperCase() + stem.slice(1);
}

function elapsed(start) {
  return `${Math.round(performance.now() - start)} ms`;
}

// ---- API key ------------------------------------------------------------------------------------------------

let resolveKey = null;

function openKeyDialog(reason) {
  $("key-reason").textContent = reason;
  $("key-input").value = currentApiKey();
  $("key-dialog").showModal();
  $("key-input").focus();
  return new Promise((resolve) => {
    resolveKey = resolve;
  });
}

function closeKeyDialog(key) {
  if ($("key-dialog").open) $("key-dialog").close();
  resolveKey?.(key);
  resolveKey = null;
}

function renderKeyButton() {
  $("key-button").textContent = currentApiKey() ? "API key: set" : "API key: none";
}

function wireKeyDialog() {
  setKeyPrompt((message) => openKeyDialog(`This server requires an API key (${message}).`));
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    closeKeyDialog($("key-input").value.trim() || null);
  });
  $("key-cancel").addEventListener("click", () => closeKeyDialog(null));
  $("key-dialog").addEventListener("cancel", () => closeKeyDialog(null));
  $("key-button").addEventListener("click", async () => {
    const key = await openKeyDialog("Set the key this tab sends as X-API-Key; leave it empty to send none.");
    setApiKey(key ?? "");
    await loadModels();
  });
  document.addEventListener("apikeychange", renderKeyButton);
  renderKeyButton();
}

// ---- model list and model info ------------------------------------------------------------------------------

async function loadModels() {
  showBanner("");
  let models;
  try {
    ({ models } = await getJson("/v1/models"));
  } catch (error) {
    showBanner(`Could not list the models. ${describe(error)}`);
    return;
  }
  renderModelList(models);
  if (!state.meta && models.length) {
    const { name, version } = hashModel();
    const wanted = models.find((m) => m.name === name) ?? models.find((m) => m.state === "ready") ?? models[0];
    await selectModel(wanted.name, wanted.name === name ? version : null);
  }
}

/** `#name` or `#name/version`: a link to one model, and what back/forward restore. */
function hashModel() {
  const [name, version] = decodeURIComponent(location.hash.slice(1)).split("/");
  return { name, version: version ? Number(version) : null };
}

function renderModelList(models) {
  const list = $("model-list");
  list.replaceChildren(
    ...models.map((m) => {
      const button = el(
        "button",
        { type: "button", class: "model-item", "data-model": m.name },
        el("span", { class: "model-item-name", text: m.name }),
        el(
          "span",
          { class: "model-item-meta" },
          el("span", { class: `dot state-${m.state}`, title: m.state }),
          `${m.task ?? "unreadable"} · ${m.state}`,
        ),
      );
      button.addEventListener("click", () => selectModel(m.name));
      return el("li", {}, button);
    }),
  );
  $("model-list-empty").hidden = models.length > 0;
  markActiveModel();
}

function markActiveModel() {
  for (const item of document.querySelectorAll(".model-item")) {
    item.classList.toggle("active", item.dataset.model === state.meta?.name);
  }
}

async function selectModel(name, version = null) {
  showBanner("");
  let meta;
  try {
    meta = await getJson(modelPath(name, version));
  } catch (error) {
    showBanner(`Could not open model ${name}. ${describe(error)}`);
    return;
  }
  state.meta = meta;
  state.input = null;
  history.replaceState(null, "", `#${encodeURIComponent(name)}${version ? `/${version}` : ""}`);
  markActiveModel();
  renderModelInfo(meta);
  configureInput(meta);
  showTaskPanel(meta.task);
  loadArtifacts(meta);
}

function fact(label, value, detail = "") {
  const dd = el("dd", { text: value });
  if (detail) dd.append(el("span", { class: "muted small", text: detail }));
  return el("div", { class: "fact" }, el("dt", { text: label }), dd);
}

function renderModelInfo(meta) {
  const spec = meta.spec;
  const pre = spec.preprocessing;
  $("welcome").hidden = true;
  $("model-info").hidden = false;
  $("model-name").textContent = meta.name;
  $("model-description").textContent = spec.description || "";
  $("version-select").replaceChildren(
    ...meta.versions.map((v) => {
      const option = el("option", { value: String(v), text: `v${v}` });
      option.selected = v === meta.version;
      return option;
    }),
  );

  const facts = [
    fact("Task", meta.task),
    fact("Input", `${pre.height}×${pre.width} ${pre.color_mode}`, `${spec.inputs[0].dtype} [${spec.inputs[0].shape.join(", ")}]`),
    fact("Provider", meta.provider.replace(/ExecutionProvider$/, ""), meta.provider),
    fact("State", meta.state),
  ];
  if (spec.labels) facts.push(fact("Classes", String(spec.labels.length), spec.labels.slice(0, 10).join(", ")));
  if (spec.parameters) facts.push(fact("Parameters", spec.parameters.toLocaleString("en-US")));
  if (spec.anomaly) {
    const a = spec.anomaly;
    facts.push(fact("Anomaly threshold", number(a.value), `MSE, p${a.percentile} of ${a.calibration_split}`));
  }
  if (spec.pairing) facts.push(fact("OOD detector", spec.pairing.ood_model));
  $("model-facts").replaceChildren(...facts);

  const quality = $("model-quality");
  quality.replaceChildren();
  if (spec.quality) {
    const q = spec.quality;
    quality.append(
      el("h3", { text: "Measured quality" }),
      el("p", {
        class: "muted small",
        text: `${q.dataset}, ${q.split} split, ${q.samples.toLocaleString("en-US")} samples${q.notes ? ` · ${q.notes}` : ""}`,
      }),
      ...metricViews(q.metrics),
    );
  } else {
    quality.append(el("p", { class: "muted small", text: "No measured quality in model.json." }));
  }
}

/**
 * Plain metrics as chips; metrics measured per condition (`psnr@sigma=0.3`, as denoisers report them) as a
 * table with one row per condition.
 */
function metricViews(metrics) {
  const plain = [];
  const byCondition = new Map();
  for (const [key, value] of Object.entries(metrics)) {
    const [name, condition] = key.split("@");
    if (condition === undefined) plain.push([name, value]);
    else {
      if (!byCondition.has(condition)) byCondition.set(condition, new Map());
      byCondition.get(condition).set(name, value);
    }
  }
  const views = [];
  if (plain.length) {
    const chips = plain.map(([name, value]) =>
      el(
        "div",
        { class: "metric-chip" },
        el("span", { class: "metric-name", text: name.replace(/_/g, " ") }),
        el("span", { class: "metric-value", text: formatMetric(name, value) }),
      ),
    );
    views.push(el("div", { class: "metric-chips" }, ...chips));
  }
  if (byCondition.size) {
    const names = [...new Set([...byCondition.values()].flatMap((m) => [...m.keys()]))];
    const header = el("tr", {}, el("th", { text: "" }), ...names.map((n) => el("th", { text: n.replace(/_/g, " ") })));
    const rows = [...byCondition].map(([condition, values]) =>
      el(
        "tr",
        {},
        el("th", { text: condition.replace("sigma=", "σ = ") }),
        ...names.map((n) => el("td", { text: values.has(n) ? formatMetric(n, values.get(n)) : "–" })),
      ),
    );
    views.push(el("div", { class: "table-scroll" }, el("table", { class: "metric-table" }, el("thead", {}, header), el("tbody", {}, ...rows))));
  }
  return views;
}

// ---- input: drawing pad, upload, samples --------------------------------------------------------------------

let pad;

function configureInput(meta) {
  const { width, height, grayscale } = geometry();
  $("workbench").hidden = false;
  $("pad-block").hidden = !grayscale;
  pad.clear();
  const samples = grayscale
    ? DIGIT_SAMPLES.map((d) => [`Digit ${d}`, () => img.digitSample(d)])
    : SCENE_SAMPLES.map((s) => [prettyName(s), () => img.sceneSample(s, width, height)]);
  $("sample-buttons").replaceChildren(
    ...samples.map(([label, make]) => {
      const button = el("button", { type: "button", class: "chip-button", text: label });
      button.addEventListener("click", () => setInput(`Sample: ${label.toLowerCase()}`, null, resize(make())));
      return button;
    }),
  );
  $("file-input").value = "";
  img.paint($("input-preview"), new ImageData(width, height));
  $("input-label").textContent = "No input yet";
  $("input-size").textContent = `${meta.name} takes ${width}×${height} ${grayscale ? "grayscale" : "RGB"}`;
}

/** Any ImageData -> the model's size and colour mode. */
function resize(image) {
  const { width, height, grayscale } = geometry();
  if (image.width === width && image.height === height) return image;
  const canvas = img.makeCanvas(image.width, image.height);
  canvas.getContext("2d").putImageData(image, 0, 0);
  return img.fitToModel(canvas, width, height, grayscale);
}

function setInput(label, file, image, { decodeError = null, note = "as sent" } = {}) {
  state.input = { label, file, image, decodeError };
  const { width, height, grayscale } = geometry();
  img.paint($("input-preview"), image ?? new ImageData(width, height));
  $("input-label").textContent = label;
  $("input-size").textContent = image
    ? `${width}×${height} ${grayscale ? "grayscale" : "RGB"}, ${file ? "resized here; the server resizes the original" : note}`
    : "the browser cannot display this file";
  runTask();
}

async function setInputFile(file) {
  if (!file || !state.meta) return;
  const { width, height, grayscale } = geometry();
  try {
    const bitmap = await img.decodeImage(file, `"${file.name}"`);
    setInput(file.name, file, img.fitToModel(bitmap, width, height, grayscale));
  } catch (error) {
    setInput(file.name, file, null, { decodeError: error });
  }
}

function drawingChanged() {
  const image = img.mnistCentre($("pad"));
  const note = "as sent, centred like MNIST";
  if (image) setInput("Your drawing", null, resize(image), { note });
}

function wireInput() {
  pad = new DrawingPad($("pad"), drawingChanged);
  $("pad-clear").addEventListener("click", () => pad.clear());
  $("file-input").addEventListener("change", (event) => setInputFile(event.target.files[0]));
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

// ---- tasks ----------------------------------------------------------------------------------------------------

function showTaskPanel(task) {
  for (const name of ["classify", "denoise", "reconstruct"]) {
    $(`panel-${name}`).hidden = name !== task;
    showPanelError(name, "");
    setStatus(name, "");
  }
  $("classify-result").hidden = true;
  $("classify-empty").hidden = false;
  const sigma = state.meta.spec.recipe?.noise_sigma || DEFAULT_SIGMA;
  $("sigma").value = String(sigma);
  $("sigma-value").textContent = Number(sigma).toFixed(2);
  clearFigures();
}

/** Blank the denoise and reconstruct figures, so no output outlives the input it belonged to. */
function clearFigures() {
  const { width, height } = geometry();
  for (const id of ["dn-original", "dn-noisy", "dn-output", "rc-input", "rc-output", "rc-heatmap"]) {
    img.paint($(id), new ImageData(width, height));
  }
  for (const id of ["psnr-noisy", "psnr-denoised", "heatmap-scale"]) $(id).textContent = "";
  $("heatmap-legend").hidden = true;
  $("anomaly").hidden = true;
}

function runTask() {
  const run = { classify: runClassify, denoise: runDenoise, reconstruct: runReconstruct }[state.meta.task];
  run?.();
}

function taskPath(task) {
  return `${modelPath(state.meta.name, state.meta.version)}:${task}`;
}

/**
 * The frame every task run shares: drop stale answers, show "busy" then "model vN · 12 ms", and turn any
 * failure into the panel's error message. `work(input, current)` returns the served model's label.
 */
async function runPanel(task, busy, { needsPixels = false, hideOnError = [] }, work) {
  const input = state.input;
  if (!input) return;
  const current = ticket(task);
  showPanelError(task, "");
  if (needsPixels && !input.image) {
    clearFigures();
    showPanelError(task, input.decodeError.message);
    return;
  }
  setStatus(task, busy);
  const start = performance.now();
  try {
    const served = await work(input, current);
    if (current()) setStatus(task, `${served} · ${elapsed(start)}`);
  } catch (error) {
    if (!current()) return;
    for (const id of hideOnError) $(id).hidden = true;
    showPanelError(task, describe(error));
    setStatus(task, "");
  }
}

const served = (model) => `${model.name} v${model.version}`;

function runClassify() {
  const hideOnError = ["classify-result", "classify-empty"];
  return runPanel("classify", "Classifying…", { hideOnError }, async (input, current) => {
    const body = input.file ?? (await img.toPng(input.image));
    const result = await (await postImage(`${taskPath("classify")}?top_k=${TOP_K}`, body)).json();
    if (current()) renderClassification(result.results[0]);
    return served(result.model);
  });
}

function renderClassification(item) {
  const [best] = item.top;
  $("classify-empty").hidden = true;
  $("classify-result").hidden = false;
  $("top1-label").textContent = best.label;
  $("top1-prob").textContent = percent(best.probability);
  $("bars").replaceChildren(
    ...item.top.map((s, i) => {
      const fill = el("span", { class: "bar-fill" });
      fill.style.width = `${Math.max(0.5, 100 * s.probability)}%`;
      return el(
        "li",
        { class: i === 0 ? "bar best" : "bar", "data-label": s.label, "data-probability": String(s.probability) },
        el("span", { class: "bar-label", text: s.label }),
        el("span", { class: "bar-track" }, fill),
        el("span", { class: "bar-value", text: percent(s.probability) }),
      );
    }),
  );
  const ood = $("ood");
  ood.hidden = item.ood_score == null;
  if (item.ood_score != null) {
    const model = state.meta.spec.pairing?.ood_model ?? "the paired autoencoder";
    const numbers = `score ${number(item.ood_score)} vs threshold ${number(item.ood_threshold)} (${model})`;
    ood.className = `ood ${item.is_ood ? "warn" : "ok"}`;
    ood.dataset.isOod = String(item.is_ood);
    ood.replaceChildren(
      el("strong", { text: item.is_ood ? "Out of distribution" : "In distribution" }),
      el("span", {
        text: item.is_ood
          ? ` — this input does not look like the training data, so treat the label with caution: ${numbers}.`
          : ` — looks like the training data: ${numbers}.`,
      }),
    );
  }
}

function showPsnr(id, value) {
  const node = $(id);
  node.dataset.psnr = String(value);
  node.textContent = Number.isFinite(value) ? `PSNR ${value.toFixed(2)} dB` : "PSNR ∞ (identical)";
}

function runDenoise() {
  return runPanel("denoise", "Denoising…", { needsPixels: true }, async (input, current) => {
    const { width, height, grayscale } = geometry();
    const noisy = img.addNoise(input.image, Number($("sigma").value), grayscale);
    img.paint($("dn-original"), input.image);
    img.paint($("dn-noisy"), noisy);
    showPsnr("psnr-noisy", img.psnr(input.image, noisy, grayscale));
    $("psnr-denoised").textContent = "";
    $("dn-output").classList.add("pending");
    try {
      const response = await postImage(taskPath("denoise"), await img.toPng(noisy), "image/png");
      const output = await img.fromPng(await response.blob(), width, height, grayscale);
      if (current()) {
        img.paint($("dn-output"), output);
        showPsnr("psnr-denoised", img.psnr(input.image, output, grayscale));
      }
      return `${response.headers.get("X-Model-Name")} v${response.headers.get("X-Model-Version")}`;
    } finally {
      if (current()) $("dn-output").classList.remove("pending");
    }
  });
}

function base64ToBlob(text, type = "image/png") {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

function runReconstruct() {
  const options = { needsPixels: true, hideOnError: ["anomaly"] };
  return runPanel("reconstruct", "Reconstructing…", options, async (input, current) => {
    const { width, height, grayscale } = geometry();
    img.paint($("rc-input"), input.image);
    const result = await (await postImage(taskPath("reconstruct"), await img.toPng(input.image))).json();
    const item = result.results[0];
    const output = await img.fromPng(base64ToBlob(item.image), width, height, grayscale);
    if (current()) {
      const heat = img.errorHeatmap(input.image, output, grayscale);
      img.paint($("rc-output"), output);
      img.paint($("rc-heatmap"), heat.image);
      $("heatmap-scale").textContent = number(heat.max, 3);
      $("heatmap-legend").hidden = false;
      renderAnomaly(item);
    }
    return served(result.model);
  });
}

function renderAnomaly(item) {
  const box = $("anomaly");
  const threshold = item.threshold ?? state.meta.spec.anomaly?.value ?? null;
  box.hidden = false;
  box.dataset.score = String(item.error);
  $("gauge-fill").parentElement.hidden = threshold == null;
  if (threshold == null) {
    box.className = "anomaly";
    $("anomaly-text").textContent = `Reconstruction error (MSE) ${number(item.error)}; this model has no calibrated threshold.`;
    return;
  }
  const anomalous = item.is_anomaly ?? item.error > threshold;
  const a = state.meta.spec.anomaly;
  const how = a ? ` (p${a.percentile} of ${a.calibration_split} errors, ${percent(a.false_positive_rate)} false positives)` : "";
  box.className = `anomaly ${anomalous ? "warn" : "ok"}`;
  $("gauge-fill").style.width = `${Math.min(100, (50 * item.error) / threshold)}%`;
  $("anomaly-text").replaceChildren(
    el("strong", { text: anomalous ? "Anomalous" : "Normal" }),
    ` — anomaly score (reconstruction MSE) ${number(item.error)} ${anomalous ? ">" : "≤"} threshold ${number(threshold)}${how}.`,
  );
}

function wireDenoiseControls() {
  let timer = null;
  $("sigma").addEventListener("input", () => {
    $("sigma-value").textContent = Number($("sigma").value).toFixed(2);
    clearTimeout(timer);
    timer = setTimeout(() => runDenoise(), 150);
  });
  $("renoise").addEventListener("click", () => runDenoise());
}

// ---- model card -----------------------------------------------------------------------------------------------

async function loadArtifacts(meta) {
  const current = ticket("artifacts");
  for (const url of state.artifactUrls) URL.revokeObjectURL(url);
  state.artifactUrls = [];
  const box = $("artifacts");
  const files = meta.spec.artifacts ?? [];
  $("model-card").hidden = false;
  if (!files.length) {
    box.replaceChildren(el("p", { class: "muted", text: "No training plots were saved with this model version." }));
    return;
  }
  const figures = files.map((file) => {
    const image = el("img", { alt: `${prettyName(file)} of ${meta.name} v${meta.version}`, "data-artifact": file });
    return { file, image, figure: el("figure", { class: "artifact" }, image, el("figcaption", { text: prettyName(file) })) };
  });
  box.replaceChildren(...figures.map((f) => f.figure));
  await Promise.all(
    figures.map(async ({ file, image, figure }) => {
      try {
        const path = `${modelPath(meta.name, meta.version)}/artifacts/${encodeURIComponent(file)}`;
        const blob = await (await request(path, { accept: "image/*" })).blob();
        if (!current()) return;
        const url = URL.createObjectURL(blob);
        state.artifactUrls.push(url);
        image.src = url;
      } catch (error) {
        if (current()) figure.replaceChildren(el("p", { class: "banner error", text: `${file}: ${describe(error)}` }));
      }
    }),
  );
}

// ---- start ------------------------------------------------------------------------------------------------------

function start() {
  wireKeyDialog();
  wireInput();
  wireDenoiseControls();
  $("refresh-models").addEventListener("click", loadModels);
  $("version-select").addEventListener("change", (event) => selectModel(state.meta.name, Number(event.target.value)));
  window.addEventListener("hashchange", () => {
    const { name, version } = hashModel();
    if (name) selectModel(name, version);
  });
  loadModels();
}

start();
