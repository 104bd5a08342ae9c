"""A Ray cluster address is checked with a plain connection before Ray is asked to connect."""

from __future__ import annotations

import socket
import time

import pytest

from samplegen.platform.ray_address import AddressError, check_reachable, host_port


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("ray://head.example:10001", ("head.example", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("auto", None),
        ("local", None),
        ("head-without-port", None),
        ("host:notaport", None),
    ],
)
def test_host_port(address: str, expected: tuple[str, int] | None) -> None:
    assert host_port(address) == expected


def test_a_listening_port_passes_and_a_closed_one_is_refused_at_once() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}", "--address")
    start = time.monotonic()
    with pytest.raises(AddressError) as refused:
        check_reachable(f"127.0.0.1:{port}", "RAY_ADDRESS")
    assert time.monotonic() - start < 5
    assert str(refused.value).startswith(
        f"RAY_ADDRESS 127.0.0.1:{port}: no Ray cluster answers there (Connection refused)"
    )
    # Addresses that name no host and port are Ray's to resolve.
    check_reachable("auto", "--address")
