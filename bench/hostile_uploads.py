"""Hostile requests against a real `zoo serve`: how long each takes to be refused and how
much server memory it costs, beside ordinary requests of about the same size measured in
the same run (issue 13: every answer in under a second, server memory growth under 200 MB).

Uploads, against an ordinary upload:
  baseline   a valid ~300 KB tar.gz of two class folders of PNGs (accepted)
  long name  a ~300 KB tar.gz whose GNU long-name record claims 300 MiB (the campaign's)
  pax        the same as a pax header record
  folders    a tar.gz of 20,000 empty folders beside the two classes
  1 MB id    CreateJob naming a 1 MB dataset id (NOT_FOUND, not RESOURCE_EXHAUSTED)

Inputs, against an ordinary Classify of 32 images:
  10k images  one Classify of 10,000 1x1 PNGs (the campaign's; RESOURCE_EXHAUSTED, --max-inputs)

Streams: 70 uploads that send a header and stall (the campaign's). Printed: how long the ones
over --max-streams took to be refused, the latency of Health, ListModels and Classify while
the rest are stalled against the same calls before, when the stalled ones ended (the server
runs with --stream-idle 5 here; 60 s by default), and the server's peak memory growth.

Memory is the server's peak resident set during each request, over its resident set just
before it (Linux: /proc/PID/status VmHWM, reset through /proc/PID/clear_refs before each
request). The server serves mobilenet_v2_035_96 with weights written as official files
behind a folder mirror (there is no internet here). The figures move with the machine's
load; compare ratios within one run.

    .venv/bin/python bench/hostile_uploads.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client"), str(ROOT / "server")]

from tests.archives import folders_tar, metadata_bomb, tar_bytes  # noqa: E402
from tests.serving import reset_peak, status_kib  # noqa: E402

MIB = 1 << 20
MODEL = "mobilenet_v2_035_96"
STALLS = 70
IDLE_S = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def model_env(work: Path) -> dict[str, str]:
    """MODEL's official-format weights and a class index behind a folder mirror."""
    import json

    from tests.keras_weights import write_legacy_h5
    from tests.serving import mirror_env
    from zoo.hub.manifest import load_manifest

    entry = load_manifest().model(MODEL)
    index = work / "imagenet_class_index.json"
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))
    return mirror_env({entry.files["top"].origin: write_legacy_h5(MODEL, True, work / "top.h5"),
                       load_manifest().asset("imagenet_class_index").origin: index}, work)


def baseline_tar(target_bytes: int = 300_000) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    members, size, i = [], 0, 0
    while size < target_bytes:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, "PNG")
        members.append((f"{'ab'[i % 2]}/{i}.png", buf.getvalue()))
        size += len(buf.getvalue())
        i += 1
    return tar_bytes(members, gz=True)


