"""Serving MobileNetV2 at 224 px: the compiled model in process, Zoo's server, a naive server.

All in one run, on the same JPEGs (224 x 224 crops of scikit-image's sample photographs)
and the same weights (official-format files written like tests/keras_weights.py does,
behind a local folder mirror; there is no internet here):

  (a) in process: `ImageClassifier.probabilities` (one compiled call) on decoded pixels,
      at batch sizes 1..64; the best images/s is the limit, batch 1 the single-image latency.
      The server runs two batches at once (`--batch-threads 2`), which one caller cannot;
      two in-process callers are printed beside (a) for reference, not used in the goal
  (b) Zoo's server (`zoo serve`, a separate process) with 1, 8 and 32 concurrent clients,
      one image per Classify call, one channel per client thread
  (b') the same server and load through the Open Inference Protocol: tritonclient.grpc,
      unchanged, one JPEG per ModelInfer as input `image` (BYTES [1, 1]), asking for
      top_index/top_score/top_label with top_k 5 (what Classify returns), one client object
      (its own channel) per thread. tritonclient pins protobuf < 7, so this load runs in a
      subprocess under the OIP client venv (.venv-oip, `make oip-clients`); for the ratio,
      the zoo.v1 load runs from a subprocess too, in alternating pairs
  (c) a naive gRPC server, the same proto, whose Classify decodes the image and calls
      `model.predict` per request (the simplest servicer that works), same client loads
  (d) for each --runtimes other than tf (default: auto, where OpenVINO is installed), a
      second `zoo serve --runtime R` beside (b): the same loads, then (d)/(b) at 1 client and
      at the most clients in alternating pairs; GetModel's runtime and reason are printed

Goals: (b) at 32 clients >= 0.85 x (a); (b') >= 0.95 x (b) at 32 clients; (b) >= 3 x (c) at
the same load; p50 of (b) at 1 client within 10 ms of (a)'s single-image call; (d) auto at
f32 parity >= 2.5 x (b) at 1 client and >= 1.5 x at 32 (issue 17). Clients run
on this machine and share its cores with the server, as local clients would.

Throughput counts the calls that complete inside the measured window (after a warm-up), so
calls in flight at its edges are not lost. On a small shared machine the CPU speed drifts
by tens of percent from minute to minute, so (a) and (b) at the top load are also measured
in alternating pairs, each pair under the same conditions; the median of the pair ratios is
the figure to trust. The server's /metrics add the mean batch size and the images/s inside
compiled calls.

    .venv/bin/python bench/serve.py [--seconds 8] [--clients 1 8 32] [--pairs 5]
                                    [--server-args "--max-batch-size 16 ..."] [--skip-oip]
                                    [--runtimes tf auto openvino]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "mobilenet_v2"
OIP_PYTHON = ROOT / ".venv-oip" / "bin" / "python"


# --- inputs and weights ----------------------------------------------------------------------


def jpegs(n: int, size: int = 224, seed: int = 0) -> list[bytes]:
    import numpy as np
    from PIL import Image

    from tests.keras_weights import photo_batch

    crops = photo_batch((size, size), n=n, seed=seed).astype(np.uint8)
    out = []
    for crop in crops:
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def mirror(work: Path) -> dict[str, str]:
    """Official-format weights for MODEL and a class index behind a folder mirror."""
    from tests.keras_weights import write_legacy_h5, write_mirror
    from zoo.hub.manifest import load_manifest

    entry = load_manifest().model(MODEL)
    top = write_legacy_h5(MODEL, True, work / "weights" / "top.h5")
    index = work / "weights" / "imagenet_class_index.json"
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))
    manifest = write_mirror(work / "mirror", {
        entry.files["top"].origin: top,
        load_manifest().asset("imagenet_class_index").origin: index,
    }, work / "manifest.json")
    return {"ZOO_MANIFEST": str(manifest), "ZOO_KERAS_MIRROR": str(work / "mirror"),
            "ZOO_HOME": str(work / "home")}


# --- (a) in process --------------------------------------------------------------------------


class InProcess:
    """The compiled model in this process, on decoded pixels of the same JPEGs."""

    def __init__(self, images: list[bytes]):
        import numpy as np

        from zoo.vision.classifier import ImageClassifier
        from zoo.vision.images import decode

        self.clf = ImageClassifier.load(MODEL)
        self.pixels = np.stack([decode(b, self.clf.size) for b in images])
        started = time.perf_counter()
        for b in images:
            decode(b, self.clf.size)
        self.decode_ms = (time.perf_counter() - started) / len(images) * 1e3

    def times(self, batch: int, seconds: float) -> list[float]:
        import numpy as np

        x = self.pixels[np.arange(batch) % len(self.pixels)]
        self.clf.probabilities(x)  # warm
        times: list[float] = []
        until = time.perf_counter() + seconds
        while time.perf_counter() < until or len(times) < 3:
            t = time.perf_counter()
            self.clf.probabilities(x)
            times.append(time.perf_counter() - t)
        return times

    def rate(self, batch: int, seconds: float) -> float:
        import numpy as np

        return batch / float(np.median(self.times(batch, seconds)))

    def concurrent_rate(self, batch: int, callers: int, seconds: float) -> float:
        """images/s with `callers` threads each calling at `batch`, as the server's batch
        threads do: not the goal's (a), printed beside it so the two are not confused."""
        import numpy as np

        x = self.pixels[np.arange(batch) % len(self.pixels)]
        self.clf.probabilities(x)
        done = [0] * callers
        until = time.perf_counter() + seconds

        def call(i: int) -> None:
            while time.perf_counter() < until:
                self.clf.probabilities(x)
                done[i] += batch

        started = time.perf_counter()
        threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done) / (time.perf_counter() - started)


