"""`make demo`: what Zoo does today, end to end, on embedded defaults.

It runs the real `zoo` command as a user would and prints each command before its
output: browse the registry, fetch verified weights, fine-tune an image classifier on
scikit-learn's handwritten digits, classify held-out digits with it, and rank
sentences with the real all-MiniLM-L6-v2.

ImageNet weights come from Google's storage when it can be reached. Where it cannot
(an air-gapped machine), the demo says so and uses stand-in weights in the official
file format, pretrained here on other digits, in a demo-only cache (`.demo/`), so the
real cache never records them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BASE = "mobilenet_v2_035_96"
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
    from zoo.manifest import load_manifest

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

    say("Fine-tune on real handwritten digits (scikit-learn), feature caching on")
    sys.path.insert(0, str(ROOT))
    from tests.digits import write_digits

    data = write_digits(DEMO / "digits", per_class=60, start=90)
    held_out = write_digits(DEMO / "held-out", per_class=1, start=170)
    out = DEMO / "digits-classifier"
    zoo("finetune", BASE, "--data", str(data), "--out", str(out), "--epochs", "8",
        "--image-size", "32", "--learning-rate", "3e-3", env=env)

    say("Classify digits the model has never seen")
    images = [str(held_out / str(d) / "000.png") for d in range(10)]
    result = zoo("predict", str(out), *images, "--top-k", "1", "--json", env=env, quiet=True)
    import json

    rows = json.loads(result.stdout)
    right = 0
    for row in rows:
        truth = Path(row["image"]).parent.name
        best = row["predictions"][0]
        right += best["label"] == truth
        print(f"  digit {truth}: predicted {best['label']} ({best['score']:.0%})")
    print(f"{right}/10 correct")
    zoo("list", "--local", env=env)

    say("Text: sentence embeddings with the real all-MiniLM-L6-v2 (from its offline package)")
    corpus = DEMO / "sentences.txt"
    corpus.write_text("\n".join([
        "The cat sat on the mat.",
        "A kitten is sleeping on a rug.",
        "Stock markets fell sharply on Monday.",
        "The central bank raised interest rates.",
        "He plays the guitar in a band.",
    ]) + "\n")
    zoo("similar", "minilm_l6_v2", "a small cat resting on a carpet", "--file", str(corpus),
        "--top-k", "3", env=env)

    say("Done")
    print(f"Fine-tuned model: {out} (model card: {out / 'README.md'})")


if __name__ == "__main__":
    main()
