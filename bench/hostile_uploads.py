"""Hostile requests against a real `zoo serve`: how long each takes to be refused and how
much server memory it costs, beside an ordinary upload of about the same size measured in
the same run (issue 13: every answer in under a second, server memory growth under 200 MB).

  baseline   a valid ~300 KB tar.gz of two class folders of PNGs (accepted)
  long name  a ~300 KB tar.gz whose GNU long-name record claims 300 MiB (the campaign's)
  pax        the same as a pax header record
  folders    a tar.gz of 20,000 empty folders beside the two classes
  1 MB id    CreateJob naming a 1 MB dataset id (NOT_FOUND, not RESOURCE_EXHAUSTED)

Memory is the server's peak resident set during each request, over its resident set just
before it (Linux: /proc/PID/status VmHWM, reset through /proc/PID/clear_refs before each
request). The figures move with the machine's load; compare ratios within one run.

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

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client"), str(ROOT / "server")]

from tests.archives import folders_tar, metadata_bomb, tar_bytes  # noqa: E402

MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (median)")
    args = parser.parse_args()

    import grpc

    from zoo_api.v1 import common_pb2, finetune_pb2, finetune_pb2_grpc
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
    env = {**os.environ, "ZOO_HOME": str(work / "home"), "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(sys.path[:3])}
    env.pop("ZOO_TOKEN", None)
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "zoo.cli.main", "serve", "--port",
                               str(port), "--max-jobs", "1"], env=env, stdout=log, stderr=log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)])
    stub = finetune_pb2_grpc.FineTuneServiceStub(channel)
    try:
        grpc.channel_ready_future(channel).result(timeout=300)
        time.sleep(1.0)

        def upload(path: Path) -> str:
            # Fresh bytes each time (gzip data after the tar's end, which tar never reads),
            # or the server would answer a repeat from its store of uploads by sha256.
            unique = work / f"unique-{path.name}"
            unique.write_bytes(path.read_bytes() + gzip.compress(os.urandom(16)))
            with prepared_upload(unique) as prepared:
                try:
                    stub.UploadDataset(upload_requests(prepared, path.name), timeout=60)
                    return "OK"
                except grpc.RpcError as e:
                    return f"{e.code().name} ({len(e.details() or '')} chars)"

        def create_job() -> str:
            try:
                stub.CreateJob(finetune_pb2.CreateJobRequest(
                    base=common_pb2.ModelSpec(name="mobilenet_v2_035_96"),
                    dataset_id="d" * MIB, output_name="x"), timeout=60)
                return "OK"
            except grpc.RpcError as e:
                return f"{e.code().name} ({len(e.details() or '')} chars)"

        cases = {name: (lambda p=path: upload(p)) for name, path in files.items()}
        cases["1 MB id"] = create_job
        rows = []
        for name, call in cases.items():
            times, growths, outcome = [], [], ""
            for _ in range(args.repeat):
                reset_peak(server.pid)
                before = status_kib(server.pid, "VmRSS")
                started = time.perf_counter()
                outcome = call()
                times.append(time.perf_counter() - started)
                growths.append((status_kib(server.pid, "VmHWM") - before) / 1024)
            times.sort()
            growths.sort()
            rows.append((name, outcome, times[len(times) // 2], growths[len(growths) // 2]))
        base_s = rows[0][2]
        size = {n: p.stat().st_size for n, p in files.items()}
        print(f"{'case':10} {'bytes sent':>11} {'answer':32} {'seconds':>8} {'x baseline':>10} "
              f"{'peak MB':>8}")
        for name, outcome, seconds, growth in rows:
            sent = f"{size[name]:,}" if name in size else f"{MIB:,}"
            print(f"{name:10} {sent:>11} {outcome:32} {seconds:8.3f} {seconds / base_s:10.2f} "
                  f"{growth:8.1f}")
        inodes = sum(1 for _ in (work / "home" / "datasets").rglob("*"))
        print(f"\nfiles and folders under datasets/ after all uploads: {inodes}")
        print("goal: every answer < 1 s and peak growth < 200 MB")
    finally:
        channel.close()
        server.terminate()
        server.wait(60)
        log.close()


if __name__ == "__main__":
    main()
