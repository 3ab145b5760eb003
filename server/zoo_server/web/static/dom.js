// Small DOM helpers. Everything a server or a dataset says is put in as text, never as
// HTML: labels come from uploaded data.

export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.setAttribute("class", value);
    } else if (key in el && !tag.startsWith("svg:") && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// 64-bit integers arrive as strings (protobuf's JSON mapping).
export const num = (value) => Number(value || 0);

export function formatParams(n) {
  n = num(n);
  if (!n) return "—";
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)}K`;
  return String(n);
}

export function formatBytes(n) {
  n = num(n);
  if (!n) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
}

export const percent = (x, digits = 1) => `${(100 * x).toFixed(digits)}%`;

export function taskLabel(task) {
  return String(task || "").toLowerCase().replace(/_/g, " ");
}

export function when(ms) {
  ms = num(ms);
  if (!ms) return "—";
  return new Date(ms).toLocaleString();
}

export function yesNo(value, yes = "yes", no = "no") {
  return h("span", { class: value ? "yes" : "no" }, value ? yes : no);
}

// An error as the user sees it: what failed and the server's own words.
export function errorBox(error, what = "") {
  const message = error && error.message ? error.message : String(error);
  return h("div", { class: "error", role: "alert" },
    what ? h("strong", {}, what) : null, message);
}

// Top-k predictions as labelled bars.
export function bars(predictions) {
  return h("ol", { class: "bars", "aria-label": "predictions, best first" },
    predictions.map((p) => {
      const fill = h("span");
      fill.style.width = `${Math.max(0, Math.min(1, p.score)) * 100}%`;
      return h("li", {},
        h("span", { class: "label", title: p.label }, p.label),
        h("span", { class: "bar", "aria-hidden": "true" }, fill),
        h("span", { class: "score" }, percent(p.score)));
    }));
}

export function facts(rows) {
  return h("dl", { class: "facts" },
    rows.filter(([, value]) => value !== null && value !== undefined && value !== "")
      .flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, value)]));
}

export function table(head, rows, attrs = {}) {
  return h("div", { class: "table-scroll" },
    h("table", attrs,
      h("thead", {}, h("tr", {}, head.map((cell) => h("th", { scope: "col" }, cell)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell)))))));
}

export function heading(text, ...rest) {
  return h("h1", { tabindex: "-1" }, text, ...rest);
}

export function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, String(state || "").toLowerCase());
}

// Reads a File as base64, for the `bytes` fields of a JSON request.
export function base64Of(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}
