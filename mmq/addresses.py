"""Which addresses mmq may connect to on a tenant's behalf (media URLs, webhooks): public unicast ones,
or hosts the operator lists. Numeric hosts are read the way inet_aton and browsers read them (decimal
`2130706433`, hex `0x7f000001`, octal `0177.0.0.1`, short `127.1`), so each is judged as the address it
really is, and IPv4 addresses inside IPv6 forms (mapped, NAT64, 6to4, Teredo) are judged as IPv4 too.
Used by the guarded fetcher and the webhook sender (mmq/fetch.py), and at submit (a webhook URL).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not covered by ipaddress's is_private/is_global on every Python version we support.
_CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HEX_DIGITS = frozenset("0123456789abcdef")


def _is_number(part: str) -> bool:
    """WHATWG "ends in a number": all decimal digits, or 0x followed by hex digits (possibly none)."""
    if part.startswith("0x"):
        return set(part[2:]) <= _HEX_DIGITS
    return part.isascii() and part.isdigit()


def _parse_part(part: str, host: str) -> int:
    try:
        if part.startswith("0x"):
            return int(part[2:], 16) if part[2:] else 0
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        if part.isascii() and part.isdigit():
            return int(part, 10)
    except ValueError:
        pass
    raise ValueError(f"{host!r} is not a valid IPv4 address")


def parse_host(host: str) -> IPAddress | None:
    """The address a numeric host really means, or None for a name.

    IPv6 literals may carry brackets and a zone (`%25eth0`). IPv4 follows inet_aton/browsers: one to
    four dot-separated parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    remaining bytes, so `127.1` is 127.0.0.1 and `2130706433` is too. A host whose last label is a
    number but which is not a valid address (`1.2.3.999`, `a.1`) raises ValueError: browsers reject
    it, and passing it on to DNS would leave the decision to another parser.
    """
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h.replace("%25", "%"))
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv6 address") from None
    if h.endswith("."):
        h = h[:-1]
    parts = h.split(".")
    if not parts[-1] or not _is_number(parts[-1]):
        return None
    if len(parts) > 4:
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    numbers = [_parse_part(p, host) for p in parts]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _normalise_host(host: str) -> str:
    h = host.strip().lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    try:
        address = parse_host(h)
    except ValueError:
        return h
    return str(address) if address is not None else h


def _allowed_set(allow_hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(_normalise_host(h) for h in allow_hosts)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form stands for (mapped, NAT64, 6to4, Teredo client), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _blocked_reason(address: IPAddress) -> str | None:
    """Why this address may not be fetched, or None if it is a public unicast address."""
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("carrier-grade NAT", isinstance(address, ipaddress.IPv4Address) and address in _CARRIER_GRADE_NAT),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _address_problem(ip: str, allowed: frozenset[str]) -> str | None:
    """None if `ip` may be fetched, else a reason naming the address class."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    if str(address) in allowed:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return f"{ip} has a zone (link-local)"
        inner = _embedded_ipv4(address)
        if inner is not None:
            # Mapped and NAT64 (DNS64 networks answer 64:ff9b::a.b.c.d for every IPv4 host) forms reach
            # a.b.c.d itself; tunnel forms (6to4, Teredo) must also pass as IPv6 addresses below.
            mapped = address.ipv4_mapped is not None or address in _NAT64
            if mapped and str(inner) in allowed:
                return None
            reason = _blocked_reason(inner)
            if reason:
                return f"{ip} embeds {inner}, which is {reason}"
            if mapped:
                return None
    reason = _blocked_reason(address)
    return f"{ip} is {reason}" if reason else None


def address_allowed(ip: str, allow_hosts: Iterable[str] = frozenset()) -> bool:
    """True if `ip` is a public unicast address, or is listed in `allow_hosts`.

    IPv4 addresses inside IPv6 forms (::ffff:a.b.c.d, NAT64, 6to4, Teredo) are judged as IPv4 too.
    """
    return _address_problem(ip, _allowed_set(allow_hosts)) is None
