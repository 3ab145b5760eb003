// Models: the registry and the fine-tuned models as one searchable, sortable table.

import { call } from "./api.js";
import { formatBytes, formatParams, h, heading, num, taskLabel, yesNo } from "./dom.js";

// One row per model name: a fine-tuned name's versions fold into one row (its latest).
export function rowsOf(models) {
  const derived = new Map();
  const latest = new Map();
  for (const m of models) {
    if (m.origin !== "FINETUNED") continue;
    derived.set(m.base, (derived.get(m.base) || 0) + 1);
    const seen = latest.get(m.name);
    if (!seen || num(m.version) > num(seen.model.version)) {
      latest.set(m.name, { model: m, versions: [...(seen ? seen.versions : []), num(m.version)] });
    } else {
      seen.versions.push(num(m.version));
    }
  }
  const rows = [];
  for (const m of models) {
    if (m.origin === "FINETUNED") {
      const entry = latest.get(m.name);
      if (entry.model !== m) continue;
      rows.push({ model: m, finetuned: entry.versions.sort((a, b) => a - b) });
    } else {
      rows.push({ model: m, finetuned: derived.get(m.name) || 0 });
    }
  }
  return rows;
}

export function modelHref(model, version = 0) {
  const v = num(version);
  return `#/models/${encodeURIComponent(model)}${v ? `/v/${v}` : ""}`;
}

export function inputOf(m, sep = "×") {
  if (m.task === "IMAGE_CLASSIFICATION") {
    return m.input_size && m.input_size.length ? m.input_size.join(sep) : "—";
  }
  return m.max_length ? `${m.max_length} tokens` : "text";
}

const COLUMNS = [
  { key: "name", label: "Name", value: (r) => r.model.name,
    cell: (r) => h("a", { href: modelHref(r.model.name) }, r.model.name) },
  { key: "task", label: "Task", value: (r) => r.model.task, cell: (r) => taskLabel(r.model.task) },
  { key: "params", label: "Parameters", num: true, value: (r) => num(r.model.params),
    cell: (r) => formatParams(r.model.params) },
  { key: "input", label: "Input", value: (r) => num((r.model.input_size || [])[0]) || num(r.model.max_length),
    cell: (r) => inputOf(r.model) },
  { key: "top1", label: "Top-1", num: true,
    value: (r) => (r.model.top1 !== undefined ? r.model.top1
      : r.model.metrics && r.model.metrics.accuracy !== undefined ? 100 * r.model.metrics.accuracy : -1),
    cell: (r) => (r.model.top1 !== undefined ? `${r.model.top1.toFixed(1)}%`
      : r.model.metrics && r.model.metrics.accuracy !== undefined
        ? h("span", { title: "validation accuracy of the fine-tune" }, `${(100 * r.model.metrics.accuracy).toFixed(1)}% val`)
        : "—") },
  { key: "size", label: "Size", num: true, value: (r) => num(r.model.size_bytes),
    cell: (r) => formatBytes(r.model.size_bytes) },
  { key: "cached", label: "Cached", value: (r) => (r.model.cached ? 1 : 0), cell: (r) => yesNo(r.model.cached) },
  { key: "loaded", label: "Loaded", value: (r) => (r.model.loaded ? 1 : 0), cell: (r) => yesNo(r.model.loaded) },
  { key: "finetuned", label: "Fine-tuned versions", num: true,
    value: (r) => (Array.isArray(r.finetuned) ? r.finetuned.length : r.finetuned),
    cell: (r) => (Array.isArray(r.finetuned)
      ? h("span", { title: `fine-tuned from ${r.model.base}` },
        r.finetuned.map((v, i) => [i ? ", " : "", h("a", { href: modelHref(r.model.name, v) }, `v${v}`)]))
      : r.finetuned ? `${r.finetuned} from it` : "—") },
];

export async function render(main, { signal }) {
  main.append(heading("Models"),
    h("p", { class: "lead" }, "Every pretrained model in the registry and every fine-tuned model this server " +
      "serves. Open one to see its card and try it."));
  const reply = await call("ModelService", "ListModels", {}, signal);
  const rows = rowsOf(reply.models);
  const tasks = [...new Set(reply.models.map((m) => m.task))].sort();
  const state = { query: "", task: "", origin: "", sort: "name", descending: false };

  const search = h("input", { type: "search", id: "model-search", placeholder: "resnet, bert, cats…",
    autocomplete: "off" });
  const task = h("select", { id: "model-task" }, h("option", { value: "" }, "all tasks"),
    tasks.map((t) => h("option", { value: t }, taskLabel(t))));
  const origin = h("select", { id: "model-origin" }, h("option", { value: "" }, "all"),
    h("option", { value: "REGISTRY" }, "pretrained"), h("option", { value: "FINETUNED" }, "fine-tuned"));
  const count = h("p", { class: "muted", id: "model-count", "aria-live": "polite" });
  const headRow = h("tr");
  const body = h("tbody");

  function sortBy(key) {
    state.descending = state.sort === key ? !state.descending : false;
    state.sort = key;
    draw();
  }
  for (const column of COLUMNS) {
    headRow.append(h("th", { scope: "col", class: column.num ? "num" : null, "data-key": column.key },
      h("button", { type: "button", class: "sort", onclick: () => sortBy(column.key) }, column.label)));
  }

  function draw() {
    const query = state.query.toLowerCase();
    const shown = rows.filter((r) => (!state.task || r.model.task === state.task)
      && (!state.origin || r.model.origin === state.origin)
      && (!query || [r.model.name, r.model.family, r.model.base, r.model.description]
        .some((text) => String(text || "").toLowerCase().includes(query))));
    const column = COLUMNS.find((c) => c.key === state.sort);
    shown.sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return (state.descending ? -order : order) || a.model.name.localeCompare(b.model.name);
    });
    for (const th of headRow.children) {
      th.setAttribute("aria-sort", th.dataset.key === state.sort
        ? (state.descending ? "descending" : "ascending") : "none");
    }
    body.replaceChildren(...shown.map((r) => h("tr", { "data-model": r.model.name },
      COLUMNS.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r))))));
    count.textContent = `${shown.length} of ${rows.length} models`;
  }

  search.addEventListener("input", () => { state.query = search.value.trim(); draw(); });
  task.addEventListener("change", () => { state.task = task.value; draw(); });
  origin.addEventListener("change", () => { state.origin = origin.value; draw(); });
  main.append(
    h("div", { class: "toolbar", role: "search" },
      h("div", { class: "field" }, h("label", { for: "model-search" }, "Search"), search),
      h("div", { class: "field" }, h("label", { for: "model-task" }, "Task"), task),
      h("div", { class: "field" }, h("label", { for: "model-origin" }, "Origin"), origin)),
    count,
    h("div", { class: "table-scroll" }, h("table", { id: "models" }, h("thead", {}, headRow), body)));
  draw();
}