def in_process(model: InProcess, seconds: float) -> dict[str, object]:
    import numpy as np

    rates: dict[int, float] = {}
    single: list[float] = []
    for batch in (1, 4, 8, 16, 32, 64):
        times = model.times(batch, seconds / 3)
        rates[batch] = batch / float(np.median(times))
        if batch == 1:
            single = times
    best = max(rates, key=lambda b: rates[b])
    decode_ms = model.decode_ms
    return {"rates": rates, "best_batch": best, "best": rates[best],
            "single_ms": float(np.median(single)) * 1e3, "decode_ms": decode_ms,
            "two_callers": model.concurrent_rate(16, 2, seconds / 2)}


# --- clients ---------------------------------------------------------------------------------


def zoo_caller(target: str, images: list[bytes]) -> tuple[Any, Any]:
    """(classify one image by index, close): zoo.v1 Classify on a channel of its own."""
    import grpc

    from zoo_api.v1 import common_pb2, inference_pb2, inference_pb2_grpc

    channel = grpc.insecure_channel(target)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    requests = [inference_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL),
                                              images=[img], top_k=5) for img in images]
    return (lambda n: stub.Classify(requests[n % len(requests)], timeout=60)), channel.close


def oip_caller(target: str, images: list[bytes]) -> tuple[Any, Any]:
    """(classify one image by index, close): tritonclient.grpc's ModelInfer, the JPEG as
    input `image`, the top-5 as outputs (only under the OIP client venv)."""
    import numpy as np
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(target)
    inputs = []
    for img in images:
        tensor = triton.InferInput("image", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[img]], dtype=object))
        inputs.append([tensor])
    outputs = [triton.InferRequestedOutput(name)
               for name in ("top_index", "top_score", "top_label")]
    parameters = {"top_k": 5}

    def call(n: int) -> Any:
        return client.infer(MODEL, inputs[n % len(inputs)], outputs=outputs,
                            parameters=parameters, client_timeout=60)

    return call, client.close


