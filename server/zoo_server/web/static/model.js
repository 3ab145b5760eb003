// A model's page: its card, weight files, fetch with progress, load, and "try it".

import { call, stream } from "./api.js";
import {
  errorBox, facts, formatBytes, formatParams, h, heading, num, percent, table, taskLabel, yesNo,
} from "./dom.js";
import { inputOf, modelHref } from "./models.js";
import { tryIt } from "./tryit.js";

const SOURCES = {
  keras: "Keras applications (Google's storage, or ZOO_KERAS_MIRROR)",
  huggingface: "Hugging Face Hub, pinned to a commit (or the installed package that carries it)",
  finetuned: "fine-tuned on this server",
};

export async function render(main, { params, signal }) {
  const name = decodeURIComponent(params[0]);
  const version = num(params[1]);
  const reply = await call("ModelService", "GetModel", { model: { name, version } }, signal);
  const model = reply.model;
  const finetuned = model.origin === "FINETUNED";
  const title = finetuned ? `${model.name} v${num(model.version)}` : model.name;
  document.title = `${title} · Zoo`;
  main.append(heading(title), h("p", { class: "lead" }, model.description || taskLabel(model.task)));

  const card = h("section", { class: "panel", "aria-labelledby": "card-title" });
  const drawCard = (m) => card.replaceChildren(h("h2", { id: "card-title" }, "Model card"), facts([
    ["task", taskLabel(m.task)],
    ["family", m.family],
    ["fine-tuned from", finetuned && m.base ? h("a", { href: modelHref(m.base) }, m.base) : null],
    ["source", SOURCES[m.source] || m.source],
    ["license", m.license],
    ["parameters", num(m.params) ? `${formatParams(m.params)} (${num(m.params).toLocaleString()})` : null],
    ["input", m.task === "IMAGE_CLASSIFICATION" ? `${inputOf(m, " × ")} RGB`
      : m.max_length ? `texts of up to ${m.max_length} tokens` : "texts"],
    ["preprocessing", m.preprocessing],
    ["classes", m.num_classes ? String(m.num_classes) : null],
    ["ImageNet top-1 / top-5", m.top1 !== undefined ? `${m.top1}% / ${m.top5 ?? "—"}%` : null],
    ["size", formatBytes(m.size_bytes)],
    ["cached on the server", yesNo(m.cached)],
    ["loaded in memory", yesNo(m.loaded)],
  ]));
  drawCard(model);

  const status = h("div", { class: "status", "aria-live": "polite" });
  const actions = h("div", { class: "actions" });
  const refresh = async () => {
    const fresh = await call("ModelService", "GetModel", { model: { name, version } });
    drawCard(fresh.model);
    files.replaceChildren(...filesSection(fresh.model));
  };
  if (!finetuned) {
    actions.append(h("button", {
      type: "button", id: "fetch",
      onclick: (event) => fetchWeights(model, event.target, status, refresh),
    }, model.cached ? "Fetch again (verify)" : "Fetch the weights"));
  }
  actions.append(h("button", {
    type: "button", class: "quiet", id: "load",
    onclick: async (event) => {
      event.target.disabled = true;
      status.replaceChildren(h("p", {}, "Loading into memory…"));
      try {
        const loaded = await call("ModelService", "LoadModel", { model: { name, version } });
        status.replaceChildren(h("p", {}, num(loaded.seconds)
          ? `Loaded in ${Number(loaded.seconds).toFixed(1)} s.` : "Already loaded."));
        await refresh();
      } catch (error) {
        status.replaceChildren(errorBox(error, "Loading failed"));
      } finally {
        event.target.disabled = false;
      }
    },
  }, "Load into memory"));
  if (!finetuned && model.task !== "TEXT_CLASSIFICATION") {
    actions.append(h("a", { class: "button quiet", href: `#/finetune?base=${encodeURIComponent(name)}` },
      "Fine-tune from it"));
  }
  const files = h("section", { class: "panel", "aria-labelledby": "files-title" }, ...filesSection(model));
  const left = h("div", {}, card, h("div", { class: "panel" }, actions, status));
  const right = h("div", {}, tryIt(model));
  main.append(h("div", { class: "grid" }, left, right), files);
  if (finetuned) {
    main.append(...evaluation(model));
    main.append(await versionsSection(model, signal));
  }
}

