"""Helpers for the server tests: a `zoo serve` subprocess, stubs, and test inputs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from PIL import Image

from tests.conftest import PYTHONPATH, TINY
from zoo_api.v1 import (
    common_pb2,
    finetune_pb2,
    finetune_pb2_grpc,
    inference_pb2_grpc,
    models_pb2_grpc,
)

# A job that is surely still running when a test acts on it (cancels it, kills its worker,
# stops the server): augmentation turns feature caching off, so every epoch runs the base on
# the images (~0.5 s), where a cached epoch takes ~0.03 s and the default fitted head one step.
SLOW_JOB: dict[str, Any] = {"epochs": 200, "image_size": 32, "patience": 0, "augment": True}


def mirror_env(pretrained: dict[str, Path], root: Path) -> dict[str, str]:
    """Environment for a server that fetches TINY's digit-pretrained weights from a folder
    mirror (no network, no HTTP server)."""
    from tests.keras_weights import write_mirror

    manifest = write_mirror(root / "mirror", pretrained, root / "manifest.json")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZOO_", "HF_HUB_OFFLINE", "HF_ENDPOINT"))}
    env.update(PYTHONPATH=PYTHONPATH, ZOO_MANIFEST=str(manifest),
               ZOO_KERAS_MIRROR=str(root / "mirror"), HF_HOME=str(root / "hf"),
               TF_CPP_MIN_LOG_LEVEL="2")
    return env


class ServerProcess:
    """`zoo serve` in a subprocess; its JSON log lines are collected from stderr."""

    def __init__(self, home: Path, env: dict[str, str], *args: str, port: int = 0):
        self.home, self.env, self.args = home, env, args
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._serving = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zoo.cli.main", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--home", str(home), *args],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 180
        while not self._serving.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                break
        if not self._serving.is_set() or self.process.poll() is not None:
            self.process.kill()
            raise RuntimeError("zoo serve did not start:\n" + "".join(self.raw[-40:]))
        serving = self.event("serving")
        self.port = int(serving["port"])
        self.metrics_port = serving.get("metrics_port")
        self.target = f"127.0.0.1:{self.port}"

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.raw.append(line)
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                self.lines.append(data)
                if data.get("event") == "serving":
                    self._serving.set()

    def event(self, name: str) -> dict[str, Any]:
        return next(e for e in self.lines if e.get("event") == name)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            return str(r.read().decode())


class Stubs:
    def __init__(self, target: str, *, max_mb: int = 64, credentials: Any = None,
                 metadata: tuple[tuple[str, str], ...] = ()):
        options = [("grpc.max_send_message_length", max_mb * 2**20),
                   ("grpc.max_receive_message_length", max_mb * 2**20)]
        self.channel = (grpc.secure_channel(target, credentials, options) if credentials
                        else grpc.insecure_channel(target, options))
        self.models = models_pb2_grpc.ModelServiceStub(self.channel)
        self.inference = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self.finetune = finetune_pb2_grpc.FineTuneServiceStub(self.channel)
        self.metadata = metadata

    def raw(self, method: str) -> Any:
        """A unary call that sends bytes as they are (to send invalid protobuf)."""
        return self.channel.unary_unary(method, request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)

    def close(self) -> None:
        self.channel.close()


def spec(name: str = TINY, version: int = 0) -> common_pb2.ModelSpec:
    return common_pb2.ModelSpec(name=name, version=version)


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def distinct_images(n: int, size: int = 96, seed: int = 0) -> list[bytes]:
    """`n` different PNGs: smooth random colour fields (so each gets its own answer)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))
        images.append(encode(pixels))
    return images


def huge_png_header(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def upload_requests(data: bytes, fmt: int, *, chunk: int = 64 * 1024, sha256: str | None = None,
                    size: int | None = None, name: str = "test") -> list[Any]:
    header = finetune_pb2.DatasetHeader(
        name=name, format=fmt, sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data) if size is None else size)
    parts = [finetune_pb2.UploadDatasetRequest(header=header)]
    parts += [finetune_pb2.UploadDatasetRequest(chunk=data[i : i + chunk])
              for i in range(0, len(data), chunk)]
    return parts


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + str(path.relative_to(folder)))
    return buf.getvalue()


def leftovers(home: Path) -> list[str]:
    """Files an upload may leave behind: temporary files and dataset folders."""
    found = []
    for sub in ("tmp", "datasets"):
        folder = home / sub
        if folder.is_dir():
            found += [str(p.relative_to(home)) for p in folder.rglob("*")]
    return found


def wait_for(predicate: Any, timeout: float = 30, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(every)


def status_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM) or as a count (Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Start measuring the process's peak resident set (VmHWM) afresh from its current one."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def metric(text: str, name: str) -> float:
    """The value of an unlabelled metric in Prometheus' text format."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)
