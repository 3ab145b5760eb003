// Fine-tune: upload a dataset, pick a base and the hyper-parameters, start a job. The form's
// fields come from the server's one hyper-parameter schema (GET /api/web/settings).

import { call, formatOf, settings, uploadDataset } from "./api.js";
import { errorBox, formatBytes, h, heading, percent, taskLabel } from "./dom.js";

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const PREFERRED_BASES = ["mobilenet_v2", "minilm_l6_v2"];

function humanize(name) {
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function defaultText(rule) {
  if (rule.default === null) return rule.name === "image_size" ? "the base's own" : "off";
  return String(rule.default);
}

// One input per hyper-parameter, typed, bounded and explained as the schema says.
function field(rule) {
  const id = `hp-${rule.name}`;
  const help = h("small", { id: `${id}-help` }, rule.help,
    rule.bounds ? ` · range ${rule.bounds}` : "", ` · ${rule.flag}`);
  if (rule.kind === "bool") {
    const box = h("input", { type: "checkbox", id, name: rule.name, "aria-describedby": `${id}-help` });
    box.checked = Boolean(rule.default);
    return h("div", { class: "field check", "data-hp": rule.name, "data-image-only": rule.image_only ? "1" : null },
      box, h("div", {}, h("label", { for: id }, humanize(rule.name)), h("br"), help));
  }
  const input = h("input", {
    type: "number", id, name: rule.name, inputmode: rule.kind === "int" ? "numeric" : "decimal",
    step: rule.kind === "int" ? "1" : "any", placeholder: `default ${defaultText(rule)}`,
    "aria-describedby": `${id}-help`,
  });
  if (rule.low !== null && !rule.low_open) input.min = String(rule.low);
  if (rule.high !== null && !rule.high_open) input.max = String(rule.high);
  return h("div", { class: "field", "data-hp": rule.name, "data-image-only": rule.image_only ? "1" : null },
    h("label", { for: id }, humanize(rule.name)), input, help);
}

// The values the user set (empty fields keep the defaults), as the request's JSON.
export function chosen(form, rules) {
  const values = {};
  for (const rule of rules) {
    const input = form.elements.namedItem(rule.name);
    if (!input || input.disabled) continue;
    if (rule.kind === "bool") {
      if (input.checked !== Boolean(rule.default)) values[rule.name] = input.checked;
    } else if (input.value.trim() !== "") {
      values[rule.name] = Number(input.value);
    }
  }
  return values;
}

export async function render(main, { query, signal }) {
  main.append(heading("Fine-tune a model"), h("p", { class: "lead" },
    "Upload your data, pick a pretrained base, and start: the job trains on the server and its " +
    "model is served as soon as it is done."));
  const [config, list] = await Promise.all([
    settings(), call("ModelService", "ListModels", {}, signal)]);
  const rules = config.hyperparameters;
  const bases = list.models.filter((m) => m.origin === "REGISTRY");
  const suffixes = config.dataset_formats.flatMap((f) => f.suffixes);

  const file = h("input", { type: "file", id: "dataset", name: "dataset", required: true,
    accept: suffixes.join(","), "aria-describedby": "dataset-help" });
  const base = h("select", { id: "base", name: "base", required: true });
  const output = h("input", { type: "text", id: "output-name", name: "output_name", required: true,
    pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}", autocomplete: "off", "aria-describedby": "output-help" });
  const dataKind = h("p", { class: "muted", id: "data-kind", "aria-live": "polite" });
  const status = h("div", { id: "finetune-status", "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "start" }, "Upload and start");
  const wanted = query.get("base");

  function fillBases(images) {
    const fitting = bases.filter((m) => (images === null ? true
      : images ? m.task === "IMAGE_CLASSIFICATION" : m.task !== "IMAGE_CLASSIFICATION"));
    const keep = base.value || wanted;
    base.replaceChildren(...fitting.map((m) => h("option", { value: m.name },
      `${m.name} (${taskLabel(m.task)}${m.params ? `, ${(Number(m.params) / 1e6).toFixed(1)}M` : ""})`)));
    const pick = [keep, ...PREFERRED_BASES].find((name) => fitting.some((m) => m.name === name));
    if (pick) base.value = pick;
    showFields();
  }

  function isImageBase() {
    const m = bases.find((b) => b.name === base.value);
    return !m || m.task === "IMAGE_CLASSIFICATION";
  }

  const mainFields = h("div", { class: "form-grid" }, rules.filter((r) => r.main).map(field));
  const moreFields = h("div", { class: "form-grid" }, rules.filter((r) => !r.main).map(field));
  function showFields() {
    const image = isImageBase();
    for (const el of main.querySelectorAll("[data-image-only]")) {
      el.hidden = !image;
      for (const input of el.querySelectorAll("input")) input.disabled = !image;
    }
  }

  file.addEventListener("change", () => {
    status.replaceChildren();
    const picked = file.files && file.files[0];
    if (!picked) { dataKind.textContent = ""; fillBases(null); return; }
    const format = formatOf(picked.name, config.dataset_formats);
    if (!format) {
      dataKind.textContent = "";
      status.replaceChildren(errorBox(`${picked.name} is not a dataset this server takes: upload ` +
        `a file ending in ${suffixes.join(", ")}.`));
      return;
    }
    dataKind.textContent = `${picked.name}: ${formatBytes(picked.size)}, ` +
      `${format.images ? "images in class folders" : "texts with labels"} (${format.name})`;
    if (!output.value) {
      output.value = picked.name.replace(/\.(tar\.gz|[a-z0-9]+)$/i, "").replace(/[^A-Za-z0-9._-]+/g, "-")
        .replace(/^[^A-Za-z0-9]+/, "").slice(0, 64) || "my-model";
    }
    fillBases(format.images);
  });
  base.addEventListener("change", showFields);

  const form = h("form", { id: "finetune-form" },
    h("fieldset", {}, h("legend", {}, "Data"),
      h("div", { class: "stack" },
        h("div", { class: "field" }, h("label", { for: "dataset" }, "Dataset file"), file,
          h("small", { id: "dataset-help", class: "muted" },
            `A .zip or .tar(.gz) of class folders (cats/1.jpg, dogs/2.png), or a .csv / .jsonl ` +
            `with text and label columns; at most ${formatBytes(config.max_upload_bytes)}.`)),
        dataKind)),
    h("fieldset", {}, h("legend", {}, "Model"),
      h("div", { class: "form-grid" },
        h("div", { class: "field" }, h("label", { for: "base" }, "Base model"), base),
        h("div", { class: "field" }, h("label", { for: "output-name" }, "Name of the new model"), output,
          h("small", { id: "output-help", class: "muted" },
            "Letters, digits, '.', '_' and '-'; each job under the same name adds a version.")))),
    h("fieldset", {}, h("legend", {}, "Hyper-parameters"),
      h("p", { class: "muted" }, "Empty fields keep the default shown."),
      mainFields,
      h("details", {}, h("summary", {}, "More settings"), moreFields)),
    h("div", { class: "actions" }, submit),
    status);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const picked = file.files && file.files[0];
    const format = picked && formatOf(picked.name, config.dataset_formats);
    if (!picked || !format) {
      status.replaceChildren(errorBox("Choose a dataset file first."));
      return;
    }
    if (!NAME.test(output.value)) {
      status.replaceChildren(errorBox("The model's name may hold letters, digits, '.', '_' and '-' " +
        "(at most 64, starting with a letter or digit)."));
      output.focus();
      return;
    }
    if (picked.size > config.max_upload_bytes) {
      status.replaceChildren(errorBox(`${picked.name} is ${formatBytes(picked.size)}, over this ` +
        `server's upload limit of ${formatBytes(config.max_upload_bytes)} (--max-upload-mb).`));
      return;
    }
    submit.disabled = true;
    const bar = h("progress", { max: 1, value: 0, "aria-label": "upload progress" });
    const text = h("span", {}, "");
    status.replaceChildren(h("div", { class: "progress-line" }, bar, text));
    try {
      const dataset = await uploadDataset(picked, format.name, picked.name, (stage, done, total) => {
        bar.max = total || 1;
        bar.value = done;
        text.textContent = `${stage}: ${percent(total ? done / total : 0, 0)}`;
      });
      text.textContent = `uploaded: ${dataset.examples} examples in ${dataset.classes.length} classes ` +
        `(${dataset.classes.slice(0, 8).join(", ")}${dataset.classes.length > 8 ? ", …" : ""}); starting…`;
      const job = await call("FineTuneService", "CreateJob", {
        base: { name: base.value }, dataset_id: dataset.dataset_id, output_name: output.value,
        hyperparameters: chosen(form, rules),
      });
      window.location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (error) {
      status.replaceChildren(errorBox(error, "The fine-tune could not start"));
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  fillBases(null);
}