function filesSection(model) {
  const rows = (model.files || []).map((f) => [
    h("span", { class: "mono" }, f.name),
    f.origin ? h("span", { class: "mono" }, f.origin) : "—",
    formatBytes(f.size),
    f.checksum ? h("span", { class: "mono", title: f.checksum_recorded
      ? "no checksum is pinned by the origin; recorded at the first download" : "pinned" },
    f.checksum + (f.checksum_recorded ? " (recorded)" : ""))
      : h("span", { class: "muted" }, f.origin ? "none pinned: recorded at the first download" : "—"),
    yesNo(f.cached),
  ]);
  return [h("h2", { id: "files-title" }, "Weight files"),
    rows.length ? table(["file", "origin", "size", "checksum", "cached"], rows, { id: "files" })
      : h("p", { class: "muted" }, "No files listed.")];
}

async function fetchWeights(model, button, status, refresh) {
  button.disabled = true;
  const bar = h("progress", { max: 1, value: 0, "aria-label": "download progress" });
  const text = h("span", {}, "starting…");
  status.replaceChildren(h("div", { class: "progress-line" }, bar, text));
  try {
    for await (const p of stream("ModelService", "FetchModel", { model: { name: model.name } })) {
      const done = num(p.bytes_done);
      const total = num(p.bytes_total);
      if (total) { bar.max = total; bar.value = done; } else bar.removeAttribute("value");
      text.textContent = p.done ? `${p.file}: verified and cached (${formatBytes(done)})`
        : `${p.file}: ${formatBytes(done)}${total ? ` of ${formatBytes(total)}` : ""}`;
      if (p.done) { bar.max = 1; bar.value = 1; }
    }
    await refresh();
  } catch (error) {
    status.replaceChildren(errorBox(error, "Fetching failed"));
  } finally {
    button.disabled = false;
  }
}

// A fine-tuned model's validation metrics and confusion matrix.
export function evaluation(model) {
  const metrics = model.metrics || {};
  const shown = Object.entries(metrics).filter(([key]) => key !== "examples")
    .sort(([a], [b]) => (a === "accuracy" ? -1 : b === "accuracy" ? 1 : a.localeCompare(b)));
  const out = [];
  if (shown.length) {
    out.push(h("section", { class: "panel", "aria-labelledby": "metrics-title" },
      h("h2", { id: "metrics-title" }, "Validation metrics"),
      facts([...shown.map(([key, value]) => [key.replace(/_/g, " "),
        key.includes("accuracy") || key.includes("f1") ? percent(value) : Number(value).toFixed(4)]),
      ["validation examples", metrics.examples !== undefined ? String(metrics.examples) : null]])));
  }
  if (model.confusion_matrix && model.confusion_matrix.length) {
    out.push(h("section", { class: "panel", "aria-labelledby": "confusion-title" },
      h("h2", { id: "confusion-title" }, "Confusion matrix"),
      h("p", { class: "muted" }, "Rows: the true class; columns: the predicted class (validation data)."),
      confusionTable(model.labels || [], model.confusion_matrix.map((row) => (row.counts || []).map(num)))));
  }
  return out;
}

function confusionTable(labels, matrix) {
  const biggest = Math.max(1, ...matrix.flat());
  return h("div", { class: "table-scroll fit" }, h("table", { class: "confusion", id: "confusion" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "true \\ predicted"),
      labels.map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, matrix.map((row, i) => h("tr", {}, h("th", { scope: "row" }, labels[i] ?? String(i)),
      row.map((count, j) => {
        const cell = h("td", { class: i === j ? "diag" : null }, String(count));
        if (count) cell.style.backgroundColor = `rgba(${i === j ? "29, 122, 70" : "179, 38, 30"}, ${0.12 + 0.5 * count / biggest})`;
        return cell;
      }))))));
}

async function versionsSection(model, signal) {
  const reply = await call("ModelService", "ListModels", { pattern: model.name }, signal);
  const versions = reply.models.filter((m) => m.name === model.name && m.origin === "FINETUNED")
    .sort((a, b) => num(b.version) - num(a.version));
  return h("section", { class: "panel", "aria-labelledby": "versions-title" },
    h("h2", { id: "versions-title" }, "Versions"),
    table(["version", "accuracy", "loaded", "description"], versions.map((m) => [
      num(m.version) === num(model.version) ? `v${num(m.version)} (this one)`
        : h("a", { href: modelHref(m.name, m.version) }, `v${num(m.version)}`),
      m.metrics && m.metrics.accuracy !== undefined ? percent(m.metrics.accuracy) : "—",
      yesNo(m.loaded),
      m.description,
    ])));
}
