"""The Redactor masks every known secret value; URLs are cut down to what may be shown."""

from __future__ import annotations

import json
from typing import Any

from podium.redact import Redactor, redact_url_password, safe_url, structlog_processor

SECRET = "sk-live-abcdef123456"


def test_a_redactor_without_values_is_false_and_changes_nothing() -> None:
    redactor = Redactor([])
    assert not redactor
    value = {"a": ["x"]}
    assert redactor.value(value) is value
    assert redactor.text("abc") == "abc"
    assert redactor.blob(b"abc") == b"abc"


def test_text_masks_every_occurrence_longest_value_first() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor
    assert redactor.text("x abcdefgh y abcd z") == "x *** y *** z"


def test_values_shorter_than_four_characters_are_ignored() -> None:
    redactor = Redactor(["abc", ""])
    assert not redactor
    assert redactor.text("abc") == "abc"


def test_value_masks_deep_strings_and_keys_and_keeps_untouched_objects() -> None:
    redactor = Redactor([SECRET])
    clean = {"n": 1, "l": ["a"]}
    data: dict[str, Any] = {"clean": clean, "auth": f"Bearer {SECRET}", SECRET: [SECRET, 2]}
    masked = redactor.value(data)
    assert masked == {"clean": clean, "auth": "Bearer ***", "***": ["***", 2]}
    assert masked["clean"] is clean
    assert redactor.value(clean) is clean
    assert data["auth"] == f"Bearer {SECRET}"  # the input is never changed


def test_add_masks_a_value_learned_later() -> None:
    redactor = Redactor()
    redactor.add("token-1234")
    assert redactor.text("t=token-1234") == "t=***"


def test_blob_masks_raw_and_json_escaped_forms() -> None:
    secret = 'pa"ss\\wörd'
    redactor = Redactor([secret, SECRET])
    encoded = json.dumps({"k": secret, "ascii": False}).encode()
    assert secret.encode() not in redactor.blob(encoded)
    assert b"***" in redactor.blob(encoded)
    raw = json.dumps({"k": secret}, ensure_ascii=False).encode()
    assert redactor.blob(raw) == b'{"k": "***"}'
    assert json.loads(redactor.blob(json.dumps({"k": f"x{SECRET}"}).encode())) == {"k": "x***"}


def test_safe_url_drops_credentials_and_query() -> None:
    url = "https://user:pw@api.example.com:8443/v1/x?key=SECRET#frag"
    assert safe_url(url) == "https://api.example.com:8443/v1/x"
    assert safe_url("http://[::1]:80/p") == "http://[::1]:80/p"
    assert safe_url("http://[bad") == "<invalid url>"


def test_redact_url_password_keeps_everything_but_the_password() -> None:
    assert redact_url_password("postgresql://u:pw@h/db?password=pw2") == (
        "postgresql://u:***@h/db?password=***"
    )
    assert redact_url_password("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url_password("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"


def test_the_structlog_processor_masks_every_value_of_the_event() -> None:
    processor = structlog_processor(Redactor([SECRET]))
    event = {"event": f"calling with {SECRET}", "headers": {"a": SECRET}, "n": 3}
    assert processor(None, "info", event) == {
        "event": "calling with ***",
        "headers": {"a": "***"},
        "n": 3,
    }
