// The REST API as the page uses it: one fetch wrapper that adds the API key, asks for one on 401 and turns
// every error body ({"error": {"code", "message"}}) into an ApiError with a readable message.

const KEY_STORAGE = "pixelserve.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
let keyPrompt = null; // async (reason) => key | null, installed by the page
let pendingPrompt = null; // one dialog for every request that hit 401 at the same time

export function setKeyPrompt(prompt) {
  keyPrompt = prompt;
}

export function currentApiKey() {
  return apiKey;
}

export function setApiKey(key) {
  apiKey = key || "";
  if (apiKey) sessionStorage.setItem(KEY_STORAGE, apiKey);
  else sessionStorage.removeItem(KEY_STORAGE);
  document.dispatchEvent(new CustomEvent("apikeychange"));
}

async function errorFrom(response) {
  let code = `HTTP_${response.status}`;
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (typeof body.error === "string") message = body.error;
    else if (body.error) ({ code, message } = body.error);
  } catch {
    // not a JSON body (a proxy page, say): keep the status line
  }
  return new ApiError(response.status, code, message, response.headers.get("Retry-After"));
}

async function askForKey(reason) {
  pendingPrompt ??= keyPrompt(reason).finally(() => {
    pendingPrompt = null;
  });
  return pendingPrompt;
}

/** fetch() with the key header; on 401 asks for a key (once for concurrent calls) and retries. */
export async function request(path, { method = "GET", body, headers = {}, accept = "application/json" } = {}) {
  for (;;) {
    const sentKey = apiKey;
    const sent = { Accept: accept, ...headers };
    if (sentKey) sent["X-API-Key"] = sentKey;
    let response;
    try {
      response = await fetch(path, { method, body, headers: sent });
    } catch (error) {
      throw new ApiError(0, "NETWORK", `could not reach the server (${error.message})`);
    }
    if (response.ok) return response;
    const error = await errorFrom(response);
    if (response.status !== 401 || !keyPrompt) throw error;
    if (apiKey === sentKey) {
      const key = await askForKey(error.message);
      if (key === null) throw error;
      setApiKey(key);
    } // else another request got a new key meanwhile: retry with it
  }
}

export async function getJson(path) {
  return (await request(path)).json();
}

/**
 * POST one image file as the raw body, its bytes as they are (the server sniffs the format from them). Sent as
 * an ArrayBuffer rather than the Blob itself, so the browser's developer tools (and the tests) see the body.
 */
export async function postImage(path, blob, accept = "application/json") {
  const headers = { "Content-Type": blob.type || "application/octet-stream" };
  return request(path, { method: "POST", body: await blob.arrayBuffer(), headers, accept });
}

/** One sentence a person can act on, for any error this module or the browser throws. */
export function describe(error) {
  if (!(error instanceof ApiError)) return error.message || String(error);
  const detail = `${error.message} (HTTP ${error.status}, ${error.code})`;
  switch (error.status) {
    case 0:
      return `Network error: ${error.message}.`;
    case 400:
      return `The server rejected the input: ${detail}`;
    case 401:
      return `An API key is needed: ${detail}`;
    case 404:
      return `Not found: ${detail}`;
    case 413:
      return `The file is too large for this server: ${detail}`;
    case 429: {
      const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : " Try again shortly.";
      return `The server is overloaded: ${detail}.${wait}`;
    }
    case 503:
      return `Not available right now: ${detail}`;
    case 504:
      return `The server timed out: ${detail}`;
    default:
      return `Request failed: ${detail}`;
  }
}

export function modelPath(name, version) {
  const base = `/v1/models/${encodeURIComponent(name)}`;
  return version == null ? base : `${base}/versions/${version}`;
}
