// The task panels: the one matching the model's task is shown, and every new input runs it.

import { $, ticket } from "./dom.js";
import { clearClassify, runClassify } from "./classify.js";
import { clearDenoise, configureDenoise, runDenoise } from "./denoise.js";
import { setStatus, showPanelError } from "./panel.js";
import { clearReconstruct, runReconstruct } from "./reconstruct.js";
import { state } from "./state.js";

const TASKS = {
  classify: { run: runClassify, clear: clearClassify },
  denoise: { run: runDenoise, clear: clearDenoise },
  reconstruct: { run: runReconstruct, clear: clearReconstruct },
};

export function showTaskPanel(task) {
  for (const [name, panel] of Object.entries(TASKS)) {
    $(`panel-${name}`).hidden = name !== task;
    ticket(name); // answers still on their way belong to the previous model: drop them
    showPanelError(name, "");
    setStatus(name, "");
    panel.clear();
  }
  configureDenoise();
}

export function runTask() {
  TASKS[state.meta.task]?.run();
}
