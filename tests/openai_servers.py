"""Real OpenAI-compatible servers for the openai backend's tests: llama-cpp-python's own server, and a fault-injecting proxy.

The proxy sits on 127.0.0.1 in front of a real server and answers each POST from a script of
faults (429 with Retry-After, 500, a dropped connection) before passing requests through; it can
also demand a key (and echo a wrong one back in its 401, as some APIs do, to test scrubbing).
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(model_path: str, alias: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``python -m llama_cpp.server`` on 127.0.0.1:``port``, returning once it lists its model (or failing with its log)."""
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n_ctx", "2048", "--logits_all", "true", "--n_threads", "2"]
    process = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as response:
                if json.load(response)["data"]:
                    return process
        except OSError:
            time.sleep(0.3)
    stop_server(process)
    raise RuntimeError(f"llama_cpp.server did not answer on port {port} within 180 s: {log.read_text(errors='replace')[-2000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def llama_server(model_path: str, alias: str, log: Path, port: int | None = None) -> Iterator[str]:
    """A running server's base URL (``http://127.0.0.1:PORT/v1``); always stopped afterwards."""
    port = port or free_port()
    process = start_server(model_path, alias, port, log)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_server(process)


class FaultProxy:
    """A loopback proxy in front of ``upstream``; ``faults`` is consumed one per POST: 429, 500, "drop" or "pass"."""

    def __init__(self, upstream: str, faults: list[int | str] | None = None, key: str | None = None, retry_after: str = "1") -> None:
        self.upstream = upstream.removesuffix("/v1")
        self.faults = list(faults or [])
        self.key = key
        self.retry_after = retry_after
        self.seen: list[tuple[str, int | str]] = []  # (path, what was done)
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
                if proxy.key is not None and self.headers.get("Authorization") != f"Bearer {proxy.key}":
                    given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    message = {"error": {"message": f"Incorrect API key provided: {given}", "type": "invalid_request_error"}}
                    self._reply(401, json.dumps(message).encode())
                    return
                with proxy.lock:
                    fault = proxy.faults.pop(0) if method == "POST" and proxy.faults else "pass"
                    proxy.seen.append((self.path, fault))
                if fault == 429:
                    self._reply(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": proxy.retry_after})
                elif fault == 500:
                    self._reply(500, b'{"error": {"message": "internal error"}}')
                elif fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self._forward(method, body)

            def _forward(self, method: str, body: bytes | None) -> None:
                host, port = proxy.upstream.removeprefix("http://").split(":")
                connection = http.client.HTTPConnection(host, int(port), timeout=300)
                connection.request(method, self.path, body=body, headers={"Content-Type": "application/json"})
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                self._reply(answer.status, data, {"Content-Type": answer.getheader("Content-Type") or "application/json"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
