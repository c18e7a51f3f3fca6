"""The master's own dns-01 check: does the TXT record hold the expected value? (blocking)"""

from __future__ import annotations

import dns.exception
import dns.nameserver
import dns.resolver


class DnsCheckError(Exception):
    """The TXT lookup itself failed (SERVFAIL, timeout…), as opposed to a wrong value."""


def parse_resolvers(spec: str) -> list[tuple[str, int]]:
    """``"1.2.3.4:53,[::1]:5353,9.9.9.9"`` → [(host, port), …]."""
    result: list[tuple[str, int]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or "]" in port or (host.count(":") and not host.startswith("[")):
            host, port = item, "53"
        result.append((host.strip("[]"), int(port)))
    return result


def txt_values(name: str, resolvers: str = "", timeout: float = 5.0) -> list[str]:
    """Every TXT string at ``name``; [] when the name has none; DnsCheckError on failure."""
    servers = parse_resolvers(resolvers)
    resolver = dns.resolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in servers]
    resolver.lifetime = timeout
    try:
        answer = resolver.resolve(name, "TXT", raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    except dns.exception.DNSException as error:
        raise DnsCheckError(f"DNS lookup of {name} TXT failed: {error}") from error
    values: list[str] = []
    for rdata in answer:
        values.append(b"".join(rdata.strings).decode(errors="replace"))
    return values
