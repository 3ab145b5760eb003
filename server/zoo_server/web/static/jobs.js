// Jobs: every fine-tune job with its state and progress, and the fine-tuned models served.

import { call } from "./api.js";
import { h, heading, num, percent, stateBadge, table, when, yesNo } from "./dom.js";
import { modelHref, rowsOf } from "./models.js";

const ACTIVE = new Set(["QUEUED", "RUNNING"]);
const REFRESH_MS = 2000;

export function progressOf(job) {
  const epochs = num(job.epochs);
  const epoch = Math.min(num(job.epoch), epochs || num(job.epoch));
  const done = job.state === "SUCCEEDED" ? 1 : epochs ? epoch / epochs : 0;
  return h("div", { class: "progress-line" },
    h("progress", { max: 1, value: done, "aria-label": `job ${job.id} progress` }),
    h("span", {}, epochs ? `${epoch}/${epochs}` : "—"));
}

function jobRow(job) {
  const result = job.result && job.result.name
    ? h("a", { href: modelHref(job.result.name, job.result.version) },
      `${job.result.name} v${num(job.result.version)}`)
    : job.output_name;
  return [
    h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono" }, job.id),
    stateBadge(job.state),
    h("a", { href: modelHref(job.base.name) }, job.base.name),
    h("span", { class: "mono" }, job.dataset_id),
    result,
    progressOf(job),
    job.metrics && job.metrics.val_accuracy !== undefined ? percent(job.metrics.val_accuracy)
      : job.metrics && job.metrics.accuracy !== undefined ? percent(job.metrics.accuracy) : "—",
    when(job.created_ms),
  ];
}

export async function render(main, { signal }) {
  main.append(heading("Jobs"), h("p", { class: "lead" },
    "Fine-tune jobs, newest first (refreshed while any is running), and the fine-tuned models this " +
    "server serves."));
  const jobsBox = h("section", { "aria-labelledby": "jobs-title" });
  const servedBox = h("section", { "aria-labelledby": "served-title" });
  main.append(h("div", { class: "actions" }, h("a", { class: "button", href: "#/finetune" }, "New fine-tune")),
    jobsBox, servedBox);

  async function draw() {
    const [jobs, models] = await Promise.all([
      call("FineTuneService", "ListJobs", { limit: 100 }, signal),
      call("ModelService", "ListModels", {}, signal)]);
    jobsBox.replaceChildren(h("h2", { id: "jobs-title" }, `Jobs (${jobs.jobs.length})`),
      jobs.jobs.length
        ? table(["job", "state", "base", "dataset", "model", "progress", "accuracy", "created"],
          jobs.jobs.map(jobRow), { id: "jobs" })
        : h("p", { class: "muted" }, "No jobs yet."));
    const served = rowsOf(models.models.filter((m) => m.origin === "FINETUNED"));
    servedBox.replaceChildren(h("h2", { id: "served-title" }, "Served fine-tuned models"),
      served.length
        ? table(["model", "versions", "task", "base", "validation accuracy", "loaded"], served.map((r) => [
          h("a", { href: modelHref(r.model.name) }, r.model.name),
          r.finetuned.map((v, i) => [i ? ", " : "", h("a", { href: modelHref(r.model.name, v) }, `v${v}`)]),
          r.model.task.toLowerCase().replace(/_/g, " "),
          h("a", { href: modelHref(r.model.base) }, r.model.base),
          r.model.metrics && r.model.metrics.accuracy !== undefined ? percent(r.model.metrics.accuracy) : "—",
          yesNo(r.model.loaded),
        ]), { id: "served" })
        : h("p", { class: "muted" }, "None yet: a finished job's model appears here."));
    return jobs.jobs.some((job) => ACTIVE.has(job.state));
  }

  let active = await draw();
  const timer = setInterval(async () => {
    if (!active || signal.aborted) return;
    try {
      active = await draw();
    } catch {
      // a refresh that failed (the page was left, the server restarts): the next one retries
    }
  }, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
