// Small DOM and formatting helpers every part of the page uses.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

export function showMessage(id, message) {
  const box = $(id);
  box.textContent = message;
  box.hidden = !message;
}

export const showBanner = (message) => showMessage("banner", message);

// Responses that arrive after the input or model changed are dropped: only the latest call per key counts.
const tickets = {};
export function ticket(key) {
  const mine = (tickets[key] ?? 0) + 1;
  tickets[key] = mine;
  return () => tickets[key] === mine;
}

export function percent(p) {
  return p > 0 && p < 0.0005 ? "<0.1%" : `${(100 * p).toFixed(1)}%`;
}

export function number(value, digits = 4) {
  return Number(value).toPrecision(digits).replace(/\.?0+(e|$)/, "$1");
}

export function formatMetric(name, value) {
  const key = name.toLowerCase();
  if (/psnr/.test(key)) return `${value.toFixed(2)} dB`;
  if (/(accuracy|precision|recall|f1|auc|auroc|aupr|fpr|ece|rate|top)/.test(key) && value >= 0 && value <= 1) return percent(value);
  return number(value);
}

export function prettyName(file) {
  const stem = file.replace(/\.[^.]+$/, "").replace(/[_-]+/g, " ");
  return stem.charAt(0).toUpperCase() + stem.slice(1);
}

/** A file size for people; the number and its unit never part at a line break. */
export function bytes(size) {
  if (size < 1024) return `${size}\u00a0B`;
  return size < 1024 * 1024 ? `${(size / 1024).toFixed(1)}\u00a0kB` : `${(size / 1048576).toFixed(1)}\u00a0MB`;
}

export function elapsed(start) {
  return `${Math.round(performance.now() - start)} ms`;
}
