"""What a definition from outside (the HTTP API) may do: modules it may call, hosts it may reach.

Local files run by the CLI are trusted as code is: they get no policy (None).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EgressPolicy:
    """Hosts that http/n8n/llm steps may reach: names (`api.example.com`, `*.example.com`),
    addresses and CIDR ranges. `block_private` refuses private, loopback and link-local
    addresses (after DNS) unless the address or its range is listed itself."""

    allow: tuple[str, ...] = ()
    block_private: bool = True


@dataclass(frozen=True)
class TrustPolicy:
    """The rules for an untrusted definition (one registered over the API)."""

    python_modules: tuple[str, ...] = ()  # `call:` only into these modules and submodules
    egress: EgressPolicy = field(default_factory=EgressPolicy)
