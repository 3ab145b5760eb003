"""`zoo serve` from the command line: starts, answers health, auth and TLS, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import PYTHONPATH
from tests.serving import ServerProcess, Stubs, spec
from zoo_api.v1 import models_pb2

pytestmark = pytest.mark.slow
TOKEN = "correct horse battery staple"


def self_signed(folder) -> tuple:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(not any(os.access(os.path.join(p, "openssl"), os.X_OK)
                            for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="openssl is not installed")
def test_serve_with_tls_and_a_token_then_stop_on_sigterm(tmp_path):
    cert, key = self_signed(tmp_path)
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "ZOO_TOKEN": TOKEN}
    server = ServerProcess(tmp_path / "home", env, "--tls-cert", str(cert), "--tls-key", str(key),
                           "--metrics-port", "0")
    assert server.event("serving")["tls"] and server.event("serving")["auth"]
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    stubs = Stubs(server.target, credentials=credentials)
    try:
        health = health_pb2_grpc.HealthStub(stubs.channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == \
            health_pb2.HealthCheckResponse.SERVING, "health needs no token"
        request = models_pb2.GetModelRequest(model=spec("vgg16"))
        for metadata, message in [((), "missing bearer token"),
                                  ((("authorization", "Bearer wrong"),), "invalid bearer token"),
                                  ((("authorization", TOKEN),), "invalid bearer token")]:
            with pytest.raises(grpc.RpcError) as error:
                stubs.models.GetModel(request, metadata=metadata)
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert message in error.value.details()
        with pytest.raises(grpc.RpcError) as error:
            list(reflection_pb2_grpc.ServerReflectionStub(stubs.channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        good = (("authorization", f"Bearer {TOKEN}"),)
        assert stubs.models.GetModel(request, metadata=good).model.name == "vgg16"
        assert 'zoo_requests_total{code="UNAUTHENTICATED",method="GetModel"} 3.0' in server.metrics()
        with grpc.insecure_channel(server.target) as plain, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=3)
        busy = subprocess.run([sys.executable, "-m", "zoo.cli.main", "serve", "--port",
                               str(server.port), "--home", str(tmp_path / "other")],
                              capture_output=True, text=True, env=env, timeout=120)
        assert busy.returncode == 1 and "cannot listen" in busy.stderr
        assert len(busy.stderr.strip().splitlines()) == 1, busy.stderr
    finally:
        stubs.close()
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    events = [e.get("event") for e in server.lines]
    assert events[-2:] == ["shutting_down", "stopped"], server.lines
    assert not any(e.get("level") == "error" for e in server.lines)


def test_serve_refuses_bad_settings_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "ZOO_HOME": str(tmp_path)}
    env.pop("ZOO_TOKEN", None)
    for args, message in [(["--tls-cert", "x.pem"], "TLS needs both"),
                          (["--max-batch-size", "0"], "max_batch_size must be at least 1"),
                          (["--host", "0.0.0.0"], "set ZOO_TOKEN (or --token), or pass --insecure"),
                          (["--dataset-retention-days", "-1"], "dataset_retention_days")]:
        run = subprocess.run([sys.executable, "-m", "zoo.cli.main", "serve", *args],
                             capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 1 and message in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