def png_1px() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def jpegs(n: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((224, 224)).save(buf, "JPEG")
        out.append(buf.getvalue())
    return out


def answer(call: Any) -> str:
    import grpc

    try:
        call()
        return "OK"
    except grpc.RpcError as e:
        return f"{e.code().name} ({len(e.details() or '')} chars)"


class Stalls:
    """`count` uploads that send a header and then nothing, until the server ends them."""

    def __init__(self, stub: Any, count: int, timeout: float):
        import threading

        from zoo_api.v1 import finetune_pb2

        self.release = threading.Event()
        header = finetune_pb2.DatasetHeader(format=finetune_pb2.IMAGE_TAR, sha256="0" * 64,
                                            size=MIB)

        def requests() -> Any:
            yield finetune_pb2.UploadDatasetRequest(header=header)
            self.release.wait(timeout)

        self.started = time.perf_counter()
        self.ended: dict[int, float] = {}
        self.calls = [stub.UploadDataset.future(requests(), timeout=timeout)
                      for _ in range(count)]
        for i, call in enumerate(self.calls):
            call.add_done_callback(lambda _, i=i: self.ended.setdefault(
                i, time.perf_counter() - self.started))

    def codes(self, done_only: bool = True) -> list[str]:
        return [c.exception().code().name if c.exception() else "OK"
                for c in self.calls if c.done() or not done_only]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (median)")
    args = parser.parse_args()

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from zoo_api.v1 import (
        common_pb2,
        finetune_pb2,
        finetune_pb2_grpc,
        inference_pb2,
        inference_pb2_grpc,
        models_pb2,
        models_pb2_grpc,
    )
    from zoo_client.inputs import prepared_upload, upload_requests

    work = Path(tempfile.mkdtemp(prefix="zoo-hostile-"))
    files = {
        "baseline": work / "baseline.tar.gz",
        "long name": metadata_bomb(work / "longname.tar.gz", 300 * MIB),
        "pax": metadata_bomb(work / "pax.tar.gz", 300 * MIB, b"x"),
        "folders": work / "folders.tar.gz",
    }
    files["baseline"].write_bytes(baseline_tar())
    files["folders"].write_bytes(folders_tar(20_000))
    port = free_port()
    env = {**model_env(work), "ZOO_HOME": str(work / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("ZOO_TOKEN", None)
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "zoo.cli.main", "serve", "--port",
                               str(port), "--max-jobs", "1", "--preload", MODEL,
                               "--stream-idle", str(IDLE_S)], env=env, stdout=log, stderr=log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)])
    stub = finetune_pb2_grpc.FineTuneServiceStub(channel)
    inference = inference_pb2_grpc.InferenceServiceStub(channel)
    models = models_pb2_grpc.ModelServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    model = common_pb2.ModelSpec(name=MODEL)
    one_image, ordinary, tiny = jpegs(1), jpegs(32), [png_1px()] * 10_000
    try:
        deadline = time.monotonic() + 600
        while True:  # SERVING once the model is preloaded
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("zoo serve did not start; see " + str(work / "server.log"))
            time.sleep(0.5)

        def upload(path: Path) -> str:
            # Fresh bytes each time (gzip data after the tar's end, which tar never reads),
            # or the server would answer a repeat from its store of uploads by sha256.
            unique = work / f"unique-{path.name}"
            unique.write_bytes(path.read_bytes() + gzip.compress(os.urandom(16)))
            with prepared_upload(unique) as prepared:
                return answer(lambda: stub.UploadDataset(upload_requests(prepared, path.name),
                                                         timeout=60))

        def create_job() -> str:
            return answer(lambda: stub.CreateJob(finetune_pb2.CreateJobRequest(
                base=model, dataset_id="d" * MIB, output_name="x"), timeout=60))

        def classify(images: list[bytes]) -> str:
            return answer(lambda: inference.Classify(inference_pb2.ClassifyRequest(
                model=model, images=images), timeout=60))

        size = {n: p.stat().st_size for n, p in files.items()}
        cases: list[tuple[str, str, Any, str]] = [  # name, bytes sent, call, its baseline
            *[(name, f"{size[name]:,}", (lambda p=path: upload(p)), "baseline")
              for name, path in files.items()],
            ("1 MB id", f"{MIB:,}", create_job, "baseline"),
            ("32 images", f"{sum(map(len, ordinary)):,}", lambda: classify(ordinary),
             "32 images"),
            ("10k images", f"{sum(map(len, tiny)):,}", lambda: classify(tiny), "32 images"),
        ]
        classify(ordinary)  # warm: the first batch of 32 compiles nothing new afterwards
        rows: dict[str, tuple[str, str, float, float, str]] = {}
        for name, sent, call, base in cases:
            times, growths, outcome = [], [], ""
            for _ in range(args.repeat):
                reset_peak(server.pid)
                before = status_kib(server.pid, "VmRSS")
                started = time.perf_counter()
                outcome = call()
                times.append(time.perf_counter() - started)
                growths.append((status_kib(server.pid, "VmHWM") - before) / 1024)
            rows[name] = (sent, outcome, median(times), median(growths), base)
        print(f"{'case':10} {'bytes sent':>11} {'answer':32} {'seconds':>8} {'x baseline':>10} "
              f"{'peak MB':>8}")
        for name, (sent, outcome, seconds, growth, base) in rows.items():
            ratio = seconds / rows[base][2]
            print(f"{name:10} {sent:>11} {outcome:32} {seconds:8.3f} {ratio:10.2f} "
                  f"{growth:8.1f}")
        inodes = sum(1 for _ in (work / "home" / "datasets").rglob("*"))
        print(f"\nfiles and folders under datasets/ after all uploads: {inodes}")

        # --- streams: the campaign's 70 stalled uploads -----------------------------------------
        def latencies() -> dict[str, float]:
            probes = {
                "Health": lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=10),
                "ListModels": lambda: models.ListModels(models_pb2.ListModelsRequest(
                    pattern="mobilenet*"), timeout=10),
                "Classify": lambda: inference.Classify(inference_pb2.ClassifyRequest(
                    model=model, images=one_image), timeout=10),
            }
            out = {}
            for name, probe in probes.items():
                samples = []
                for _ in range(5):
                    started = time.perf_counter()
                    probe()
                    samples.append(time.perf_counter() - started)
                out[name] = median(samples)
            return out

        quiet = latencies()
        reset_peak(server.pid)
        before = status_kib(server.pid, "VmRSS")
        stalls = Stalls(stub, STALLS, timeout=IDLE_S + 60)
        while len(stalls.ended) < STALLS - 16 and time.perf_counter() - stalls.started < IDLE_S:
            time.sleep(0.01)
        refused = sorted(stalls.ended.values())
        stalled = latencies()
        for call in stalls.calls:
            call.exception(timeout=IDLE_S + 60)
        growth = (status_kib(server.pid, "VmHWM") - before) / 1024
        stalls.release.set()
        codes = stalls.codes()
        ended = sorted(t for i, t in stalls.ended.items()
                       if stalls.calls[i].exception().code() == grpc.StatusCode.DEADLINE_EXCEEDED)
        print(f"\n{STALLS} stalled uploads: "
              + ", ".join(f"{codes.count(c)} {c}" for c in sorted(set(codes))))
        print(f"  refused at once: the last refusal after {refused[-1] * 1000:.0f} ms"
              if refused else "  none refused")
        print(f"  stalled ones ended after {ended[0]:.2f}-{ended[-1]:.2f} s "
              f"(--stream-idle {IDLE_S})" if ended else "  none ended by the idle limit")
        print(f"  server peak memory growth: {growth:.1f} MB")
        print(f"  {'call':10} {'alone ms':>9} {'beside stalls ms':>17} {'ratio':>6}")
        for name in quiet:
            print(f"  {name:10} {quiet[name] * 1000:9.1f} {stalled[name] * 1000:17.1f} "
                  f"{stalled[name] / quiet[name]:6.2f}")
        print("\ngoal: every refusal < 1 s, peak growth < 200 MB, calls beside stalls answered")
    finally:
        channel.close()
        server.terminate()
        server.wait(60)
        log.close()


if __name__ == "__main__":
    main()
