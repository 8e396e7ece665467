"""Which IP addresses a customer-supplied URL may make us connect to.

A job request may carry an input image URL (``["i", "https://...", "url"]``). Fetching it makes
our machine send a request chosen by a stranger, so the address is checked before connecting:
only public unicast internet addresses pass. Refused:

- IPv4: this-network 0/8, RFC 1918 (10/8, 172.16/12, 192.168/16), shared/CGNAT 100.64/10,
  loopback 127/8, link-local 169.254/16 (cloud metadata at 169.254.169.254), IETF protocol
  assignments 192.0.0/24, documentation ranges, benchmarking 198.18/15, 6to4 relay anycast
  192.88.99/24, multicast 224/4, reserved 240/4 and broadcast.
- IPv6: unspecified ``::``, loopback ``::1``, IPv4-compatible ``::/96``, discard 100::/64,
  IETF special 2001::/23 (Teredo included), documentation 2001:db8::/32, unique-local fc00::/7,
  link-local fe80::/10, deprecated site-local fec0::/10, multicast ff00::/8, and anything
  Python does not consider global.
- IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64
  ``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::``) are judged by the IPv4 address inside.

This module is pure (no I/O); ``fetch.py`` applies it to every resolved address of every hop.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

__all__ = ["is_public_address", "parse_ip"]

_V4_BLOCKED = tuple(
    IPv4Network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)

_V6_BLOCKED = tuple(
    IPv6Network(net)
    for net in (
        "::/96",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)

_NAT64 = IPv6Network("64:ff9b::/96")


def parse_ip(text: str) -> IPv4Address | IPv6Address | None:
    """The address if ``text`` is an IP literal (brackets and IPv6 zone allowed), else None."""
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    candidate = candidate.replace("%25", "%")
    try:
        return ip_address(candidate)
    except ValueError:
        return None


def _is_public_v4(ip: IPv4Address) -> bool:
    if any(ip in net for net in _V4_BLOCKED):
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_private or ip.is_loopback or ip.is_link_local
    )


def _embedded_v4(ip: IPv6Address) -> IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public_address(ip: IPv4Address | IPv6Address) -> bool:
    """True only for a public unicast address that a customer's URL may make us connect to."""
    if isinstance(ip, IPv4Address):
        return _is_public_v4(ip)
    if ip.scope_id:
        # A zone index only makes sense for link-local and site-local addresses.
        return False
    inner = _embedded_v4(ip)
    if inner is not None:
        return _is_public_v4(inner)
    if any(ip in net for net in _V6_BLOCKED):
        return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_reserved
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_site_local
        or ip.is_unspecified
    )
