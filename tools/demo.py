"""`make demo`: what Zoo does today, end to end, on embedded defaults.

It runs the real `zoo` command as a user would and prints each command before its
output: browse the registry and fetch verified weights; then start `zoo serve` on
embedded defaults and, through the typed client, fine-tune an image classifier on
scikit-learn's handwritten digits and a text classifier on a small bundled sentiment
set, watch both jobs, classify held-out examples with the served results, embed
sentences, and shut the server down cleanly. While its server runs, it prints the address of
the web page (`--http-port`), where the same jobs can be followed live.

ImageNet weights come from Google's storage when it can be reached. Where it cannot
(an air-gapped machine), the demo says so and uses stand-in weights in the official
file format, pretrained here on other digits, in a demo-only cache (`.demo/`), so the
real cache never records them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BASE = "mobilenet_v2_035_96"
SENTIMENT = ROOT / "tests" / "fixtures" / "sentiment.csv"
ZOO = [sys.executable, "-m", "zoo.cli.main"]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def zoo(*args: str, env: dict[str, str], check: bool = True, quiet: bool = False
        ) -> subprocess.CompletedProcess[str]:
    print(f"$ zoo {shlex.join(args)}", flush=True)
    result = subprocess.run([*ZOO, *args], env=env, text=True, capture_output=True)
    if not quiet:
        sys.stdout.write(result.stdout)
    if result.returncode and check:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"demo: `zoo {args[0]}` failed")
    return result


def stand_in_weights(env: dict[str, str]) -> None:
    """Official-format files pretrained on digits, behind a local mirror, in a demo cache."""
    sys.path.insert(0, str(ROOT))
    from zoo.quiet import import_tensorflow

    import_tensorflow()
    from tests.keras_weights import write_mirror, write_pretrained_on_digits
    from zoo.hub.manifest import load_manifest

    entry = load_manifest().model(BASE)
    top, notop = write_pretrained_on_digits(BASE, DEMO / "stand-in")
    manifest = write_mirror(DEMO / "mirror", {entry.files["top"].origin: top,
                                              entry.files["notop"].origin: notop},
                            DEMO / "manifest.json")
    env.update(ZOO_HOME=str(DEMO / "home"), ZOO_MANIFEST=str(manifest),
               ZOO_KERAS_MIRROR=str(DEMO / "mirror"))


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "ZOO_MAX_RETRIES": "1", "ZOO_CONNECT_TIMEOUT": "5"}

    say("The registry: every Keras application and the Hugging Face text models")
    listing = zoo("list", env=env, quiet=True).stdout.splitlines()
    print("\n".join(listing[:8] + ["..."]))
    print(f"({len(listing) - 1} models)")
    zoo("list", "efficientnet_b*", env=env)
    zoo("info", BASE, env=env)

    say("Verified weights: fetched once, checked on every use")
    fetched = zoo("fetch", BASE, "--no-top", env=env, check=False)
    if fetched.returncode:
        print(f"ImageNet weights cannot be had here: {fetched.stderr.strip().splitlines()[-1]}")
        print("Continuing with stand-in weights in the official format, pretrained on digits "
              "0-9 (first 90 of each) right now, in a demo-only cache. Accuracy below is "
              "theirs, not ImageNet's.")
        stand_in_weights(env)
        zoo("fetch", BASE, "--no-top", env=env)
    zoo("cache", "verify", env=env)

    say("Start the server: zoo serve (embedded defaults: cache and SQLite under ZOO_HOME)")
    port, http_port = free_port(), free_port()
    target = f"127.0.0.1:{port}"
    print(f"$ zoo serve --port {port} --http-port {http_port}", flush=True)
    server = subprocess.Popen([*ZOO, "serve", "--port", str(port), "--http-port", str(http_port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from zoo_client import ZooClient, ZooClientError

        with ZooClient(target) as client:
            try:
                client.wait_until_serving(timeout=180)
            except ZooClientError as e:
                raise SystemExit(f"demo: {e}") from None
        print(f"serving on {target}")
        print(f"\033[1mweb page: http://127.0.0.1:{http_port}/\033[0m  (open it to follow the "
              "jobs below live; it lives as long as the demo's server)", flush=True)
        through_the_client(target)
    finally:
        say("Shut the server down cleanly (SIGTERM: drain, checkpoint, stop)")
        server.send_signal(signal.SIGTERM)
        print(f"server exited with status {server.wait(timeout=120)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def follow(zoo, job) -> None:  # type: ignore[no-untyped-def]
    """Print a job's events as the server words them (the lines `zoo finetune` prints)."""
    for event in zoo.watch_job(job.id):
        if event.message:
            print(f"  {event.message}", flush=True)


def through_the_client(target: str) -> None:
    from tests.digits import write_digits
    from zoo_client import ZooClient

    data = write_digits(DEMO / "digits", per_class=60, start=90)
    held_out = write_digits(DEMO / "held-out", per_class=1, start=170)
    with ZooClient(target, timeout=300) as zoo:
        say("Fine-tune an image classifier on real handwritten digits, through zoo_client")
        print(">>> zoo.finetune('mobilenet_v2_035_96', 'digits/', name='digits', epochs=8, ...)")
        job = zoo.finetune(BASE, data, name="digits", epochs=8, image_size=32,
                           learning_rate=3e-3)
        print(f"job {job.id}: {job.state}")
        follow(zoo, job)
        job = zoo.wait(job.id)
        print(f"job {job.state}: served as {job.result} v{job.result_version}, "
              f"validation accuracy {job.metrics.get('accuracy', float('nan')):.3f}")

        say("Classify digits the served model has never seen")
        images = [held_out / str(d) / "000.png" for d in range(10)]
        results = zoo.classify("digits", images, top_k=1)
        right = sum(r[0].label == str(d) for d, r in enumerate(results))
        for d, r in enumerate(results):
            print(f"  digit {d}: predicted {r[0].label} ({r[0].score:.0%})")
        print(f"{right}/10 correct")

        say("Fine-tune a text classifier on a small bundled sentiment set (real MiniLM)")
        job = zoo.finetune("minilm_l6_v2", SENTIMENT, name="sentiment", epochs=30,
                           learning_rate=0.01, patience=0)
        job = zoo.wait(job.id)
        print(f"job {job.state}: served as {job.result} v{job.result_version}, "
              f"validation accuracy {job.metrics.get('accuracy', float('nan')):.3f}")
        reviews = ["The staff were lovely and the room was spotless",
                   "It broke after two days and support never answered"]
        for review, r in zip(reviews, zoo.classify_text("sentiment", reviews, top_k=1),
                             strict=True):
            print(f"  {r[0].label:<8} {r[0].score:.0%}  {review}")

        say("Sentence embeddings over the API")
        vectors = zoo.embed("minilm_l6_v2", ["a cat on a mat", "a kitten on a rug",
                                             "interest rates rose"])
        def cos(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b, strict=True))
        print(f"  cat~kitten {cos(vectors[0], vectors[1]):.2f}   "
              f"cat~interest rates {cos(vectors[0], vectors[2]):.2f}")
        print(f"models now served: {[m.name for m in zoo.list_models() if m.origin == 'finetuned']}")


if __name__ == "__main__":
    main()
