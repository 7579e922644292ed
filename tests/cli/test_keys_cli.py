"""`podium keys create | list | revoke`, and `podium serve` refusing an unusable network bind.

The real command runs as a subprocess on a SQLite store in a temp directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_support import Podium


@pytest.fixture
def podium(tmp_path: Path) -> Podium:
    return Podium(tmp_path / "p.db", tmp_path)


def test_a_created_key_is_printed_once_and_listed_without_its_secret(podium: Podium) -> None:
    made = podium("keys", "create", "--name", "ci", "--role", "operator",
                  "--scope", "team-a-*", "--expires", "90d", "--json")
    assert made.code == 0, made.stderr
    key = made.json()
    assert set(key) == {"key_id", "name", "role", "scope", "expires_at", "key"}
    assert re.fullmatch(r"pdm_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key["key"])
    assert (key["name"], key["role"], key["scope"]) == ("ci", "operator", "team-a-*")
    plain = podium("keys", "create", "--name", "admin", "--role", "admin")
    assert plain.code == 0 and plain.stdout.strip().startswith("pdm_")
    assert "shown once" in plain.stderr
    listed = podium("keys", "list", "--json")
    assert [k["name"] for k in listed.json()["keys"]] == ["ci", "admin"]
    secret = key["key"].rsplit("_", 1)[1]
    assert secret not in listed.stdout and "scrypt" not in listed.stdout
    table = podium("keys", "list")
    assert key["key_id"] in table.stdout and "active" in table.stdout


def test_a_revoked_key_is_listed_as_revoked_and_audited_as_the_cli_user(podium: Podium) -> None:
    key_id = podium("keys", "create", "--name", "x", "--role", "viewer", "--json").json()["key_id"]
    assert podium("keys", "revoke", key_id).code == 0
    assert podium("keys", "list", "--json").json()["keys"][0]["revoked_at"]
    again = podium("keys", "revoke", key_id)
    assert again.code == 1 and again.stderr.count("\n") == 1
    audit = podium("audit", "list", "--json").json()["entries"]
    actions = [(e["event_type"], e["actor"].split("@")[0][:4]) for e in audit]
    assert actions == [("audit.key.create", "cli:"), ("audit.key.revoke", "cli:")]


@pytest.mark.parametrize("args", [
    ["--role", "root"], ["--role", "viewer", "--expires", "soon"],
    ["--role", "viewer", "--expires", "0s"],
])
def test_a_bad_role_or_expiry_exits_2_in_one_line_and_writes_nothing(
    podium: Podium, args: list[str]
) -> None:
    result = podium("keys", "create", "--name", "n", *args)
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    assert podium("keys", "list", "--json").json() == {"keys": []}


def test_serve_refuses_a_network_address_with_no_usable_key(podium: Podium) -> None:
    result = podium("serve", "--host", "0.0.0.0", "--port", "0")
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and "refusing to serve on 0.0.0.0" in result.stderr
    assert "podium keys create --name admin --role admin" in result.stderr


def test_serve_wants_both_tls_files_or_neither(podium: Podium) -> None:
    cert = podium.write("cert.pem", "x")
    result = podium("serve", "--tls-cert", str(cert))
    assert result.code == 2 and "both --tls-cert and --tls-key" in result.stderr
