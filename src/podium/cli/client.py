"""The CLI as a client of `podium serve`: with PODIUM_URL (or --server) it asks the HTTP API.

API errors become the CLI's one-line errors and exit codes; the key never appears in a message.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from podium import __version__
from podium.cli.common import UsageProblem, file_and_json_inputs
from podium.errors import PodiumError, WorkflowInvalid
from podium.model.inputs import parse_cli_inputs, resolve_inputs
from podium.model.status import RUN_FINAL
from podium.model.workflow import Workflow
from podium.redact import redact_url_password

URL_VAR, KEY_VAR = "PODIUM_URL", "PODIUM_API_KEY"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
POLL_START_S, POLL_MAX_S = 0.05, 1.0  # a short run is seen at once, a long one costs little


class RemoteError(PodiumError):
    """The server answered with an error; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """One podium server, one key; every call returns the response's JSON document."""

    def __init__(self, url: str, key: str | None) -> None:
        self.where = redact_url_password(url.rstrip("/"))
        headers = {"User-Agent": f"podium-cli/{__version__}", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._keyed = bool(key)
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def put(self, path: str) -> Any:
        return self.request("PUT", path)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path, params=query, json=body, headers=_json_header(body)
            )
        except httpx.TimeoutException:
            raise PodiumError(
                f"the podium server at {self.where} did not answer in time"
            ) from None
        except httpx.HTTPError as exc:
            # httpx's messages name the failure (refused, unknown host...), never the headers.
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise PodiumError(f"cannot reach the podium server at {self.where}: {reason}") from None
        if response.is_success:
            return response.json() if response.content else None
        raise self._refusal(response)

    def _refusal(self, response: httpx.Response) -> Exception:
        """The CLI's error for an API error: exit 2 for a bad request, else 1 (as local)."""
        status = response.status_code
        document = _document(response)
        message = " ".join(str(document.get("message") or response.reason_phrase).split())
        if status in (401, 403):
            hint = "" if self._keyed or status == 403 else f"; set {KEY_VAR} to an API key"
            return RemoteError(status, f"the server refused the key: {message}{hint}")
        if status == 422 and isinstance(document.get("problems"), list):
            return WorkflowInvalid([str(p) for p in document["problems"]])
        if status in (413, 422):
            return UsageProblem(message)
        if status == 429:
            return RemoteError(status, f"the server is limiting requests: {message}")
        if status >= 500:
            return RemoteError(status, f"the podium server at {self.where} failed: {message}")
        return RemoteError(status, message)  # 400, 404, 409: what the local command would say

    def wait_final(self, run_id: str) -> dict[str, Any]:
        """Polls the run's summary until its status is final; returns the summary."""
        pause = POLL_START_S
        while True:
            summary: dict[str, Any] = self.get(f"/v1/runs/{run_id}")
            if summary["status"] in RUN_FINAL:
                return summary
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX_S)


def _json_header(body: Any) -> dict[str, str]:
    return {} if body is None else {"Content-Type": "application/json"}


def _document(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def client_for(server: str | None) -> Client | None:
    """A client when `--server` or PODIUM_URL names a server; None: act on the store locally."""
    url = (server or os.environ.get(URL_VAR, "")).strip()
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        source = "--server" if server else URL_VAR
        raise UsageProblem(
            f"{source} must be an http:// or https:// URL of `podium serve`"
            f" (got {redact_url_password(url)!r})"
        )
    return Client(url, os.environ.get(KEY_VAR, "").strip() or None)


def remote_inputs(
    client: Client, workflow: str, pairs: list[str], inputs_json: str | None,
    inputs_file: Path | None,
) -> dict[str, Any]:
    """Inputs for a registered workflow: `-i` values parsed by the types its definition
    declares (fetched from the server), as a local run parses them."""
    given = file_and_json_inputs(inputs_json, inputs_file)
    definition = _definition(client, workflow)
    if definition is None:  # the server keeps no definition we can read: JSON, else text
        given.update(_untyped(pairs))
        return given
    given.update(parse_cli_inputs(definition, pairs))
    return resolve_inputs(definition, given)


def _definition(client: Client, name: str) -> Workflow | None:
    try:
        document = client.get(f"/v1/workflows/{name}")
    except PodiumError:
        return None  # not registered (the submit says so) or not readable with this key
    body = document.get("definition") if isinstance(document, dict) else None
    if not isinstance(body, dict):
        return None
    try:
        return Workflow.model_validate(body)
    except ValueError:
        return None


def _untyped(pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise UsageProblem(f"-i {pair!r}: expected NAME=VALUE, e.g. -i topic=llamas")
        try:
            values[name.strip()] = json.loads(text)
        except ValueError:
            values[name.strip()] = text
    return values
