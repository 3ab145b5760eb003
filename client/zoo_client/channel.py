"""Channel settings shared by the sync and async clients: limits, TLS, auth, retries."""

from __future__ import annotations

import random
from pathlib import Path

import grpc

from zoo_client.errors import Unavailable

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_MESSAGE_MB = 64  # gRPC's 4 MiB default is too small for batches of photos
HEALTH_POLL_S = 0.2  # wait_until_serving asks again this often

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


def not_serving(timeout: float, status: str) -> Unavailable:
    return Unavailable(f"the server was not serving after {timeout:g} s (last health answer: "
                       f"{status}); is `zoo serve` running at that address, and has it finished "
                       "loading its --preload models?")
