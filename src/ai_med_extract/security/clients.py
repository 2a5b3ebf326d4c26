"""The client's address: the TCP peer, or what trusted proxies say in ``X-Forwarded-For``.

Only a peer inside one of the configured proxy networks is believed, and then the header is read
from the right: each hop a trusted proxy appended is skipped, and the first address that is not a
trusted proxy is the client. Anything a client wrote itself (further left) is never reached unless
every hop after it is trusted. Loopback is not trusted unless configured.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in n for n in networks if n.version == address.version)


def resolve_client(peer: str | None, forwarded_for: Iterable[str], trusted_proxies: Iterable[str]) -> str | None:
    """The client address as a string, or None when the peer is unknown.

    ``forwarded_for``: every ``X-Forwarded-For`` header value, in the order received."""
    address = _address(peer) if peer else None
    if address is None:
        return None
    networks = _networks(tuple(trusted_proxies))
    if not networks or not _trusted(address, networks):
        return str(address)
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            return str(address)  # a garbled header: the last proxy we trust is all we know
        if not _trusted(found, networks):
            return str(found)
        address = found
    return str(address)
