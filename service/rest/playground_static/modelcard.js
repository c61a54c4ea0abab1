// The selected model's card: facts, measured quality, the trust evidence model.json records (trust.js) and the
// training plots saved with the version.

import { describe, modelPath, request } from "./api.js";
import { $, el, formatMetric, number, prettyName, ticket } from "./dom.js";
import { preprocessingWords } from "./prepared.js";
import { state } from "./state.js";
import { thresholdMode, trustViews } from "./trust.js";

function fact(label, value, detail = "") {
  const dd = el("dd", { text: value });
  if (detail) dd.append(el("span", { class: "muted small", text: detail }));
  return el("div", { class: "fact" }, el("dt", { text: label }), dd);
}

export function renderModelInfo(meta) {
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
    fact("Preprocessing", preprocessingWords(pre), "on the server, for every encoded image"),
    fact("Provider", meta.provider.replace(/ExecutionProvider$/, ""), meta.provider),
    fact("State", meta.state),
  ];
  if (spec.labels) facts.push(fact("Classes", String(spec.labels.length), spec.labels.slice(0, 10).join(", ")));
  if (spec.parameters) facts.push(fact("Parameters", spec.parameters.toLocaleString("en-US")));
  if (spec.anomaly) {
    const a = spec.anomaly;
    facts.push(fact("Anomaly threshold", number(a.value), `MSE, ${thresholdMode(a)}`));
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
  const trust = trustViews(spec);
  $("model-trust").replaceChildren(...trust);
  $("model-trust").hidden = !trust.length;
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

export async function loadArtifacts(meta) {
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
