"""Zoo on Ray: feature extraction and serving with one node and two, and the Ray path's
overhead against the single process, all in one run.

The clusters are on this machine, each node a `ray start` process: the nodes share this
machine's cores, so the gain of a second node is bounded by the cores, not by Zoo (read
the figures as the cost of the distribution, and as a lower bound of what separate
machines give). MobileNetV2 at 224 px, official-format
weights behind a local folder mirror (as bench/serve.py), JPEG crops of scikit-image's
sample photographs.

  features  phase 1's frozen forward pass over N images: (a) in this process
            (`frozen_features`), (b) ShardedFeatures over 1 actor on 1 node, (c) over 2
            actors on 2 nodes; (b) and (c) warm (actors started by a first call, timed
            apart). Ratios: (c)/(b), and (b)/(a): the cost of moving pixels to an actor
  serving   Classify, one JPEG per call, C concurrent clients: (a) `zoo serve` alone,
            (b) `zoo serve --ray` with 1 replica on 1 node, (c) 2 replicas on 2 nodes.
  The one-node cluster has all the machine's cores; the two-node one, half each (and every
  actor and replica reserves its node's CPUs, which size its TensorFlow thread pool), so
  both use the same cores.
            (a) and (b) are measured in alternating pairs (the machine's speed drifts);
            the median pair ratio (b)/(a) is the Ray path's overhead (goal >= 0.8)

    .venv/bin/python bench/scale.py [--images 512] [--seconds 8] [--clients 16] [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "client", ROOT / "server"):
    sys.path.insert(0, str(path))

from bench.serve import MODEL, free_port, jpegs, load  # noqa: E402


def mirror(work: Path) -> dict[str, str]:
    """Official-format weights for MODEL, with and without its top, and a class index,
    behind a folder mirror (bench/serve.py's, plus the feature extractor's file)."""
    import json

    from tests.keras_weights import write_legacy_h5, write_mirror
    from zoo.hub.manifest import load_manifest

    entry = load_manifest().model(MODEL)
    index = work / "weights" / "imagenet_class_index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))
    manifest = write_mirror(work / "mirror", {
        entry.files["top"].origin: write_legacy_h5(MODEL, True, work / "weights" / "top.h5"),
        entry.files["notop"].origin: write_legacy_h5(MODEL, False,
                                                     work / "weights" / "notop.h5"),
        load_manifest().asset("imagenet_class_index").origin: index,
    }, work / "manifest.json")
    return {"ZOO_MANIFEST": str(manifest), "ZOO_KERAS_MIRROR": str(work / "mirror"),
            "ZOO_HOME": str(work / "home")}


def start_server(env: dict[str, str], home: Path, log: Path, *args: str) -> tuple[Any, str]:
    from zoo_client import ZooClient

    port = free_port()
    command = [sys.executable, "-m", "zoo.cli.main", "serve", "--port", str(port), "--home",
               str(home), "--max-jobs", "0", "--preload", MODEL, *args]
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out,
                                   stdin=subprocess.DEVNULL)
    target = f"127.0.0.1:{port}"
    with ZooClient(target) as client:
        client.wait_until_serving(timeout=600)
    return process, target


def stop(process: Any) -> None:
    process.terminate()
    try:
        process.wait(90)
    except subprocess.TimeoutExpired:
        process.kill()


def feature_rows(images: int, env: dict[str, str], shards: int, cpus: float
                 ) -> dict[str, float]:
    """Images/s of phase 1's forward pass in this process, and over `shards` actors of
    `cpus` CPUs each (first call: starting them; then warm)."""
    import numpy as np

    from tests.keras_weights import photo_batch
    from zoo.finetuning.image import frozen_features
    from zoo.finetuning.image_data import Split
    from zoo.hub.registry import get_spec
    from zoo_server.scale.features import ShardedFeatures

    for name in ("ZOO_MANIFEST", "ZOO_KERAS_MIRROR", "ZOO_HOME"):
        os.environ[name] = env[name]
    spec, size = get_spec(MODEL), (224, 224)
    pixels = photo_batch(size, n=images, seed=1).astype(np.uint8)
    split = Split([Path(f"{i}.jpg") for i in range(images)], np.zeros(images, np.int64), pixels)
    frozen_features(spec, size, Split(split.paths[:64], split.labels[:64], pixels[:64]))
    started = time.perf_counter()
    alone = frozen_features(spec, size, split)
    rows = {"in process": images / (time.perf_counter() - started)}
    sharded = ShardedFeatures(shards, min_images=1, cpus=cpus)
    try:
        started = time.perf_counter()
        sharded(spec, size, split)
        rows["first call (starts the actors)"] = images / (time.perf_counter() - started)
        started = time.perf_counter()
        features = sharded(spec, size, split)
        rows["sharded"] = images / (time.perf_counter() - started)
    finally:
        sharded.close()
    assert np.allclose(features, alone, rtol=1e-5, atol=1e-5), "sharded != in process"
    print(f"features: {shards} actor(s) of {cpus:g} CPU(s) on {len(set(sharded.nodes))} "
          f"node(s): {rows}", flush=True)
    return rows


TEMP_DIRS: list[Path] = []


def cluster(work: Path, env: dict[str, str], cpus: list[int]) -> list[Any]:
    """A head and more nodes on this machine, `cpus[i]` CPUs each, and this process on it."""
    import ray

    from zoo_server.scale.nodes import start_node

    temp = Path(tempfile.mkdtemp(prefix="zr-"))  # short: Ray's socket paths fit 107 bytes
    TEMP_DIRS.append(temp)
    head = start_node(head=True, num_cpus=cpus[0], env={**env, "ZOO_HOME": str(work / "n0")},
                      temp_dir=temp, log=work / f"head-{len(cpus)}.log")
    nodes = [head]
    for i, n in enumerate(cpus[1:], 1):
        nodes.append(start_node(head=False, address=head.address, num_cpus=n,
                                env={**env, "ZOO_HOME": str(work / f"n{i}")},
                                log=work / f"node{i}-{len(cpus)}.log"))
    ray.init(address=head.address, log_to_driver=False, configure_logging=False)
    while len([n for n in ray.nodes() if n["Alive"]]) < len(cpus):
        time.sleep(0.5)
    return nodes


def leave(nodes: list[Any]) -> None:
    import ray

    ray.shutdown()
    for node in reversed(nodes):
        node.stop(10)
    while TEMP_DIRS:  # the nodes' session folders (logs, sockets)
        shutil.rmtree(TEMP_DIRS.pop(), ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--overhead-only", action="store_true",
                        help="only the pairs of single process and Ray at 1 replica")
    args = parser.parse_args()

    import numpy as np

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-scale-"))
    env = {**os.environ, **mirror(work), "PYTHONPATH": os.pathsep.join(
        str(p) for p in (ROOT, ROOT / "client", ROOT / "server"))}
    cores = os.cpu_count() or 2
    images = jpegs(32)
    nodes: list[Any] = []
    servers: list[Any] = []
    store = (work / "store").as_uri()
    print(f"# bench/scale.py: {MODEL} at 224 px, {cores} cores, {args.images} images, "
          f"{args.clients} clients x {args.seconds:.0f} s", flush=True)
    try:
        # One node: the whole machine.
        nodes = cluster(work, env, [cores])
        one = {} if args.overhead_only else feature_rows(args.images, env, 1, cores)
        single, single_target = start_server(env, work / "home-a", work / "a.log")
        servers.append(single)
        ray_one, ray_target = start_server(
            env, work / "home-b", work / "b.log", "--ray", nodes[0].address, "--model-store",
            store, "--replicas", "1", "--replica-cpus", str(cores))
        servers.append(ray_one)
        pairs = []
        for _ in range(args.pairs):
            a = load(single_target, images, args.clients, args.seconds)
            b = load(ray_target, images, args.clients, args.seconds)
            pairs.append((a["rate"], b["rate"]))
            print(f"pair: single process {a['rate']:.1f}/s (p50 {a['p50_ms']:.0f} ms), "
                  f"ray 1 replica {b['rate']:.1f}/s (p50 {b['p50_ms']:.0f} ms)", flush=True)
        for process in servers:
            stop(process)
        servers.clear()
        leave(nodes)
        nodes = []
        if args.overhead_only:
            ratios = [b / a for a, b in pairs]
            print(f"serving, Ray 1 replica / single process: median {np.median(ratios):.2f} "
                  f"(pairs {', '.join(f'{r:.2f}' for r in ratios)}; goal >= 0.8)")
            return

        # Two nodes: the same cores, half each.
        nodes = cluster(work, env, [cores // 2, cores - cores // 2])
        two = feature_rows(args.images, env, 2, 1)
        ray_two, two_target = start_server(
            env, work / "home-c", work / "c.log", "--ray", nodes[0].address, "--model-store",
            store, "--replicas", "2", "--replica-cpus", str(cores // 2))
        servers.append(ray_two)
        c = load(two_target, images, args.clients, args.seconds)
        print(f"ray 2 replicas on 2 nodes: {c['rate']:.1f}/s (p50 {c['p50_ms']:.0f} ms)")

        a_rate = float(np.median([a for a, _ in pairs]))
        b_rate = float(np.median([b for _, b in pairs]))
        print("\n| measure | images/s |\n|---|---|")
        print(f"| features: in process | {one['in process']:.1f} |")
        print(f"| features: 1 node, 1 actor (first call: {one['first call (starts the actors)']:.1f}) "
              f"| {one['sharded']:.1f} |")
        print(f"| features: 2 nodes, 2 actors (first call: "
              f"{two['first call (starts the actors)']:.1f}) | {two['sharded']:.1f} |")
        print(f"| serving: single process (median of {len(pairs)}) | {a_rate:.1f} |")
        print(f"| serving: Ray, 1 replica on 1 node (median) | {b_rate:.1f} |")
        print(f"| serving: Ray, 2 replicas on 2 nodes | {c['rate']:.1f} |")
        ratios = [b / a for a, b in pairs]
        print(f"\nfeatures, sharded / in process (measured side by side): 1 node, 1 actor "
              f"{one['sharded'] / one['in process']:.2f}; 2 nodes, 2 actors "
              f"{two['sharded'] / two['in process']:.2f} (2 nodes / 1 node, minutes apart: "
              f"{two['sharded'] / one['sharded']:.2f}x)")
        print(f"serving, Ray 1 replica / single process: median {np.median(ratios):.2f} "
              f"(pairs {', '.join(f'{r:.2f}' for r in ratios)}; goal >= 0.8)")
        print(f"serving, 2 replicas on 2 nodes / 1 replica on 1 node: {c['rate'] / b_rate:.2f}x")
    finally:
        for process in servers:
            stop(process)
        leave(nodes)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