def load(target: str, images: list[bytes], clients: int, seconds: float,
         warmup: float = 2.0, protocol: str = "zoo") -> dict[str, float]:
    """`clients` threads, each on its own channel, one image per call (zoo.v1 Classify, or
    OIP ModelInfer through tritonclient), for `seconds`."""
    import numpy as np

    caller = {"zoo": zoo_caller, "oip": oip_caller}[protocol]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0]
    start_line = threading.Barrier(clients + 1)
    window: dict[str, float] = {}

    def client(i: int) -> None:
        call, close = caller(target, images)
        try:
            call(i)  # connect
            start_line.wait()
            n = i
            while True:
                t = time.perf_counter()
                if t >= window["end"]:
                    return
                try:
                    call(n)
                except Exception:  # grpc.RpcError, tritonclient's InferenceServerException
                    errors[0] += 1
                done = time.perf_counter()
                if window["start"] <= done <= window["end"]:  # completions in the window
                    latencies[i].append(done - t)
                n += clients
        finally:
            close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    window["start"] = time.perf_counter() + 1e9
    window["end"] = time.perf_counter() + 1e9
    start_line.wait()
    now = time.perf_counter()
    window["start"], window["end"] = now + warmup, now + warmup + seconds
    for thread in threads:
        thread.join()
    flat = np.array([x for per in latencies for x in per])
    return {"clients": clients, "rate": len(flat) / seconds,
            "p50_ms": float(np.percentile(flat, 50)) * 1e3,
            "p99_ms": float(np.percentile(flat, 99)) * 1e3, "errors": errors[0]}


def remote_load(protocol: str, target: str, image_dir: Path, clients: int, seconds: float,
                warmup: float = 1.0) -> dict[str, float]:
    """`load` in a subprocess: OIP under the OIP client venv (tritonclient pins protobuf
    < 7), zoo.v1 under this interpreter, so both loads run alike."""
    python = str(OIP_PYTHON) if protocol == "oip" else sys.executable
    run = subprocess.run(
        [python, __file__, "--load", protocol, "--target", target, "--image-dir",
         str(image_dir), "--clients", str(clients), "--seconds", str(seconds), "--warmup",
         str(warmup)], capture_output=True, text=True, timeout=seconds + warmup + 300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "client") if protocol == "zoo" else ""})
    if run.returncode != 0:
        raise RuntimeError(f"the {protocol} load failed:\n{run.stderr[-2000:]}")
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- (c) the naive server ------------------------------------------------------------------


def naive_server(port: int, workers: int) -> None:
    """InferenceService.Classify = decode + model.predict, per request, nothing else."""
    import grpc
    import numpy as np

    import zoo
    from zoo.vision.imagenet import imagenet_labels
    from zoo.vision.images import decode
    from zoo_api.v1 import common_pb2, inference_pb2, inference_pb2_grpc

    model = zoo.load_model(MODEL)
    labels = [label for _, label in imagenet_labels()]

    class Naive(inference_pb2_grpc.InferenceServiceServicer):
        def Classify(self, request, context):  # noqa: N802 (gRPC's name)
            x = np.stack([decode(b, (224, 224)) for b in request.images]).astype("float32")
            probs = model.predict(zoo.preprocess_input(MODEL, x), verbose=0)
            k = request.top_k or 5
            return inference_pb2.ClassifyResponse(results=[common_pb2.Classification(
                predictions=[common_pb2.Prediction(label=labels[i], score=float(row[i]), index=int(i))
                             for i in np.argsort(-row)[:k]]) for row in probs])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(Naive(), server)
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    checker = health.HealthServicer()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


# --- the run ---------------------------------------------------------------------------------


def batch_stats(metrics_port: int | None) -> tuple[float, float, float]:
    """(inputs batched, batches, seconds in compiled calls) so far, from the server's /metrics."""
    if metrics_port is None:
        return (0.0, 0.0, 0.0)
    import re
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        text = response.read().decode()

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M))

    return (total("zoo_batch_size_sum"), total("zoo_batch_size_count"),
            total("zoo_batch_seconds_sum"))


