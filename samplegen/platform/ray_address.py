"""A Ray cluster address checked before Ray connects to it.

Why: `ray.init(address=...)` to a port where no Ray cluster listens does not fail: on this
machine it retried for more than two minutes (a closed port on localhost) or 25 s (a host that
does not answer) before giving up with a traceback. A plain TCP connection says at once whether
anything listens there.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from samplegen.errors import SamplegenError

# Seconds to wait for a host that neither accepts nor refuses.
CONNECT_TIMEOUT_S = 5.0
# What --address may say that names no host and port (Ray finds the cluster itself).
SYMBOLIC = frozenset({"auto", "local"})


class AddressError(SamplegenError):
    """No Ray cluster can be reached at the address given."""


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `address` (``host:port``, ``ray://host:port``, an IPv6 ``[::1]:port``),
    or None for an address that names none (``auto``)."""
    if address in SYMBOLIC:
        return None
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port


def check_reachable(address: str, given: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise AddressError, naming `given` (the option or variable that set the address), when
    nothing accepts a connection at `address`'s host and port."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            return
    except TimeoutError:
        why = f"no answer within {timeout_s:g} s"
    except OSError as exc:
        why = exc.strerror or str(exc)
    raise AddressError(
        f"{given} {address}: no Ray cluster answers there ({why}); start one (`ray start "
        "--head`, `ray up cluster.yaml`) or leave the address out to start Ray on this machine"
    )
