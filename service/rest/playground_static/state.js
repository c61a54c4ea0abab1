// What the page holds: the selected model's metadata and the current input, shared by every module.

import { modelPath } from "./api.js";

export const state = {
  meta: null, // GET /v1/models/{name}/versions/{v}: runtime facts + model.json as `spec`
  input: null, // see input.js: { label, kind, blob, url, resize, ... } sent to the server as it is
  artifactUrls: [],
};

/** The model's input geometry and its own preprocessing, from model.json. */
export function geometry() {
  const pre = state.meta.spec.preprocessing;
  return {
    width: pre.width,
    height: pre.height,
    grayscale: pre.color_mode === "grayscale",
    resize: pre.resize ?? "stretch",
    normalize: pre.normalize ?? "none",
  };
}

export function taskPath(task) {
  return `${modelPath(state.meta.name, state.meta.version)}:${task}`;
}