def serve_and_load(command: list[str], env: dict[str, str], port: int, images: list[bytes],
                   levels: list[int], seconds: float, log: Path,
                   metrics_port: int | None = None, after: Any = None) -> list[dict[str, float]]:
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file,
                                   stdin=subprocess.DEVNULL)
    from zoo_client import ZooClient

    try:
        target = f"127.0.0.1:{port}"
        with ZooClient(target) as client:
            client.wait_until_serving(timeout=240)
        load(target, images, 4, 2.0, warmup=0.5)  # warm every shape, thread and connection
        rows = []
        for n in levels:
            start = batch_stats(metrics_port)
            row = load(target, images, n, seconds)
            end = batch_stats(metrics_port)
            inputs, batches, busy = (e - s for e, s in zip(end, start, strict=True))
            if batches:  # includes the warm-up seconds of the level, so approximate
                row["mean_batch"] = inputs / batches
                row["model_rate"] = inputs / busy
            rows.append(row)
        if after is not None:
            after(target)
        return rows
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean shutdown), SIGKILL a minute later."""
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per load level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--images", type=int, default=64, help="distinct JPEGs")
    parser.add_argument("--server-args", default="", help="extra `zoo serve` flags, for tuning")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--pairs", type=int, default=5,
                        help="alternating (a)/(b) rounds for the load-robust ratio")
    parser.add_argument("--pair-seconds", type=float, default=6.0,
                        help="measured seconds of each side of a pair")
    parser.add_argument("--skip-oip", action="store_true",
                        help="leave out (b'), the Open Inference Protocol load")
    parser.add_argument("--runtimes", nargs="+", default=None,
                        help="(d): `zoo serve --runtime R` beside tf (default: auto where "
                             "OpenVINO is installed)")
    parser.add_argument("--naive-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--naive-workers", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--load", choices=["zoo", "oip"], help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--image-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        naive_server(args.naive_server, args.naive_workers)
        return
    if args.load:  # a load subprocess (remote_load): one level, its row as JSON
        files = sorted(args.image_dir.iterdir())
        row = load(args.target, [f.read_bytes() for f in files], args.clients[0], args.seconds,
                   warmup=args.warmup, protocol=args.load)
        print(json.dumps(row))
        return

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-serve-"))
    settings = mirror(work)
    os.environ.update(settings)
    # The checkout's zoo, zoo_server and zoo_client, not whatever copy is installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(p) for p in (ROOT, ROOT / "client", ROOT / "server"))}
    images = jpegs(args.images)
    image_dir = work / "images"  # for the load subprocesses
    image_dir.mkdir()
    for i, data in enumerate(images):
        (image_dir / f"{i:03d}.jpg").write_bytes(data)
    oip = not args.skip_oip and OIP_PYTHON.exists()
    if not args.skip_oip and not oip:
        print(f"(b') skipped: no OIP client venv at {OIP_PYTHON} (`make oip-clients` makes it)")
    import zoo

    zoo.fetch_weights(MODEL)  # every side reads the same cached file
    cpu = os.cpu_count()
    print(f"{MODEL} at 224 px, {len(images)} distinct JPEGs "
          f"({sum(map(len, images)) // len(images) // 1024} KiB each), {cpu} CPU cores, "
          f"{args.seconds:g} s per level")

    model = InProcess(images)
    a = in_process(model, args.seconds)
    rates = "  ".join(f"b{b}: {r:.1f}" for b, r in a["rates"].items())  # type: ignore[attr-defined]
    print(f"(a) in process, images/s by batch size: {rates}")
    print(f"    limit {a['best']:.1f} images/s at batch {a['best_batch']}; single image "
          f"{a['single_ms']:.1f} ms; JPEG decode {a['decode_ms']:.2f} ms/image (not included)")
    print(f"    for reference, not the goal's (a): two threads each calling at batch 16 (what "
          f"the server's two batch threads do) {a['two_callers']:.1f} images/s")

    port, metrics_port = free_port(), free_port()
    zoo_cmd = [sys.executable, "-m", "zoo.cli.main", "serve", "--port", str(port),
               "--metrics-port", str(metrics_port), "--preload", MODEL,
               *shlex.split(args.server_args)]
    pairs: list[tuple[float, float]] = []
    import importlib.util

    others = [r for r in (args.runtimes if args.runtimes is not None else
                          (["auto"] if importlib.util.find_spec("openvino") else [])) if r != "tf"]
    runtime_rows: dict[str, list[dict[str, float]]] = {}
    runtime_pairs: dict[str, dict[int, list[tuple[float, float]]]] = {}  # R -> clients -> pairs
    runtime_reasons: dict[str, str] = {}
    oip_rows: list[dict[str, float]] = []
    oip_pairs: list[tuple[float, float]] = []  # (zoo.v1, OIP) images/s
    top = max(args.clients)

    def paired(target: str) -> None:
        """(a) at its best batch and (b) at the most clients, alternating: on a machine
        shared with other work, each pair sees the same background load. Then (b') at each
        level, and (b)/(b') in alternating pairs, both loads from subprocesses."""
        for _ in range(args.pairs):
            pairs.append((model.rate(int(a["best_batch"]), args.pair_seconds),  # type: ignore[call-overload]
                          load(target, images, top, args.pair_seconds, warmup=1.0)["rate"]))
        for runtime in others:
            compare_runtime(target, runtime)
        if not oip:
            return
        for n in args.clients:
            start = batch_stats(metrics_port)
            row = remote_load("oip", target, image_dir, n, args.seconds, warmup=2.0)
            inputs, batches, busy = (e - s for e, s in zip(batch_stats(metrics_port), start,
                                                           strict=True))
            if batches:
                row["mean_batch"], row["model_rate"] = inputs / batches, inputs / busy
            oip_rows.append(row)
        for i in range(args.pairs):
            order = ("zoo", "oip") if i % 2 == 0 else ("oip", "zoo")
            rates = {p: remote_load(p, target, image_dir, top, args.pair_seconds)["rate"]
                     for p in order}
            oip_pairs.append((rates["zoo"], rates["oip"]))

    def compare_runtime(tf_target: str, runtime: str) -> None:
        """(d): a second server running MobileNetV2 as `runtime`, loaded at each level, then
        against (b) in alternating pairs at 1 client and at the most."""
        from zoo_client import ZooClient

        other_port = free_port()
        command = [sys.executable, "-m", "zoo.cli.main", "serve", "--port", str(other_port),
                   "--preload", MODEL, "--runtime", runtime, *shlex.split(args.server_args)]
        with open(work / f"zoo-{runtime}.log", "w") as log_file:
            process = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file,
                                       stdin=subprocess.DEVNULL)
        try:
            other = f"127.0.0.1:{other_port}"
            with ZooClient(other, timeout=60) as client:
                client.wait_until_serving(timeout=600)
                info = client.get_model(MODEL)
                runtime_reasons[runtime] = f"{info.runtime}: {info.runtime_reason}"
            load(other, images, 4, 2.0, warmup=0.5)
            runtime_rows[runtime] = [load(other, images, n, args.seconds) for n in args.clients]
            runtime_pairs[runtime] = {}
            for n in sorted({min(args.clients), top}):
                for i in range(args.pairs):
                    sides = [(tf_target, "tf"), (other, runtime)][:: 1 if i % 2 == 0 else -1]
                    got = {name: load(t, images, n, args.pair_seconds, warmup=1.0)["rate"]
                           for t, name in sides}
                    runtime_pairs[runtime].setdefault(n, []).append((got["tf"], got[runtime]))
        finally:
            stop(process)

    b = serve_and_load(zoo_cmd, env, port, images, args.clients, args.seconds, work / "zoo.log",
                       metrics_port, after=paired)
    c: list[dict[str, float]] = []
    if not args.skip_naive:
        port = free_port()
        naive_cmd = [sys.executable, __file__, "--naive-server", str(port)]
        c = serve_and_load(naive_cmd, env, port, images, args.clients, args.seconds,
                           work / "naive.log")

    print(f"\n{'':24}{'clients':>8}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'batch':>7}{'in-call img/s':>15}")
    for name, rows in (("(b) zoo serve, tf", b), ("(b') OIP gRPC, triton", oip_rows),
                       *((f"(d) zoo serve, {r}", rows) for r, rows in runtime_rows.items()),
                       ("(c) naive predict()", c)):
        for row in rows:
            extra = (f"{row['mean_batch']:>7.1f}{row['model_rate']:>15.1f}"
                     if "mean_batch" in row else "")
            print(f"{name:24}{row['clients']:>8}{row['rate']:>10.1f}{row['p50_ms']:>9.1f}"
                  f"{row['p99_ms']:>9.1f}{row['errors']:>8}{extra}")
    top_b = max(b, key=lambda r: r["clients"])
    print()
    if pairs:
        ratios = sorted(rb / ra for ra, rb in pairs)
        print(f"(b)@{top} / (a)@b{a['best_batch']} = {ratios[len(ratios) // 2]:.2f} (goal >= 0.85): "
              f"median of {len(pairs)} alternating pairs, (b)/(a) images/s "
              + ", ".join(f"{rb:.1f}/{ra:.1f}" for ra, rb in pairs))
    print(f"(b)@{top_b['clients']} / (a), measured minutes apart = "
          f"{top_b['rate'] / a['best']:.2f}")  # type: ignore[operator]
    if oip_pairs:
        ratios = sorted(rb2 / rb for rb, rb2 in oip_pairs)
        print(f"(b')@{top} / (b)@{top} = {ratios[len(ratios) // 2]:.2f} (goal >= 0.95): OIP "
              f"gRPC (tritonclient) / zoo.v1, median of {len(oip_pairs)} alternating pairs, "
              "both loads from subprocesses, images/s "
              + ", ".join(f"{rb2:.1f}/{rb:.1f}" for rb, rb2 in oip_pairs))
    for runtime, by_clients in runtime_pairs.items():
        print(f"(d) runtime {runtime_reasons.get(runtime, runtime)}")
        for n, measured in by_clients.items():
            ratios = sorted(rd / rb for rb, rd in measured)
            goal = " (goal >= 2.5)" if n == 1 else " (goal >= 1.5)" if n == top else ""
            print(f"(d) {runtime} / (b) tf at {n} client(s) = {ratios[len(ratios) // 2]:.2f}"
                  f"{goal}: median of {len(measured)} alternating pairs, images/s "
                  + ", ".join(f"{rd:.1f}/{rb:.1f}" for rb, rd in measured))
    for row_b, row_c in zip(b, c, strict=False):
        print(f"(b)/(c) at {row_b['clients']} clients = {row_b['rate'] / row_c['rate']:.1f}x "
              "(goal >= 3)")
    if c:
        print(f"(b) best / (c) best = {max(r['rate'] for r in b) / max(r['rate'] for r in c):.1f}x")
    one = next((r for r in b if r["clients"] == 1), None)
    if one is not None:
        print(f"p50 at 1 client - single in-process call = "
              f"{one['p50_ms'] - a['single_ms']:+.1f} ms (goal <= 10)")  # type: ignore[operator]
    print(f"logs: {work}/zoo.log, {work}/naive.log; server flags: {args.server_args or '(defaults)'}")


if __name__ == "__main__":
    main()
