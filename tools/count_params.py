"""Count the parameters of every registered Keras image model, and fix the registry.

The `params` numbers in `zoo/registry/keras_applications.py` must be exact, not typed
from memory: this builds each with-top application with random weights (no download)
at the spec's input size and prints `name params`. With `--write` it rewrites the
numbers in that file in place (the per-alpha tuples of the MobileNet loops too).

    python tools/count_params.py            # print
    python tools/count_params.py --write    # print and fix the registry

Takes a few minutes on a laptop CPU (ConvNeXtXLarge and EfficientNetB7 dominate).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402

import zoo.hub.registry as registry  # noqa: E402

REGISTRY_FILE = Path(registry.__file__).with_name("keras_applications.py")


def count(spec) -> int:
    height, width = spec.input.size
    build = getattr(keras.applications, spec.architecture)
    model = build(weights=None, include_top=True, input_shape=(height, width, 3), **spec.kwargs)
    n = int(model.count_params())
    del model
    keras.backend.clear_session()
    gc.collect()
    return n


def rewrite(source: str, counts: dict[str, int], specs: dict) -> str:
    # One-line registrations: _image("name", "Arch", "family", size, "prep", PARAMS, ...
    def one(m: re.Match) -> str:
        return f"{m[1]}{counts[m[2]]}" if m[2] in counts else m[0]

    source = re.sub(r'(_image\(\s*"(\w+)",\s*"\w+",\s*"\w+",\s*\d+,\s*"\w+",\s*)\d+', one, source)

    # Loop registrations: `for _alpha, _params in ((0.25, N), ...)` followed by a body
    # naming the architecture. With-top counts must not depend on the resolution.
    per_alpha: dict[tuple[str, float], set[int]] = {}
    for name, n in counts.items():
        spec = specs[name]
        if "alpha" in spec.kwargs and not spec.kwargs.get("minimalistic"):
            per_alpha.setdefault((spec.architecture, spec.kwargs["alpha"]), set()).add(n)
    for key, values in per_alpha.items():
        if len(values) != 1:
            sys.exit(f"{key}: with-top params depend on the input size {values}; restructure")

    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.startswith("for _alpha, _params in"):
            continue
        arch = next(
            m[1] for later in lines[i + 1 :] if (m := re.search(r'"(MobileNet\w*)"', later))
        )

        def tup(m: re.Match, arch: str = arch) -> str:
            values = per_alpha.get((arch, float(m[1])))
            return f"({m[1]}, {next(iter(values))})" if values else m[0]

        lines[i] = re.sub(r"\(([\d.]+), \d+\)", tup, line)
    return "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the registry file")
    parser.add_argument("pattern", nargs="?", default="*", help="only names matching this")
    args = parser.parse_args()

    specs = {s.name: s for s in registry.list_models(args.pattern, task="image-classification")}
    counts = {}
    for name, spec in specs.items():
        counts[name] = count(spec)
        note = "" if counts[name] == spec.params else f"   (registry says {spec.params})"
        print(f"{name} {counts[name]}{note}", flush=True)
    if args.write:
        old = REGISTRY_FILE.read_text(encoding="utf-8")
        new = rewrite(old, counts, specs)
        if new != old:
            REGISTRY_FILE.write_text(new, encoding="utf-8")
        print(f"{'rewrote' if new != old else 'unchanged:'} {REGISTRY_FILE}")


if __name__ == "__main__":
    main()
