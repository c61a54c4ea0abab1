// Classification: top-k bars, the OOD verdict with the server's anomaly score, and the input beside what the
// model saw.

import { postImage } from "./api.js";
import { $, el, number, percent } from "./dom.js";
import { showOriginal } from "./input.js";
import { runPanel, served } from "./panel.js";
import { clearPrepared, describePrepared, seenInput, sendQuery, showPng } from "./prepared.js";
import { state, taskPath } from "./state.js";
import { scoreWords } from "./trust.js";

const TOP_K = 5;

export function clearClassify() {
  $("classify-result").hidden = true;
  $("classify-empty").hidden = false;
  clearPrepared($("classify-prepared"));
}

export function runClassify() {
  const hide = () => {
    $("classify-result").hidden = true;
    $("classify-empty").hidden = true;
  };
  return runPanel("classify", "Classifying…", hide, async (input, current) => {
    const response = await postImage(`${taskPath("classify")}${sendQuery(input, { top_k: String(TOP_K) })}`, input.blob);
    const result = await response.json();
    const seen = seenInput(result);
    if (current()) {
      showOriginal($("classify-sent"), input);
      showPng($("classify-seen"), seen, `What ${result.model.name} saw`);
      describePrepared($("classify-prepared"), result.prepared, input);
      renderClassification(result.results[0]);
    }
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
    const score = item.anomaly_score != null ? `${scoreWords(item.anomaly_score)}; ` : "";
    const numbers = `${score}reconstruction error ${number(item.ood_score)} vs threshold ${number(item.ood_threshold)} (${model})`;
    ood.className = `ood ${item.is_ood ? "warn" : "ok"}`;
    ood.dataset.isOod = String(item.is_ood);
    if (item.anomaly_score != null) ood.dataset.anomalyScore = String(item.anomaly_score);
    else delete ood.dataset.anomalyScore;
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
