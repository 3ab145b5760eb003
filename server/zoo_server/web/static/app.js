// The page's shell: a hash router over the four pages, and the token dialog.

import { getToken, isAbort, setToken } from "./api.js";
import { errorBox, h } from "./dom.js";
import * as finetune from "./finetune.js";
import * as job from "./job.js";
import * as jobs from "./jobs.js";
import * as model from "./model.js";
import * as models from "./models.js";

const ROUTES = [
  { pattern: /^\/(?:models)?$/, page: models, section: "models", title: "Models" },
  { pattern: /^\/models\/([^/]+)(?:\/v\/(\d+))?$/, page: model, section: "models" },
  { pattern: /^\/finetune$/, page: finetune, section: "finetune", title: "Fine-tune" },
  { pattern: /^\/jobs$/, page: jobs, section: "jobs", title: "Jobs" },
  { pattern: /^\/jobs\/([^/]+)$/, page: job, section: "jobs" },
];

const main = document.getElementById("main");
let current = null;

async function route() {
  const hash = window.location.hash || "#/";
  if (!hash.startsWith("#/")) return; // an anchor on the page (the skip link)
  const [path, search] = hash.slice(1).split("?", 2);
  const found = ROUTES.map((r) => ({ r, match: path.match(r.pattern) })).find((x) => x.match);
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  for (const link of document.querySelectorAll("header nav a")) {
    if (found && link.dataset.section === found.r.section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  if (!found) {
    main.append(h("h1", { tabindex: "-1" }, "Not found"),
      h("p", {}, "No page here. ", h("a", { href: "#/" }, "See the models.")));
    return;
  }
  document.title = found.r.title ? `${found.r.title} · Zoo` : "Zoo";
  const params = found.match.slice(1);
  try {
    await found.r.page.render(main, {
      params, query: new URLSearchParams(search || ""), signal: controller.signal,
    });
  } catch (error) {
    if (isAbort(error, controller.signal)) return;
    main.append(errorBox(error, error.status === 401 ? "This server needs a token" : "Something went wrong"));
  }
  if (current === controller && !main.contains(document.activeElement)) {
    const title = main.querySelector("h1");
    if (title) title.focus({ preventScroll: true });
  }
}

// The token: asked for when the server answers 401, or when the user opens the dialog.
const dialog = document.getElementById("token-dialog");
const input = document.getElementById("token-input");
const reason = document.getElementById("token-reason");
const defaultReason = reason.textContent;

function askToken(message) {
  if (dialog.open) return;
  reason.textContent = message ? `${message}. ${defaultReason}` : defaultReason;
  input.value = getToken();
  dialog.showModal();
  input.focus();
}

document.getElementById("token-button").addEventListener("click", () => askToken(""));
dialog.addEventListener("close", () => {
  if (dialog.returnValue === "save") setToken(input.value.trim());
  else if (dialog.returnValue === "clear") setToken("");
  if (dialog.returnValue === "save" || dialog.returnValue === "clear") route();
});
window.addEventListener("zoo:unauthorized", (event) => askToken(event.detail));
window.addEventListener("hashchange", route);
route();
