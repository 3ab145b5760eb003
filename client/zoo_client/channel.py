"""Channel settings shared by the sync and async clients: limits, TLS, auth, retries."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import grpc

from zoo_client.errors import Unavailable

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_MESSAGE_MB = 64  # gRPC's 4 MiB default is too small for batches of photos

TLS = bool | str | Path | bytes | grpc.ChannelCredentials | None


def options(max_message_mb: int) -> list[tuple[str, int]]:
    size = max_message_mb * 1024 * 1024
    return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]


def credentials(tls: TLS) -> grpc.ChannelCredentials | None:
    """None for plaintext; True for the system roots; a PEM path or bytes for a private CA."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    pem = tls if isinstance(tls, bytes) else Path(tls).read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=pem)


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def backoff(attempt: int, base: float = 0.2) -> float:
    """Seconds to wait before retry `attempt` (0-based): exponential with jitter."""
    return float(min(base * 2**attempt, 5.0) * (0.5 + random.random() / 2))


class HealthWait:
    """What the sync and async `wait_until_serving` loops share: the standard health
    check, each check's timeout, the deadline, and the last answer for the error."""

    POLL_S = 0.2  # ask again this often

    def __init__(self, timeout: float):
        from grpc_health.v1 import health_pb2

        self._health = health_pb2
        self.request = health_pb2.HealthCheckRequest()
        self.timeout, self.deadline = timeout, time.monotonic() + timeout
        self.last = "no answer"

    def stub(self, grpc_channel: Any) -> Any:
        from grpc_health.v1 import health_pb2_grpc

        return health_pb2_grpc.HealthStub(grpc_channel)

    def check_timeout(self) -> float:
        return max(0.1, min(2.0, self.deadline - time.monotonic()))

    def serving(self, reply: Any) -> bool:
        """True when `reply` says SERVING; otherwise remember what it said."""
        if reply.status == self._health.HealthCheckResponse.SERVING:
            return True
        self.last = self._health.HealthCheckResponse.ServingStatus.Name(reply.status)
        return False

    def failed(self, error: grpc.RpcError) -> None:
        self.last = error.code().name

    def expired(self) -> Unavailable | None:
        """The error to raise once the deadline has passed; None before."""
        if time.monotonic() < self.deadline:
            return None
        return Unavailable(
            f"the server was not serving after {self.timeout:g} s (last health answer: "
            f"{self.last}); is `zoo serve` running at that address, and has it finished "
            "loading its --preload models?")
