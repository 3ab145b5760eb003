"""Wait for a `zoo serve` to answer the standard gRPC health check (tests, bench, demo)."""

from __future__ import annotations

import time


def wait_healthy(target: str, timeout: float = 120) -> None:
    """Return once the server at `target` reports SERVING; TimeoutError after `timeout` s."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no healthy server at {target}")
            time.sleep(0.2)
