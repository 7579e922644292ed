"""API keys: the `pdm_<key_id>_<secret>` format, salted scrypt hashes, and their verification.

The store keeps only the hash; the key is shown once, when `new_key` makes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from podium.api.roles import ROLE_PERMISSIONS
from podium.store.records import ApiKeyRecord

PREFIX = "pdm"
# scrypt's cost: about 16 MiB of memory and tens of milliseconds per check, paid once per key
# and process thanks to `VerifiedKeys`.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, HASH_BYTES, SECRET_BYTES = 16, 32, 32
_TOKEN = re.compile(r"^pdm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: str


def parse_token(token: str) -> ParsedKey | None:
    """The parts of a well-formed key, or None."""
    match = _TOKEN.match(token)
    return None if match is None else ParsedKey(match.group(1), match.group(2))


def new_key(
    name: str,
    role: str,
    scope: str | None,
    expires_s: float | None,
    now: float,
    created_by: str,
) -> tuple[str, ApiKeyRecord]:
    """A fresh key and the record to store; `expires_s` None: it never expires."""
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLE_PERMISSIONS)}")
    key_id = secrets.token_hex(6)
    secret = _b64(secrets.token_bytes(SECRET_BYTES))
    record = ApiKeyRecord(
        key_id=key_id, name=name, role=role, scope=scope or None,
        secret_hash=hash_secret(secret), created_at=now,
        expires_at=None if expires_s is None else now + expires_s, created_by=created_by,
    )
    return f"{PREFIX}_{key_id}_{secret}", record


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify(token: str, record: ApiKeyRecord) -> bool:
    """Does `token` belong to `record`? Constant-time on the hash; the cost parameters come
    from the stored hash, so keys made with older parameters keep working."""
    parsed = parse_token(token)
    if parsed is None or parsed.key_id != record.key_id:
        return False
    try:
        scheme, n, r, p, salt, expected = record.secret_hash.split("$")
        if scheme != "scrypt":
            return False
        digest = _scrypt(parsed.secret, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(digest, _unb64(expected))
    except ValueError:  # a damaged hash matches nothing
        return False


class VerifiedKeys:
    """Keys this process has verified: sha256(key) -> the hash it matched. Only scrypt is
    skipped on a hit; revocation and expiry are read from the key's record every request."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._seen: OrderedDict[bytes, str] = OrderedDict()
        self._max = max_entries

    def known(self, token: str, record: ApiKeyRecord) -> bool:
        # Compared with the stored hash, so a record whose hash changed is checked afresh.
        matched = self._seen.get(_fingerprint(token))
        return matched is not None and hmac.compare_digest(matched, record.secret_hash)

    def add(self, token: str, record: ApiKeyRecord) -> None:
        self._seen[_fingerprint(token)] = record.secret_hash
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=256 * 1024 * 1024
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64") from exc
