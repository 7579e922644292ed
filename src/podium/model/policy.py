"""What a definition from outside (the HTTP API) may do: modules it may call, hosts it may reach.

Local files run by the CLI are trusted as code is: they get no policy (None).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class EgressPolicy:
    """Hosts that http/n8n/llm steps may reach: names (`api.example.com`, `*.example.com`,
    which matches subdomains only), addresses and CIDR ranges. `block_private` refuses
    private, loopback, link-local, multicast and reserved addresses (after DNS too) unless the
    address or its range is listed itself."""

    allow: tuple[str, ...] = ()
    block_private: bool = True

    @cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(e.lower().rstrip(".") for e in self.allow if _network(e) is None)

    @cached_property
    def _networks(self) -> tuple[IPNetwork, ...]:
        return tuple(n for n in (_network(e) for e in self.allow) if n is not None)

    def check_url(self, url: str) -> str | None:
        """Why `url` may not be requested, judged without DNS; None when it may."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            return "is not a valid URL"
        if parts.scheme.lower() not in _SCHEMES:
            return f"only http and https URLs may be used (got scheme {parts.scheme or 'none'!r})"
        if not host:
            return "the URL has no host"
        address = _address(host)
        if address is not None:
            return self._check_address(address, host, by_name=False)
        if not self._name_allowed(host):
            return f"host {host} is not in the egress allow list ([security] egress)"
        return None

    async def check_resolved(self, url: str) -> str | None:
        """`check_url`, then every address the host resolves to: one private address (with
        block_private) refuses the URL. A name that does not resolve passes: the request
        itself then fails, as a retryable error."""
        problem = self.check_url(url)
        if problem is not None or not self.block_private:
            return problem
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        if _address(host) is not None:
            return None  # a literal address was judged by check_url
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or 443, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError):
            return None
        for info in infos:
            address = _address(str(info[4][0]))
            if address is not None:
                problem = self._check_address(address, host, by_name=True)
                if problem is not None:
                    return problem
        return None

    def _name_allowed(self, host: str) -> bool:
        host = host.lower()
        if host in self._names:
            return True
        return any(p.startswith("*.") and host.endswith(p[1:]) for p in self._names)

    def _check_address(self, address: IPAddress, host: str, *, by_name: bool) -> str | None:
        listed = [net for net in self._networks if address in net]
        if not by_name and not listed:
            return f"host {host} is not in the egress allow list ([security] egress)"
        # A private address must be listed itself, or within a private range listed: a wide
        # public range (`0.0.0.0/0`) does not open the internal network.
        if self.block_private and _is_private(address) and not any(map(_inside, listed)):
            where = f"host {host} resolves to {address}, which" if by_name else f"address {host}"
            return (
                f"{where} is a private, loopback or reserved address;"
                " list it in [security] egress to allow it"
            )
        return None


@dataclass(frozen=True)
class TrustPolicy:
    """The rules for an untrusted definition (one registered over the API)."""

    python_modules: tuple[str, ...] = ()  # `call:` only into these modules and submodules
    egress: EgressPolicy = field(default_factory=EgressPolicy)

    def allows_module(self, module: str) -> bool:
        """Whether `module` is one of `python_modules` or a submodule of one."""
        return any(module == m or module.startswith(m + ".") for m in self.python_modules)

    def check_call(self, call: str) -> str | None:
        """Why a python step may not call `call` (`module:function`), or None."""
        module = call.partition(":")[0]
        if self.allows_module(module):
            return None
        return f"module {module!r} is not in [security] python_modules"


def _address(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # drop an IPv6 zone (`%eth0`)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def _network(entry: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return None


def _inside(network: IPNetwork) -> bool:
    return network.num_addresses == 1 or network.is_private or network.is_link_local


def _is_private(address: IPAddress) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )
