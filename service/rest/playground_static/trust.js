// The trust evidence model.json records beside the measured quality (pixelserve/measured.py, modelspec.py):
// calibration, the anomaly threshold's detection metrics, a classifier's OOD report, accuracy on real-world
// variants, the golden set and the drift baseline. Each block shows only what the file holds; nothing is
// measured here. Also the words the task panels use for the server's anomaly score and the threshold.

import { el, formatMetric, number, percent } from "./dom.js";
import { preprocessingWords } from "./prepared.js";

// What the exporter's real-world variants are (pixelserve/training/variants.py); other names show as they are.
const VARIANT_WORDS = {
  "plain-png": "test images as PNG",
  "plain-jpeg": "test images as JPEG",
  paper: "dark ink on white paper, off centre",
  "grey-paper-jpeg": "photographed on grey paper: uneven light, dust, JPEG",
  printed: "printed digits in several fonts",
  "exif-rotated": "photos stored sideways, upright by EXIF orientation",
  "photo-4x3": "4:3 photos framing the object",
};

const count = (n) => Number(n).toLocaleString("en-US");

/** The server's normalised score: error / (error + threshold), 0.5 at the threshold. */
export function scoreWords(score) {
  return `anomaly score ${number(score, 3)} (0.5 at the threshold)`;
}

/** How the threshold was chosen (model.json `anomaly.mode`), e.g. "p99 of held-out … errors". */
export function thresholdMode(a) {
  if (a.mode === "fpr") return `target ${percent(a.target_fpr)} false positives on ${a.calibration_split} errors`;
  if (a.mode === "f1") return `best F1 on ${a.calibration_split} errors and known anomalies`;
  return `p${a.percentile} of ${a.calibration_split} errors`;
}

export function thresholdWords(a) {
  return `${thresholdMode(a)}, ${percent(a.false_positive_rate)} false positives on the test split`;
}

function block(key, title, ...children) {
  return el("section", { class: "trust-item", "data-trust": key }, el("h4", { text: title }), ...children);
}

const note = (...children) => el("p", { class: "muted small" }, ...children);

function chips(pairs) {
  return el(
    "div",
    { class: "metric-chips" },
    ...pairs.map(([name, value]) =>
      el("div", { class: "metric-chip" }, el("span", { class: "metric-name", text: name }), el("span", { class: "metric-value", text: value })),
    ),
  );
}

function table(head, rows) {
  const header = el("tr", {}, ...head.map((h) => el("th", { text: h })));
  const body = rows.map(([name, detail, ...cells]) =>
    el(
      "tr",
      {},
      el("th", {}, name, ...(detail ? [el("span", { class: "row-detail", text: detail })] : [])),
      ...cells.map((c) => el("td", { text: c })),
    ),
  );
  return el("div", { class: "table-scroll" }, el("table", { class: "metric-table" }, el("thead", {}, header), el("tbody", {}, ...body)));
}

function calibration(c) {
  const served = c.in_graph
    ? "in the graph: the served probabilities are the calibrated ones"
    : "not in the graph: the served probabilities are uncalibrated";
  const measured = Object.keys(c.before).filter((k) => k in c.after);
  return block(
    "calibration",
    "Calibration",
    el("p", { text: `Temperature T = ${number(c.temperature, 3)}, ${served}.` }),
    chips(measured.map((k) => [`${k.toUpperCase()} before → after`, `${formatMetric(k, c.before[k])} → ${formatMetric(k, c.after[k])}`])),
    note(`${c.method} scaling fitted on ${c.fitted_on}; measured on the test split (${c.bins} bins).`),
  );
}

/** AUROC and co. of a score against normal inputs, and the foreign sets it was measured on. */
function detection(d) {
  const pairs = [
    ["AUROC", percent(d.auroc)],
    ["AUPR", percent(d.aupr)],
    ["FPR at 95% TPR", percent(d.fpr_at_95_tpr)],
  ];
  if (d.f1 != null) pairs.push(["F1 at the threshold", percent(d.f1)]);
  const sets = Object.entries(d.foreign).map(([name, n]) => [
    name,
    "",
    count(n),
    name in (d.per_set_auroc ?? {}) ? percent(d.per_set_auroc[name]) : "–",
  ]);
  const views = [chips(pairs)];
  if (sets.length) views.push(table(["foreign set", "images", "AUROC"], sets));
  return [...views, note(`Normal: ${d.normal}.`)];
}

