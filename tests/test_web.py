"""The web page of `zoo serve --http-port`, in a real browser: headless Chromium (Debian's
package; `make test` installs it) driven by Playwright.

One server for the module, with a bearer token, serving the tiny model behind a folder
mirror and the real MiniLM. Every test fails on a console error it did not expect, and
writes screenshots of the pages it saw (to the pytest tmp folder and, when set, to
$ZOO_TEST_ARTIFACTS/web/).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TINY
from tests.digits import write_digits
from tests.serving import SLOW_JOB, ServerProcess, mirror_env, zip_folder

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
expect = sync_api.expect

TOKEN = "web-token"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
CLASSES = ("0", "1", "2")
SENTIMENT = ROOT / "tests" / "fixtures" / "sentiment.csv"


def chromium() -> str | None:
    """Debian's Chromium (Playwright's own browser download is not reachable everywhere)."""
    for candidate in (os.environ.get("ZOO_CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium()
    if path is None:
        pytest.skip("Chromium is not installed: `make test` installs it when run as root "
                    "(apt-get install chromium), or set ZOO_CHROMIUM to a Chromium binary")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def served(pretrained_tiny, tmp_path_factory) -> Iterator[ServerProcess]:
    """The server, and a text classifier being fine-tuned on it from the start (in a job of
    its own, so that it is ready when its test comes)."""
    root = tmp_path_factory.mktemp("web")
    env = {**mirror_env(pretrained_tiny, root), "ZOO_TOKEN": TOKEN}
    server = ServerProcess(root / "home", env, "--http-port", "0", "--max-jobs", "2")
    try:
        dataset = json.loads(_upload(server, SENTIMENT.read_bytes(), "TEXT_CSV"))
        server.sentiment_job = api(server, "FineTuneService/CreateJob", {  # type: ignore[attr-defined]
            "base": {"name": "minilm_l6_v2"}, "dataset_id": dataset["dataset_id"],
            "output_name": "sentiment-web",
            "hyperparameters": {"epochs": 30, "learning_rate": 0.01, "patience": 0}})["id"]
        yield server
    finally:
        assert server.stop() == 0, "".join(server.raw[-20:])


@pytest.fixture(scope="module")
def digits_zip(tmp_path_factory) -> Path:
    """Handwritten digits 0, 1, 2 (20 each, 32 px) as a zip of class folders."""
    root = tmp_path_factory.mktemp("digits")
    data = write_digits(root / "digits", classes=tuple(map(int, CLASSES)), per_class=20,
                        start=90, size=32)
    archive = root / "digits.zip"
    archive.write_bytes(zip_folder(data))
    return archive


def web_url(server: ServerProcess) -> str:
    return str(server.event("serving")["web"])


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Callable[..., Path]:
    folder = tmp_path_factory.mktemp("web-screenshots")
    artifacts = os.environ.get("ZOO_TEST_ARTIFACTS")

    def shot(page: Any, name: str, full_page: bool = True) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        if artifacts:
            target = Path(artifacts) / "web"
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / path.name)
        return path

    return shot


@dataclass
class Ui:
    """A page, the console errors it logged, and those a test expects (a 400 it provoked)."""

    page: Any
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(pattern)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(p, e) for p in self.allowed)]


def open_ui(browser: Any, server: ServerProcess, *, token: str | None = TOKEN,
            viewport: dict[str, int] | None = None) -> tuple[Any, Ui]:
    context = browser.new_context(base_url=web_url(server),
                                  viewport=viewport or {"width": 1280, "height": 900})
    if token:  # as if the user had typed it into the token dialog earlier in this tab
        context.add_init_script(f"sessionStorage.setItem('zoo.token', {json.dumps(token)})")
    page = context.new_page()
    ui = Ui(page)
    page.on("console", lambda m: ui.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: ui.errors.append(f"uncaught: {e}"))
    return context, ui


@pytest.fixture()
def ui(browser, served) -> Iterator[Ui]:
    context, ui = open_ui(browser, served)
    try:
        yield ui
    finally:
        context.close()
    assert not ui.unexpected(), f"console errors: {ui.unexpected()}"


def api(server: ServerProcess, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """A zoo.v1 call through the JSON bridge, as a script would make it."""
    request = urllib.request.Request(
        web_url(server) + f"api/v1/{method}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.loads(response.read()))


def rows(page: Any, table: str) -> Any:
    return page.locator(f"{table} tbody tr")


def top_labels(page: Any) -> list[str]:
    return page.locator(".tryit ol.bars li .label").all_inner_texts()


# --- the tests, in the order a user meets the pages -------------------------------------------


def test_models_table_lists_the_registry_sorts_and_filters(ui, served, shots) -> None:
    import zoo

    page = ui.page
    registry = zoo.list_models()
    page.goto("/")
    expect(rows(page, "#models")).to_have_count(len(registry), timeout=30_000)
    resnet = page.locator("#models tr[data-model='resnet50'] td")
    spec = zoo.get_spec("resnet50")
    assert resnet.nth(2).inner_text() == f"{spec.params / 1e6:.1f}M"
    assert resnet.nth(4).inner_text() == f"{spec.provenance.top1:.1f}%"
    shots(page, "models")

    page.fill("#model-search", "mobilenet_v2_035")
    expect(rows(page, "#models")).to_have_count(5)
    page.fill("#model-search", "")
    page.select_option("#model-task", "TEXT_EMBEDDING")
    text_models = sorted(m.name for m in zoo.list_models(task="text-embedding"))
    expect(rows(page, "#models")).to_have_count(len(text_models))
    assert sorted(page.locator("#models tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.model)")) == text_models
    expect(page.locator("#model-count")).to_have_text(f"{len(text_models)} of {len(registry)} models")

    # Sorting, from the keyboard: the header buttons are in the tab order.
    page.select_option("#model-task", "")
    page.focus("th[data-key='params'] button")
    page.keyboard.press("Enter")
    expect(page.locator("th[data-key='params']")).to_have_attribute("aria-sort", "ascending")
    smallest = min((m for m in registry if m.params), key=lambda m: m.params)
    assert rows(page, "#models").first.get_attribute("data-model") == smallest.name

    page.set_viewport_size(PHONE)  # readable at phone width: the table scrolls, not the page
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shots(page, "models-phone", full_page=False)


def test_a_model_page_fetches_weights_and_classifies_an_uploaded_image(ui, served, shots,
                                                                       tmp_path) -> None:
    from zoo_client import ZooClient

    page = ui.page
    page.goto(f"/#/models/{TINY}")
    expect(page.locator("h1")).to_have_text(TINY)
    files = page.locator("#files tbody tr")
    expect(files).to_have_count(2)  # the classifier's file and the feature extractor's
    assert "storage.googleapis.com" in files.first.inner_text()
    page.click("#fetch")
    expect(page.locator(".status")).to_contain_text("verified and cached", timeout=60_000)
    classifier_file = page.locator("#files tbody tr", has_text="0.35_96.h5")
    expect(classifier_file).to_contain_text("yes")  # cached now
    expect(page.locator("#files tbody tr", has_text="no_top.h5")).to_contain_text("no")

    digits = write_digits(tmp_path / "digits", classes=(3,), per_class=1, start=170, size=96)
    image = digits / "3" / "000.png"
    page.set_input_files("#tryit-file", str(image))
    expect(page.locator(".tryit ol.bars li")).to_have_count(5, timeout=120_000)
    with ZooClient(served.target, token=TOKEN) as client:
        expected = client.classify(TINY, [image], top_k=5)[0]
    assert top_labels(page) == [p.label for p in expected]
    widths = page.locator(".tryit ol.bars .bar span").evaluate_all(
        "spans => spans.map(s => parseFloat(s.style.width))")
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    shots(page, "model")

    page.click("text=Try the sample photo")
    expect(page.locator(".tryit .result-text")).not_to_have_text(re.compile("^$"))
    expect(page.locator(".tryit img.preview")).to_be_visible()


def test_a_bad_image_is_shown_to_the_user(ui, served, tmp_path) -> None:
    ui.allow("status of 400")  # the browser logs the failed request it made
    page = ui.page
    page.goto(f"/#/models/{TINY}")
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not an image at all")
    page.set_input_files("#tryit-file", str(bad))
    alert = page.locator(".tryit [role='alert']")
    expect(alert).to_contain_text("holiday.png could not be classified", timeout=60_000)
    expect(alert).to_contain_text("image")


def test_request_streams_over_http_answer_each_line_on_its_own(served, tmp_path) -> None:
    """ClassifyStream through the JSON bridge: one request per line, one answer per line, a
    bad image answered with its own error while the others go on (as over gRPC)."""
    import base64

    digits = write_digits(tmp_path / "digits", classes=(4,), per_class=2, start=170, size=96)
    images = [*(digits / "4").iterdir(), None]
    lines = [json.dumps({"request_id": f"r{i}", "model": {"name": TINY}, "top_k": 2,
                         "image": base64.b64encode(p.read_bytes() if p else b"junk").decode()})
             for i, p in enumerate(images)]
    request = urllib.request.Request(
        web_url(served) + "api/v1/InferenceService/ClassifyStream",
        data="\n".join(lines).encode(), headers={"Content-Type": "application/x-ndjson",
                                                 "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answers = {a["request_id"]: a for a in map(json.loads, response.read().splitlines())}
    assert sorted(answers) == ["r0", "r1", "r2"]
    assert all(len(answers[r]["predictions"]) == 2 and not answers[r]["error_code"]
               for r in ("r0", "r1"))
    assert answers["r2"]["error_code"] == "INVALID_ARGUMENT" and not answers["r2"]["predictions"]


def test_a_text_model_compares_typed_sentences(ui, served, shots) -> None:
    page = ui.page
    page.goto("/#/models/minilm_l6_v2")
    page.fill("#tryit-sentences", "A cat sleeps on the warm windowsill.\n"
                                  "A kitten is napping in the sun by the window.\n"
                                  "The stock market fell sharply this morning.")
    page.click(".tryit button[type=submit]")
    table = page.locator("table.similarity")
    expect(table).to_be_visible(timeout=180_000)
    first = [float(x) for x in table.locator("tbody tr").first.locator("td").all_inner_texts()]
    assert first[0] == pytest.approx(1.0, abs=0.01)
    assert first[1] > first[2] + 0.2, "the two cat sentences are the closest pair"
    shots(page, "text-similarity")


def test_a_fine_tuned_text_model_classifies_typed_texts(ui, served, shots) -> None:
    page = ui.page
    job = served.sentiment_job
    for _ in range(300):
        state = api(served, "FineTuneService/GetJob", {"job_id": job})
        if state["state"] not in ("QUEUED", "RUNNING"):
            break
        page.wait_for_timeout(1000)
    assert state["state"] == "SUCCEEDED", state
    page.goto("/#/models/sentiment-web")
    expect(page.locator(".tryit h2")).to_have_text("Try it: classify texts")
    expect(page.locator("#card-title + dl")).to_contain_text("texts of up to 256 tokens")
    texts = ["An absolutely wonderful evening, I loved it", "A dreadful, boring waste of time"]
    page.fill("#tryit-texts", "\n".join(texts))
    page.click(".tryit button[type=submit]")
    results = page.locator(".tryit .text-result")
    expect(results).to_have_count(2, timeout=120_000)
    expected = api(served, "InferenceService/ClassifyText",
                   {"model": {"name": "sentiment-web"}, "texts": texts})["results"]
    for result, answer in zip(results.all(), expected, strict=True):
        labels = result.locator("ol.bars .label").all_inner_texts()
        assert labels == [p["label"] for p in answer["predictions"]]
    assert [r.locator(".result-text").inner_text().rsplit(": ", 1)[1] for r in results.all()] \
        == ["positive", "negative"]
    shots(page, "text-classifier")


def test_a_finetune_uploaded_through_the_page_runs_live_then_classifies(ui, served, shots,
                                                                        digits_zip,
                                                                        tmp_path) -> None:
    from zoo_client import ZooClient

    page = ui.page
    page.goto("/#/finetune")
    page.set_input_files("#dataset", str(digits_zip))
    expect(page.locator("#data-kind")).to_contain_text("images in class folders")
    expect(page.locator("#output-name")).to_have_value("digits")
    page.select_option("#base", TINY)
    page.fill("#output-name", "digits-web")
    page.fill("#hp-epochs", "2")  # phase 1 (fitted at once) and 2 epochs of phase 2
    page.fill("#hp-learning_rate", "0.003")
    assert page.get_attribute("#hp-batch_size", "placeholder") == "default 32"  # the schema's
    page.click("text=More settings")
    page.fill("#hp-image_size", "32")
    page.fill("#hp-patience", "0")
    page.fill("#hp-fine_tune_layers", "4")  # phase 2: epochs that arrive one by one
    shots(page, "finetune")
    page.click("#start")

    page.wait_for_url(re.compile(r"#/jobs/job_"), timeout=60_000)
    # Progress while it runs: an epoch in the log and on the curve, the job still running.
    page.wait_for_function(
        "() => document.querySelector('#job-log li[data-kind=EPOCH]')"
        " && document.querySelector('#job-state').textContent.includes('running')",
        timeout=180_000)
    expect(page.locator("#job-progress-text")).to_contain_text("of 4")
    shots(page, "job-running")
    expect(page.locator("#job-done")).to_be_visible(timeout=180_000)
    expect(page.locator("#job-state")).to_have_text("succeeded")
    assert page.locator("#job-log li[data-kind=EPOCH]").count() >= 2
    assert page.locator("#charts svg polyline").count() >= 4  # train and validation, twice
    expect(page.locator("#confusion tbody tr")).to_have_count(len(CLASSES))
    assert page.locator("#confusion thead th").all_inner_texts()[1:] == list(CLASSES)

    held_out = write_digits(tmp_path / "held-out", classes=(1,), per_class=1, start=170, size=32)
    image = held_out / "1" / "000.png"
    page.set_input_files("#tryit-file", str(image))
    expect(page.locator(".tryit ol.bars li")).to_have_count(len(CLASSES), timeout=60_000)
    with ZooClient(served.target, token=TOKEN) as client:
        expected = client.classify("digits-web", [image])[0]
    assert top_labels(page) == [p.label for p in expected]
    assert set(top_labels(page)) == set(CLASSES)
    shots(page, "job-done")

    page.goto("/#/jobs")
    job_row = page.locator("#jobs tbody tr", has_text="digits-web")
    expect(job_row).to_contain_text("succeeded")
    expect(job_row).to_contain_text("digits-web v1")
    expect(job_row.locator("progress")).to_have_attribute("value", "1")
    expect(page.locator("#served tbody tr", has_text="digits-web")).to_contain_text("v1")
    shots(page, "jobs")
    page.goto("/#/models/digits-web")
    expect(page.locator("h1")).to_have_text("digits-web v1")
    expect(page.locator("#confusion")).to_be_visible()
    shots(page, "finetuned-model")


def test_a_bad_dataset_is_shown_to_the_user(ui, served) -> None:
    ui.allow("status of 400")
    page = ui.page
    page.goto("/#/finetune")
    page.set_input_files("#dataset", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                             "buffer": b"hello"}])
    expect(page.locator("#finetune-status [role='alert']")).to_contain_text(
        "not a dataset this server takes")
    page.set_input_files("#dataset", files=[{"name": "photos.zip", "mimeType": "application/zip",
                                             "buffer": b"PK but not really a zip archive"}])
    page.click("#start")
    alert = page.locator("#finetune-status [role='alert']")
    expect(alert).to_contain_text("The fine-tune could not start", timeout=30_000)
    expect(alert).to_contain_text("not a readable zip archive")


def test_a_running_job_can_be_cancelled_from_its_page(ui, served, digits_zip) -> None:
    page = ui.page
    data = digits_zip.read_bytes()
    dataset = json.loads(_upload(served, data, "IMAGE_ZIP"))
    job = api(served, "FineTuneService/CreateJob", {
        "base": {"name": TINY}, "dataset_id": dataset["dataset_id"], "output_name": "cancelled",
        "hyperparameters": SLOW_JOB})
    page.goto(f"/#/jobs/{job['id']}")
    expect(page.locator("#job-state")).to_have_text("running", timeout=60_000)
    page.click("#cancel")
    expect(page.locator("#job-state")).to_have_text("cancelled", timeout=90_000)
    expect(page.locator("#job-outcome")).to_contain_text("The job was cancelled.")
    expect(page.locator("#cancel")).to_be_hidden()


def _upload(server: ServerProcess, data: bytes, fmt: str) -> bytes:
    query = f"format={fmt}&sha256={hashlib.sha256(data).hexdigest()}&name=test"
    request = urllib.request.Request(
        web_url(server) + f"api/v1/FineTuneService/UploadDataset?{query}", data=data,
        headers={"Content-Type": "application/octet-stream", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return bytes(response.read())


def test_no_console_errors_on_any_page_and_every_page_has_a_title(ui, served, shots) -> None:
    page = ui.page
    jobs = [f"/#/jobs/{j['id']}" for j in api(served, "FineTuneService/ListJobs", {})["jobs"]]
    for path in ("/", "/#/finetune", "/#/jobs", *jobs[:2], f"/#/models/{TINY}",
                 "/#/models/minilm_l6_v2", "/#/no/such/page"):
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible(timeout=30_000)
        page.wait_for_load_state("networkidle")
    shots(page, "not-found")
    page.set_viewport_size(PHONE)  # every page readable at phone width: nothing sticks out
    for i, path in enumerate(("/#/finetune", "/#/jobs", *jobs[:1], f"/#/models/{TINY}")):
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible(timeout=30_000)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        shots(page, f"phone-{i}")


def test_the_pages_work_from_the_keyboard(ui, served) -> None:
    """A new page puts the focus on its heading; Tab goes on to its controls, Shift+Tab back
    to the navigation, and the skip link comes first of all."""
    page = ui.page
    page.goto("/")
    expect(rows(page, "#models").first).to_be_visible(timeout=30_000)
    assert page.evaluate("document.activeElement.tagName") == "H1"
    stops = []
    for _ in range(4):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    assert stops == ["model-search", "model-task", "model-origin", "Name"]
    page.keyboard.press("Enter")  # sorts by name, descending now
    expect(page.locator("th[data-key='name']")).to_have_attribute("aria-sort", "descending")
    page.focus("h1")
    back = []
    for _ in range(6):
        page.keyboard.press("Shift+Tab")
        back.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    assert back == ["token-button", "Jobs", "Fine-tune", "Models", "Zoo", "Skip to the content"]
    page.keyboard.press("Enter")  # the skip link: focus moves to the content
    assert page.evaluate("document.activeElement.id") == "main"


def test_without_the_token_the_page_asks_for_it(browser, served) -> None:
    context, ui = open_ui(browser, served, token=None)
    ui.allow("status of 401")
    try:
        page = ui.page
        page.goto("/")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible(timeout=30_000)
        expect(dialog).to_contain_text("missing bearer token")
        page.fill("#token-input", TOKEN)
        page.click("#token-dialog button[value='save']")
        expect(rows(page, "#models").first).to_be_visible(timeout=30_000)
        assert page.evaluate("sessionStorage.getItem('zoo.token')") == TOKEN
    finally:
        context.close()
    assert not ui.unexpected(), ui.unexpected()


def test_the_pages_sha256_matches_hashlib(ui, served) -> None:
    """The upload header's digest is computed in the page; it must be the real sha256."""
    page = ui.page
    page.goto("/")
    sizes = [0, 1, 55, 56, 63, 64, 65, 119, 1000, (4 << 20) + 3]
    digests = page.evaluate("""async (sizes) => {
        const { Sha256, sha256Of } = await import('/static/sha256.js');
        const bytes = (n) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255);
        const out = [];
        for (const n of sizes) {
            const data = bytes(n);
            const pieces = new Sha256();  // fed in uneven pieces
            for (let i = 0; i < n; i += 37) pieces.update(data.subarray(i, i + 37));
            out.push([new Sha256().update(data).hex(), pieces.hex(),
                      await sha256Of(new Blob([data]))]);
        }
        return out;
    }""", sizes)
    for n, found in zip(sizes, digests, strict=True):
        expected = hashlib.sha256(bytes((i * 31 + 7) & 255 for i in range(n))).hexdigest()
        assert found == [expected] * 3, n
