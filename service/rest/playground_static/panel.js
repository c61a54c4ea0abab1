// The frame every task run shares: drop stale answers, show "busy" then "model vN · 12 ms", and turn any
// failure into the panel's error message.

import { describe } from "./api.js";
import { $, elapsed, showMessage, ticket } from "./dom.js";
import { state } from "./state.js";

export const showPanelError = (task, message) => showMessage(`${task}-error`, message);
export const setStatus = (task, text) => ($(`${task}-status`).textContent = text);
export const served = (model) => `${model.name} v${model.version}`;

/**
 * Run `work(input, current)` for the current input; it returns the served model's label. `current()` is false
 * once a newer run of the same task started (or the model changed). On failure `clear()` blanks the panel's
 * results, so no output outlives the input it belonged to.
 */
export async function runPanel(task, busy, clear, work) {
  const input = state.input;
  if (!input) return;
  const current = ticket(task);
  showPanelError(task, "");
  setStatus(task, busy);
  const start = performance.now();
  try {
    const who = await work(input, current);
    if (current()) setStatus(task, `${who} · ${elapsed(start)}`);
  } catch (error) {
    if (!current()) return;
    clear();
    showPanelError(task, describe(error));
    setStatus(task, "");
  }
}
