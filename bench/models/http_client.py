"""HTTP to an OpenAI-compatible endpoint: JSON requests, server-sent events, retries with backoff, one-line errors.

Standard library only. The API key is read from its environment variable for each request and
never kept on an object, so it cannot reach a repr, a pickle or an exception's text; any text
the server sends back is scrubbed of it before it is shown.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from bench.errors import UserError

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 120.0
TRANSIENT = (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException, urllib.error.URLError)


class EndpointError(UserError):
    """An endpoint refused a request for good (bad key, unknown model or path, bad request)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(UserError):
    """An endpoint kept failing after every retry (down, overloaded, or dropping connections)."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def public_url(url: str) -> str:
    """``url`` without credentials or a query string (which some gateways use for keys)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds to wait, capped; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base × 2^attempt)]."""
    return rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class Endpoint:
    """One OpenAI-compatible base URL (``…/v1``): POST JSON and GET, retried on 429, 5xx, timeouts and dropped connections."""

    def __init__(
        self,
        base_url: str,
        key_env: str | None,
        timeout_s: float = 120.0,
        max_retries: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.shown = public_url(self.base_url)
        self.key_env = key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.retries = 0  # how many requests were retried (for the manifest and tests)
        # Proxies from the environment, except for loopback addresses.
        self._opener = urllib.request.build_opener()

    # ---------------------------------------------------------------- secrets
    def _key(self) -> str | None:
        if not self.key_env:
            return None
        key = os.environ.get(self.key_env)
        if not key:
            raise UserError(f"endpoint {self.shown} needs its API key in the environment variable {self.key_env}, which is not set; export it and rerun")
        return key

    def scrub(self, text: str) -> str:
        """``text`` with the key (if it appears) replaced, cut to one short line."""
        key = os.environ.get(self.key_env) if self.key_env else None
        if key:
            text = text.replace(key, "***")
        line = " ".join(text.split())
        return line[:240] + ("…" if len(line) > 240 else "")

    # ---------------------------------------------------------------- requests
    def _request(self, path: str, payload: dict[str, Any] | None) -> urllib.request.Request:
        headers = {"Accept": "application/json", "User-Agent": "accessbench"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(payload).encode("utf-8")
        url = path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"
        return urllib.request.Request(url, data=data, headers=headers, method="POST" if payload is not None else "GET")

    def _refusal(self, status: int, body: str, path: str) -> EndpointError:
        message = _server_message(body)
        detail = f": {self.scrub(message)}" if message else ""
        if status in (401, 403):
            how = f"check the key in ${self.key_env}" if self.key_env else "set api_key_env: to the name of the variable holding its key"
            return EndpointError(f"endpoint {self.shown} refused the request (HTTP {status}, bad or missing API key){detail}; {how}", status)
        if status == 404:
            return EndpointError(f"endpoint {self.shown} has no {path.lstrip('/')} or does not serve the model asked for (HTTP 404){detail}", status)
        return EndpointError(f"endpoint {self.shown} rejected the request (HTTP {status}){detail}", status)

    def call[T](self, path: str, payload: dict[str, Any] | None, read: Callable[[http.client.HTTPResponse], T]) -> T:
        """Send one request and ``read`` its response; retried (with the whole read) on transient failures."""
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                try:
                    with self._opener.open(self._request(path, payload), timeout=self.timeout_s) as response:
                        return read(response)
                except urllib.error.HTTPError as error:
                    status = error.code
                    body = _read_quietly(error)
                    if status in RETRY_STATUSES:
                        raise _Retryable(f"HTTP {status}", retry_after_seconds(error.headers.get("Retry-After"))) from None
                    raise self._refusal(status, body, path) from None
                except TRANSIENT as error:
                    reason = getattr(error, "reason", None) or error
                    raise _Retryable(f"{type(error).__name__}: {self.scrub(str(reason))}" if str(reason) else type(error).__name__) from None
            except _Retryable as retry:
                last = retry.reason
                if attempt == self.max_retries:
                    break
                self.retries += 1
                self.sleep(retry.retry_after if retry.retry_after is not None else backoff_seconds(attempt, self.rng))
        raise Unreachable(f"endpoint {self.shown} failed {self.max_retries + 1} times ({last}); is the server up? finished samples are saved, rerun to resume")

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.call(path, payload, _read_json)

    def get(self, path: str) -> dict[str, Any]:
        return self.call(path, None, _read_json)


def _read_quietly(error: urllib.error.HTTPError) -> str:
    try:
        return error.read().decode("utf-8", "replace")
    except Exception:
        return ""


def _server_message(body: str) -> str:
    """The human part of an error body: OpenAI's ``{"error": {"message": …}}``, FastAPI's ``detail``, or the text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data))
        if isinstance(error, dict):
            return str(error.get("message") or error.get("msg") or json.dumps(error))
        return str(error)
    return str(data)


def _read_json(response: http.client.HTTPResponse) -> dict[str, Any]:
    raw = response.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise http.client.HTTPException(f"a reply that is not JSON ({raw[:80]!r})") from None
    if not isinstance(data, dict):
        raise http.client.HTTPException("a JSON reply that is not an object")
    return data


def server_sent_events(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON ``data:`` events of a streamed reply, up to ``[DONE]``; a stream cut short raises (and is retried)."""
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise http.client.HTTPException(f"a streamed event that is not JSON ({data[:80]!r})") from None
        if isinstance(event, dict) and "error" in event:
            raise http.client.HTTPException(f"the server reported an error mid-stream: {_server_message(data)}")
        yield event
    raise http.client.IncompleteRead(b"", None)
