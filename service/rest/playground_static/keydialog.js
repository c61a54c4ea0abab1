// The API-key dialog: asked for when the API answers 401, or opened from the top bar's button.

import { currentApiKey, setApiKey, setKeyPrompt } from "./api.js";
import { $ } from "./dom.js";

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

/** `onKeySet()` runs after a key is set from the top bar (the page reloads the model list with it). */
export function wireKeyDialog(onKeySet) {
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
    await onKeySet();
  });
  document.addEventListener("apikeychange", renderKeyButton);
  renderKeyButton();
}
