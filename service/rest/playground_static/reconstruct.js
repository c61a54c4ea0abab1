// Reconstruction and anomaly: what the model saw, its reconstruction, the per-pixel anomaly map and the server's
// verdict with its normalised anomaly score. The map is the server's (`anomaly_map`, an output of the model's
// graph), only colour-mapped here; for a model without that output the page falls back to a squared-error heatmap
// computed from the two server images, and says so.

import { postImage } from "./api.js";
import { $, el, number } from "./dom.js";
import { anomalyMapImage, decodePng, errorHeatmap, paint } from "./imaging.js";
import { runPanel, served } from "./panel.js";
import { blankPng, clearPrepared, describePrepared, seenInput, sendQuery, showPng } from "./prepared.js";
import { geometry, state, taskPath } from "./state.js";
import { scoreWords, thresholdWords } from "./trust.js";

const HEATMAP = {
  server: {
    title: "Anomaly map",
    source: "the server's anomaly_map: per-pixel squared error from the model's graph",
  },
  browser: {
    title: "Squared error",
    source: "computed in this page from the two images above: this model has no anomaly_map output",
  },
};

export function clearReconstruct() {
  const { width, height } = geometry();
  blankPng($("rc-input"));
  blankPng($("rc-output"));
  paint($("rc-heatmap"), new ImageData(width, height));
  $("heatmap-scale").textContent = "";
  $("heatmap-source").textContent = "";
  $("heatmap-legend").hidden = true;
  delete $("heatmap-legend").dataset.source;
  $("anomaly").hidden = true;
  clearPrepared($("reconstruct-prepared"));
}

export function runReconstruct() {
  return runPanel("reconstruct", "Reconstructing…", clearReconstruct, async (input, current) => {
    const { width, height, grayscale } = geometry();
    const result = await (await postImage(`${taskPath("reconstruct")}${sendQuery(input)}`, input.blob)).json();
    const item = result.results[0];
    const seen = seenInput(result);
    const fromServer = item.anomaly_map != null;
    // the fallback needs the two images' pixels; the server's map needs neither
    const pixels = fromServer ? null : await Promise.all([decodePng(seen), decodePng(item.image)]);
    if (current()) {
      const heat = fromServer ? anomalyMapImage(item.anomaly_map, width, height) : errorHeatmap(...pixels, grayscale);
      showPng($("rc-input"), seen, `What ${result.model.name} saw`);
      showPng($("rc-output"), item.image, "The model's reconstruction");
      showHeatmap(heat, fromServer ? "server" : "browser");
      describePrepared($("reconstruct-prepared"), result.prepared, input);
      renderAnomaly(item);
    }
    return served(result.model);
  });
}

function showHeatmap(heat, source) {
  const words = HEATMAP[source];
  paint($("rc-heatmap"), heat.image);
  $("rc-heatmap").setAttribute("aria-label", `${words.title}, ${words.source}`);
  $("heatmap-title").textContent = words.title;
  $("heatmap-scale").textContent = number(heat.max, 3);
  $("heatmap-source").textContent = words.source;
  const legend = $("heatmap-legend");
  legend.dataset.source = source;
  legend.hidden = false;
}

function renderAnomaly(item) {
  const box = $("anomaly");
  const threshold = item.threshold ?? null;
  box.hidden = false;
  box.dataset.score = String(item.error);
  if (item.anomaly_score != null) box.dataset.anomalyScore = String(item.anomaly_score);
  else delete box.dataset.anomalyScore;
  $("gauge-fill").parentElement.hidden = item.anomaly_score == null;
  if (threshold == null) {
    box.className = "anomaly";
    $("anomaly-text").textContent = `Reconstruction error (MSE) ${number(item.error)}; this model has no calibrated threshold.`;
    return;
  }
  const anomalous = item.is_anomaly ?? item.error > threshold;
  const a = state.meta.spec.anomaly;
  const how = a ? ` (${thresholdWords(a)})` : "";
  box.className = `anomaly ${anomalous ? "warn" : "ok"}`;
  if (item.anomaly_score != null) $("gauge-fill").style.width = `${100 * item.anomaly_score}%`;
  // the server calls a content-less input (every pixel the same) anomalous whatever its error
  const flat = anomalous && item.error <= threshold;
  const error = flat
    ? `the input has no content (every pixel the same value), which counts as anomalous whatever its reconstruction MSE (${number(item.error)})`
    : `reconstruction MSE ${number(item.error)} ${anomalous ? ">" : "≤"} threshold ${number(threshold)}${how}`;
  const score = item.anomaly_score != null ? [el("span", { class: "score", text: scoreWords(item.anomaly_score) }), "; "] : [];
  $("anomaly-text").replaceChildren(el("strong", { text: anomalous ? "Anomalous" : "Normal" }), " — ", ...score, `${error}.`);
}
