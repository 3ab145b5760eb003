// The page's only way to the server: zoo.v1 over the JSON bridge (POST /api/v1/Service/Method),
// with the bearer token the user typed, kept for this tab only (sessionStorage).

import { sha256Of } from "./sha256.js";

const TOKEN_KEY = "zoo.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(message, status = 0, code = "") {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const all = { ...extra };
  const token = getToken();
  if (token) all.Authorization = `Bearer ${token}`;
  return all;
}

function failed(status, body, fallback) {
  const error = new ApiError((body && body.error) || fallback, status, (body && body.code) || "");
  if (status === 401) {
    window.dispatchEvent(new CustomEvent("zoo:unauthorized", { detail: error.message }));
  }
  return error;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: the status line says it
  }
  return failed(response.status, body, `${response.status} ${response.statusText}`);
}

function post(service, method, request, signal) {
  return fetch(`/api/v1/${service}/${method}`, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(request || {}),
    signal,
  });
}

// A unary call: the response message as JSON.
export async function call(service, method, request = {}, signal = undefined) {
  const response = await post(service, method, request, signal);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// A server-streaming call: yields each message as it arrives (NDJSON lines).
export async function* stream(service, method, request = {}, signal = undefined) {
  const response = await post(service, method, request, signal);
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (!line) continue;
        const message = JSON.parse(line);
        if (message.error) {
          throw failed(message.error.status || 500, message.error, "the stream failed");
        }
        yield message;
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // a consumer that stops early closes the connection
  }
}

let settingsPromise = null;

// What the forms are built from: the hyper-parameters' schema, dataset formats, limits.
export function settings() {
  if (!settingsPromise) {
    settingsPromise = fetch("/api/web/settings", { headers: headers() }).then(async (response) => {
      if (!response.ok) throw await failure(response);
      return response.json();
    });
    settingsPromise.catch(() => { settingsPromise = null; });
  }
  return settingsPromise;
}

// The dataset format of a file, from its name (the server's list of suffixes).
export function formatOf(name, formats) {
  const lower = name.toLowerCase();
  return formats.find((f) => f.suffixes.some((suffix) => lower.endsWith(suffix))) || null;
}

// UploadDataset: hashes the file, then streams it as the body (the header's fields in the
// query string). `onProgress(stage, done, total)`, stage "hashing" or "uploading".
export async function uploadDataset(file, format, name, onProgress = () => {}) {
  const sha256 = await sha256Of(file, (done, total) => onProgress("hashing", done, total));
  const query = new URLSearchParams({ name, format, sha256, size: String(file.size) });
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1/FineTuneService/UploadDataset?${query}`);
    for (const [key, value] of Object.entries(headers({ "Content-Type": "application/octet-stream" }))) {
      xhr.setRequestHeader(key, value);
    }
    xhr.upload.onprogress = (event) => onProgress("uploading", event.loaded, event.total || file.size);
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // not JSON
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
      else reject(failed(xhr.status, body, `${xhr.status} ${xhr.statusText}`));
    };
    xhr.onerror = () => reject(new ApiError(
      "the upload was cut off before the server answered (a file over the server's upload " +
      "limit, or the server went away)", 0, "UNAVAILABLE"));
    xhr.send(file);
  });
}

export function isAbort(error, signal) {
  return (signal && signal.aborted) || (error && error.name === "AbortError");
}