function anomalyDetection(a) {
  return block(
    "anomaly",
    "Anomaly detection",
    el("p", { text: `Threshold MSE ${number(a.value)}: ${thresholdWords(a)}.` }),
    ...detection(a.detection),
  );
}

function oodReport(ood) {
  const flagged = Object.entries(ood.flag_rates ?? {}).map(([name, rate]) => `${name} ${percent(rate)}`);
  return block(
    "ood",
    "Out-of-distribution flag",
    el("p", { text: `Reconstruction error of ${ood.scorer}, flagged above ${number(ood.threshold)}.` }),
    ...detection(ood.detection),
    ...(flagged.length ? [note(`Flagged: ${flagged.join(" · ")}.`)] : []),
  );
}

/** Accuracy per variant as served; keys `variant@condition` (e.g. `paper@stretch`) add a column per condition. */
function variants(values, pre) {
  const byVariant = new Map();
  const conditions = [];
  for (const [key, value] of Object.entries(values)) {
    const [name, condition = ""] = key.split("@");
    if (!byVariant.has(name)) byVariant.set(name, new Map());
    byVariant.get(name).set(condition, value);
    if (!conditions.includes(condition)) conditions.push(condition);
  }
  conditions.sort((a, b) => (a === "" ? -1 : b === "" ? 1 : 0));
  const head = ["variant", ...conditions.map((c) => (c === "" ? "as served" : c))];
  const rows = [...byVariant].map(([name, measured]) => [
    name,
    VARIANT_WORDS[name] ?? "",
    ...conditions.map((c) => (measured.has(c) ? percent(measured.get(c)) : "–")),
  ]);
  return block(
    "variants",
    "Real-world variants",
    note(`Accuracy on variants of the test split, uploaded as files and prepared as served (${preprocessingWords(pre)}).`),
    table(head, rows),
  );
}

function golden(g) {
  const kinds = Object.entries(g.kinds).map(([kind, n]) => `${kind} ${count(n)}`);
  const hash = el("code", { title: g.sha256, text: `${g.sha256.slice(0, 12)}…` });
  return block(
    "golden",
    "Golden set",
    el("p", { text: `${count(g.samples)} images with the outputs measured at export: ${kinds.join(", ")}.` }),
    note(`${g.file}, sha256 `, hash),
    note(
      "Verified by ",
      el("code", { text: "pixelserve verify" }),
      ` and by the server's quality gate before a version serves (max |Δ| ${number(g.tolerance.max_abs_diff, 2)} on CPU, ${number(g.tolerance.max_abs_diff_gpu, 2)} on GPU).`,
    ),
  );
}

function drift(d) {
  const parts = ["the pixel histogram"];
  if (d.predictions) parts.push("the class shares");
  if (d.score) parts.push(`${d.score} deciles`);
  return block(
    "drift",
    "Drift baseline",
    el("p", { text: `Baseline present: ${count(d.samples)} test images as served.` }),
    note(`Live traffic is compared with ${parts.join(", ")} (pixelserve_drift_psi).`),
  );
}

/** The card's trust blocks for what `spec` (model.json) records; empty when it records none of it. */
export function trustViews(spec) {
  const blocks = [];
  if (spec.calibration) blocks.push(calibration(spec.calibration));
  if (spec.anomaly?.detection) blocks.push(anomalyDetection(spec.anomaly));
  if (spec.pairing?.ood) blocks.push(oodReport(spec.pairing.ood));
  if (spec.quality?.variants && Object.keys(spec.quality.variants).length) {
    blocks.push(variants(spec.quality.variants, spec.preprocessing));
  }
  if (spec.golden) blocks.push(golden(spec.golden));
  if (spec.drift) blocks.push(drift(spec.drift));
  if (!blocks.length) return [];
  return [el("h3", { text: "Trust evidence" }), el("div", { class: "trust-grid" }, ...blocks)];
}
