// "Try it": classify an image (drop, pick, or the sample photo), classify typed texts, or
// compare sentences by similarity, on whichever model the page shows.

import { call } from "./api.js";
import { bars, base64Of, errorBox, h, percent } from "./dom.js";

const SAMPLE = "/static/sample.jpg";
const EXAMPLE_TEXTS = [
  "An absolutely wonderful evening, I loved it",
  "A dreadful, boring waste of time",
];
const EXAMPLE_SENTENCES = [
  "A cat sleeps on the warm windowsill.",
  "A kitten is napping in the sun by the window.",
  "The stock market fell sharply this morning.",
  "Investors sold shares as prices dropped.",
];

// The panel that fits `model` (a ModelInfo as JSON), or null when none does.
export function tryIt(model) {
  const spec = { name: model.name, version: Number(model.version || 0) };
  if (model.task === "IMAGE_CLASSIFICATION") return imagePanel(spec);
  if (model.task === "TEXT_CLASSIFICATION") return textPanel(spec);
  if (model.task === "TEXT_EMBEDDING") return similarityPanel(spec);
  return null;
}

function panel(title, ...children) {
  return h("section", { class: "panel tryit", "aria-labelledby": "tryit-title" },
    h("h2", { id: "tryit-title" }, title), ...children);
}

function imagePanel(spec) {
  const results = h("div", { class: "results", "aria-live": "polite" });
  const preview = h("img", { class: "preview", alt: "", hidden: true });
  const input = h("input", { type: "file", id: "tryit-file", accept: "image/*" });
  let previewUrl = null;

  async function classify(blob, name) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    preview.src = previewUrl;
    preview.alt = `the image classified: ${name}`;
    preview.hidden = false;
    results.replaceChildren(h("p", { class: "muted" }, `Classifying ${name}…`));
    try {
      const reply = await call("InferenceService", "Classify",
        { model: spec, images: [await base64Of(blob)], top_k: 5 });
      const predictions = reply.results[0].predictions;
      results.replaceChildren(
        h("p", { class: "result-text" }, `${predictions[0].label} (${percent(predictions[0].score)})`),
        bars(predictions));
    } catch (error) {
      results.replaceChildren(errorBox(error, `${name} could not be classified`));
    }
  }

  input.addEventListener("change", () => {
    if (input.files && input.files[0]) classify(input.files[0], input.files[0].name);
  });
  const zone = h("div", { class: "dropzone" },
    h("label", { for: "tryit-file" }, "Drop an image here, or choose one"),
    input,
    h("button", {
      type: "button", class: "quiet",
      onclick: async () => {
        try {
          const response = await fetch(SAMPLE);
          classify(await response.blob(), "the sample photo (a cat)");
        } catch (error) {
          results.replaceChildren(errorBox(error));
        }
      },
    }, "Try the sample photo"));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) classify(file, file.name);
  });
  return panel("Try it: classify an image",
    h("p", { class: "muted" }, "JPEG, PNG, WebP, BMP or GIF; decoded and preprocessed on the server."),
    zone, preview, results);
}

function lines(textarea) {
  return textarea.value.split("\n").map((line) => line.trim()).filter(Boolean);
}

function textPanel(spec) {
  const area = h("textarea", { id: "tryit-texts", rows: 4 });
  area.value = EXAMPLE_TEXTS.join("\n");
  const results = h("div", { class: "results", "aria-live": "polite" });
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const texts = lines(area);
      if (!texts.length) {
        results.replaceChildren(errorBox("Type at least one text, one per line."));
        return;
      }
      results.replaceChildren(h("p", { class: "muted" }, "Classifying…"));
      try {
        const reply = await call("InferenceService", "ClassifyText",
          { model: spec, texts, top_k: 5 });
        results.replaceChildren(...reply.results.map((result, i) => h("div", { class: "text-result" },
          h("p", { class: "result-text" }, `“${texts[i]}”: ${result.predictions[0].label}`),
          bars(result.predictions))));
      } catch (error) {
        results.replaceChildren(errorBox(error, "The texts could not be classified"));
      }
    },
  },
  h("label", { for: "tryit-texts" }, "Texts to classify, one per line"),
  area,
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Classify")));
  return panel("Try it: classify texts", form, results);
}

function similarityPanel(spec) {
  const area = h("textarea", { id: "tryit-sentences", rows: 5 });
  area.value = EXAMPLE_SENTENCES.join("\n");
  const results = h("div", { class: "results", "aria-live": "polite" });
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const texts = lines(area);
      if (texts.length < 2) {
        results.replaceChildren(errorBox("Type at least two sentences, one per line."));
        return;
      }
      results.replaceChildren(h("p", { class: "muted" }, "Embedding…"));
      try {
        const reply = await call("InferenceService", "Embed", { model: spec, texts });
        results.replaceChildren(similarityTable(texts, reply.embeddings.map((e) => e.values)));
      } catch (error) {
        results.replaceChildren(errorBox(error, "The sentences could not be embedded"));
      }
    },
  },
  h("label", { for: "tryit-sentences" }, "Sentences to compare, one per line"),
  area,
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Compare")));
  return panel("Try it: compare sentences", h("p", { class: "muted" },
    "Cosine similarity of the sentence embeddings: 1 is the same meaning, near 0 unrelated."),
  form, results);
}

function similarityTable(texts, vectors) {
  const cosine = (a, b) => {
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return dot / Math.sqrt(na * nb || 1);
  };
  const short = (text) => (text.length > 28 ? `${text.slice(0, 27)}…` : text);
  const head = h("tr", {}, h("th", { scope: "col" }, ""),
    texts.map((t, j) => h("th", { scope: "col", title: t }, `${j + 1}`)));
  const rows = texts.map((text, i) => h("tr", {},
    h("th", { scope: "row", title: text }, `${i + 1}. ${short(text)}`),
    texts.map((_, j) => {
      const score = cosine(vectors[i], vectors[j]);
      const cell = h("td", { title: `${short(texts[i])} / ${short(texts[j])}` }, score.toFixed(2));
      cell.style.backgroundColor = `rgba(59, 115, 201, ${Math.max(0, score) * 0.45})`;
      return cell;
    })));
  return h("div", { class: "table-scroll fit" },
    h("table", { class: "similarity", "aria-label": "cosine similarity of each pair" },
      h("thead", {}, head), h("tbody", {}, rows)));
}
