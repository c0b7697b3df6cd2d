"""The address guard against server-side request forgery, shared by everything that connects to an
address it was *told* about rather than one the operator configured: webhook endpoints
(``fastreg.notify.webhooks``) and the places a pull-through upstream sends the cache to — redirect
hops and token realms (``fastreg.proxy.upstream``).

An address is allowed only if it is globally routable unicast.  Refused: loopback, private
(RFC 1918, unique-local ``fc00::/7``), link-local (``169.254.0.0/16``, ``fe80::/10`` — where cloud
metadata services live), shared (``100.64.0.0/10``), reserved, multicast, unspecified; and IPv6
addresses that *embed* an IPv4 address are judged by the embedded one: IPv4-mapped
(``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), NAT64 (``64:ff9b::/96``,
``64:ff9b:1::/48``), 6to4 (``2002::/16``) and Teredo (``2001::/32``, both the server and the
client address).

``resolve`` looks a host up once and returns addresses that were all checked: the caller must
connect to one of *those* (a second lookup could answer differently — DNS rebinding).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPAT = ipaddress.ip_network("::/96")


class AddressRefused(Exception):
    """A host resolves to an address the guard refuses."""


class ResolveFailed(Exception):
    """A host could not be resolved."""


def _embedded(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (empty if none)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in net for net in _NAT64):
        return [low]
    if ip in _COMPAT and int(ip) > 1:          # ::a.b.c.d (:: and ::1 are judged as themselves)
        return [low]
    return []


def address_allowed(ip: IP) -> bool:
    """True for globally routable unicast addresses only (see the module's docstring)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        inner = _embedded(ip)
        if inner:
            return all(address_allowed(v4) for v4 in inner)
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_reserved)


def host_is_address(host: str) -> IP | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


async def resolve(host: str, port: int, allow_private: bool = False) -> list[str]:
    """The addresses of `host` to connect to, every one checked; AddressRefused if any is refused
    (one bad answer among good ones is still a host pointing inside), ResolveFailed if none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ResolveFailed(f"cannot resolve {host}: {exc}") from None
    addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addrs:
        raise ResolveFailed(f"cannot resolve {host}: no address")
    if not allow_private:
        bad = [a for a in addrs if not address_allowed(ipaddress.ip_address(a.split("%")[0]))]
        if bad:
            raise AddressRefused(f"{host} resolves to {', '.join(bad)}: not a public address")
    return addrs
