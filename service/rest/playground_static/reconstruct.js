// Reconstruction and anomaly: what the model saw, its reconstruction, the squared-error heatmap (computed here
// from those two server images) and the server's anomaly score against the calibrated threshold.

import { postImage } from "./api.js";
import { $, el, number, percent } from "./dom.js";
import { decodePng, errorHeatmap, paint } from "./imaging.js";
import { runPanel, served } from "./panel.js";
import { blankPng, clearPrepared, describePrepared, seenInput, sendQuery, showPng } from "./prepared.js";
import { geometry, state, taskPath } from "./state.js";

export function clearReconstruct() {
  const { width, height } = geometry();
  blankPng($("rc-input"));
  blankPng($("rc-output"));
  paint($("rc-heatmap"), new ImageData(width, height));
  $("heatmap-scale").textContent = "";
  $("heatmap-legend").hidden = true;
  $("anomaly").hidden = true;
  clearPrepared($("reconstruct-prepared"));
}

export function runReconstruct() {
  return runPanel("reconstruct", "Reconstructing…", clearReconstruct, async (input, current) => {
    const { grayscale } = geometry();
    const result = await (await postImage(`${taskPath("reconstruct")}${sendQuery(input)}`, input.blob)).json();
    const item = result.results[0];
    const seen = seenInput(result);
    const [seenPixels, outputPixels] = await Promise.all([decodePng(seen), decodePng(item.image)]);
    if (current()) {
      const heat = errorHeatmap(seenPixels, outputPixels, grayscale);
      showPng($("rc-input"), seen, `What ${result.model.name} saw`);
      showPng($("rc-output"), item.image, "The model's reconstruction");
      paint($("rc-heatmap"), heat.image);
      describePrepared($("reconstruct-prepared"), result.prepared, input);
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
