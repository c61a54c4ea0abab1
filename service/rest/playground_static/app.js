// The playground page: model picker, one input (drawing, upload, sample) and the panel of the model's task.
// Everything goes through the public REST API (api.js); the server prepares every image, and the page shows
// the prepared input it sends back (what the model saw) beside the input as sent.

import { describe, getJson, modelPath } from "./api.js";
import { $, el, showBanner } from "./dom.js";
import { wireDenoiseControls } from "./denoise.js";
import { configureInput, wireInput } from "./input.js";
import { wireKeyDialog } from "./keydialog.js";
import { loadArtifacts, renderModelInfo } from "./modelcard.js";
import { state } from "./state.js";
import { runTask, showTaskPanel } from "./tasks.js";

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

function start() {
  wireKeyDialog(loadModels);
  wireInput(runTask);
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
