// A job's page: follows it live (WatchJob streams its events from the start, then as they
// happen): state, progress, a loss and accuracy curve per epoch, the log, cancel; at the
// end the metrics, the confusion matrix and "try it" on the new model.

import { call, isAbort, stream } from "./api.js";
import { errorBox, facts, h, heading, num, stateBadge, when } from "./dom.js";
import { lineChart } from "./chart.js";
import { evaluation } from "./model.js";
import { modelHref } from "./models.js";
import { tryIt } from "./tryit.js";

const ACTIVE = new Set(["QUEUED", "RUNNING"]);

export async function render(main, { params, signal }) {
  const id = decodeURIComponent(params[0]);
  let job = await call("FineTuneService", "GetJob", { job_id: id }, signal);
  document.title = `Job ${id} · Zoo`;
  const badge = h("span", { id: "job-state" }, stateBadge(job.state));
  main.append(heading(`Job ${id} `, badge));

  const summary = h("section", { class: "panel", "aria-labelledby": "job-summary" });
  const progressBar = h("progress", { id: "job-progress", max: 1, value: 0, "aria-label": "epochs done" });
  const progressText = h("span", { id: "job-progress-text" }, "");
  const stepText = h("p", { class: "muted", id: "job-step" }, "");
  const cancel = h("button", { type: "button", class: "danger", id: "cancel" }, "Cancel the job");
  const notice = h("div", { "aria-live": "assertive" });
  const charts = h("div", { class: "charts", id: "charts" });
  const log = h("ol", { class: "log", id: "job-log", "aria-live": "polite" });
  const outcome = h("div", { id: "job-outcome" });
  const hp = Object.entries(job.hyperparameters || {});

  function drawSummary() {
    summary.replaceChildren(h("h2", { id: "job-summary" }, "Summary"), facts([
      ["base model", h("a", { href: modelHref(job.base.name) }, job.base.name)],
      ["dataset", h("span", { class: "mono" }, job.dataset_id)],
      ["new model", job.result && job.result.name
        ? h("a", { href: modelHref(job.result.name, job.result.version) },
          `${job.result.name} v${num(job.result.version)}`)
        : job.output_name],
      ["hyper-parameters", hp.length ? hp.map(([k, v]) => `${k}=${v}`).join(", ") : "the defaults"],
      ["created", when(job.created_ms)],
      ["started", when(job.started_ms)],
      ["finished", when(job.finished_ms)],
      ["attempts", num(job.attempts) > 1 ? String(job.attempts) : null],
    ]));
    badge.replaceChildren(stateBadge(job.state));
    const epochs = num(job.epochs);
    progressBar.max = epochs || 1;
    progressBar.value = job.state === "SUCCEEDED" ? progressBar.max : Math.min(num(job.epoch), epochs);
    progressText.textContent = epochs ? `epoch ${Math.min(num(job.epoch), epochs)} of ${epochs}` : "";
    cancel.hidden = !ACTIVE.has(job.state);
  }

  // Epochs as they arrive: x counts epochs over both phases.
  const history = { loss: [], val_loss: [], accuracy: [], val_accuracy: [] };
  function drawCharts() {
    const series = (key, name, dashed) => ({ name, points: history[key], dashed });
    charts.replaceChildren(
      lineChart("loss", [series("loss", "train"), series("val_loss", "validation", true)], { yMin: 0 }),
      lineChart("accuracy", [series("accuracy", "train"), series("val_accuracy", "validation", true)],
        { yMin: 0, yMax: 1 }));
  }

  function addLog(event) {
    if (!event.message) return;
    const time = num(event.time_ms) ? new Date(num(event.time_ms)).toLocaleTimeString() : "";
    log.append(h("li", { "data-kind": event.kind }, h("time", {}, time), event.message));
    log.scrollTop = log.scrollHeight;
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    notice.replaceChildren(h("p", {}, "Cancelling (the job stops after a checkpoint)…"));
    try {
      job = await call("FineTuneService", "CancelJob", { job_id: id });
      drawSummary();
      notice.replaceChildren();
    } catch (error) {
      notice.replaceChildren(errorBox(error, "Cancelling failed"));
    } finally {
      cancel.disabled = false;
    }
  });

  main.append(
    h("div", { class: "grid" },
      summary,
      h("section", { class: "panel", "aria-labelledby": "job-progress-title" },
        h("h2", { id: "job-progress-title" }, "Progress"),
        h("div", { class: "progress-line" }, progressBar, progressText), stepText,
        h("div", { class: "actions" }, cancel), notice)),
    h("section", { class: "panel", "aria-labelledby": "curves-title" },
      h("h2", { id: "curves-title" }, "Training curves"), charts),
    h("section", { class: "panel", "aria-labelledby": "log-title" },
      h("h2", { id: "log-title" }, "Events"), log),
    outcome);
  drawSummary();
  drawCharts();
  follow().catch((error) => {
    if (!isAbort(error, signal)) outcome.append(errorBox(error, "Following the job failed"));
  });

  async function follow() {
    await watch();
    job = await call("FineTuneService", "GetJob", { job_id: id }, signal);
    drawSummary();
    stepText.textContent = "";
    await drawOutcome(job, outcome, signal);
  }

  async function watch() {
    for await (const event of stream("FineTuneService", "WatchJob", { job_id: id }, signal)) {
      addLog(event);
      if (event.kind === "EPOCH") {
        const x = history.loss.length + 1;
        history.loss.push([x, Number(event.loss)]);
        for (const key of ["val_loss", "accuracy", "val_accuracy"]) {
          if (event.metrics && event.metrics[key] !== undefined) history[key].push([x, Number(event.metrics[key])]);
        }
        drawCharts();
        job.epoch = Math.max(num(job.epoch), x);
        stepText.textContent = "";
        drawSummary();
      } else if (event.kind === "STEP") {
        stepText.textContent = `step ${event.step}${num(event.steps) ? ` of ${event.steps}` : ""} ` +
          `of the current epoch, loss ${Number(event.loss).toFixed(4)}`;
      } else if (event.kind === "STATE" || event.kind === "PHASE") {
        job = await call("FineTuneService", "GetJob", { job_id: id }, signal);
        drawSummary();
      }
    }
  }
}

async function drawOutcome(job, outcome, signal) {
  if (job.state === "FAILED") {
    outcome.append(errorBox(job.error || "the job failed", "The job failed"));
    return;
  }
  if (job.state === "CANCELLED") {
    outcome.append(h("p", { class: "notice" }, "The job was cancelled."));
    return;
  }
  if (job.state !== "SUCCEEDED" || !job.result || !job.result.name) return;
  const reply = await call("ModelService", "GetModel",
    { model: { name: job.result.name, version: num(job.result.version) } }, signal);
  const model = reply.model;
  outcome.append(
    h("p", { class: "notice", id: "job-done" }, "Done: ",
      h("a", { href: modelHref(model.name, model.version) }, `${model.name} v${num(model.version)}`),
      " is served now."),
    h("div", { class: "grid" }, h("div", {}, ...evaluation(model)), tryIt(model)));
}
