"""Real OpenAI-compatible servers for the openai backend's tests: llama-cpp-python's own server, a fault-injecting proxy, and a
stand-in answering in vLLM's response shapes with a real model's numbers.

The proxy sits on 127.0.0.1 in front of a real server and answers each POST from a script of
faults (429 with Retry-After, 500, a dropped connection, a stream cut short) before passing requests
through; it can also demand a key (and echo a wrong one back in its 401, as some APIs do, to test scrubbing).
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
from typing import Self


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


class LocalServer:
    """An HTTP server on a free port of 127.0.0.1, in a thread, for a ``with`` block; ``url`` is its OpenAI base URL."""

    def _serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class FaultProxy(LocalServer):
    """A loopback proxy in front of ``upstream``; ``faults`` is consumed one per POST: 429, 500, "drop", "cut" (a stream ended early) or "pass"."""

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
                    self._forward(method, body, cut=fault == "cut")

            def _forward(self, method: str, body: bytes | None, cut: bool = False) -> None:
                host, port = proxy.upstream.removeprefix("http://").split(":")
                connection = http.client.HTTPConnection(host, int(port), timeout=300)
                connection.request(method, self.path, body=body, headers={"Content-Type": "application/json"})
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                if cut:  # a stream ended after its first event, as llama-cpp-python's server ends one when another request arrives
                    data = data.split(b"\n\n")[0] + b"\n\ndata: [DONE]\n\n"
                self._reply(answer.status, data, {"Content-Type": answer.getheader("Content-Type") or "application/json"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._serve(Handler)


class VllmStandIn(LocalServer):
    """A loopback server answering in vLLM's response shapes, with numbers a real model computes (Gemma 3 270M, llama.cpp in-process).

    ``GET /v1/models`` lists ``max_model_len``; ``POST /tokenize`` returns ``{count, max_model_len, tokens}``; ``POST /v1/completions``
    returns vLLM's echo log-probs (text offsets summed over decoded tokens, a decoded ``<bos>`` first, as vLLM's
    ``_create_completion_logprobs`` builds them) and, with ``prompt_logprobs: N``, ``choices[0].prompt_logprobs``: a list with null
    first, then per prompt position ``{token_id: {logprob, rank, decoded_token}}`` for the prompt token and the N most likely.
    Chat and streaming are refused (HTTP 400, as vLLM refuses chat for a model without a chat template), other paths are 404.
    """

    def __init__(self, model_path: str, alias: str, context: int = 2048) -> None:
        import numpy as np
        from llama_cpp import Llama

        self.llm = Llama(model_path=model_path, n_ctx=context, n_batch=512, logits_all=True, verbose=False, n_threads=2)
        self.alias, self.context = alias, context
        self.lock = threading.Lock()
        self.requests: list[dict[str, object]] = []
        stand_in = self

        def decode(token: int) -> str:
            return stand_in.llm.detokenize([token], special=True).decode("utf-8", "replace")

        def score(ids: list[int]) -> np.ndarray:
            """Log-softmax of the logits at every position of ``ids``: all but the last evaluated afresh in one batch, as the in-process
            backend evaluates a fresh sequence, then the last (llama.cpp's Gemma 3 scores move by up to ~0.2 nats with the batch layout)."""
            stand_in.llm.reset()
            stand_in.llm.eval(ids[:-1])
            stand_in.llm.eval(ids[-1:])
            rows = stand_in.llm.scores[: len(ids)].astype(np.float64)
            rows -= rows.max(axis=-1, keepdims=True)
            return rows - np.log(np.exp(rows).sum(axis=-1, keepdims=True))

        def entry(row: np.ndarray, token: int, top: int) -> dict[str, dict[str, object]]:
            chosen = {"logprob": float(row[token]), "rank": int((row > row[token]).sum()) + 1, "decoded_token": decode(token)}
            best = np.argpartition(-row, top - 1)[:top] if top else np.array([], dtype=int)
            best = [int(i) for i in best[np.argsort(-row[best])]]
            return {str(token): chosen} | {str(i): {"logprob": float(row[i]), "rank": rank, "decoded_token": decode(i)} for rank, i in enumerate(best, 1)}

        def completion(body: dict[str, object]) -> dict[str, object]:
            ids = stand_in.llm.tokenize(str(body["prompt"]).encode(), add_bos=True, special=True)
            with stand_in.lock:
                logprobs = score(ids)
            generated = int(logprobs[-1].argmax())
            text = decode(generated)
            choice: dict[str, object] = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None}
            top = body.get("prompt_logprobs")
            if isinstance(top, int):
                choice["prompt_logprobs"] = [None] + [entry(logprobs[i - 1], ids[i], top) for i in range(1, len(ids))]
            if body.get("echo") and isinstance(body.get("logprobs"), int):
                tokens = [*ids, generated]
                rows = [None] + [{decode(i): float(logprobs[p - 1][i]) for i in {tokens[p], int(logprobs[p - 1].argmax())}} for p in range(1, len(tokens))]
                decoded = [decode(token) for token in tokens]
                offsets = [sum(len(piece) for piece in decoded[:i]) for i in range(len(decoded))]
                values = [None if row is None else row[decoded[p]] for p, row in enumerate(rows)]
                choice["text"] = str(body["prompt"]) + text
                choice["logprobs"] = {"text_offset": offsets, "token_logprobs": values, "tokens": decoded, "top_logprobs": rows}
            usage = {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}
            return {"id": "cmpl-standin", "object": "text_completion", "created": 0, "model": stand_in.alias, "choices": [choice], "usage": usage}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, data: object) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._reply(200, {"object": "list", "data": [{"id": stand_in.alias, "object": "model", "max_model_len": stand_in.context}]})
                else:
                    self._reply(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                stand_in.requests.append({"path": self.path, **body})
                if self.path == "/tokenize":
                    ids = stand_in.llm.tokenize(str(body["prompt"]).encode(), add_bos=body.get("add_special_tokens", True), special=True)
                    self._reply(200, {"count": len(ids), "max_model_len": stand_in.context, "tokens": ids, "token_strs": None})
                elif self.path == "/v1/completions" and not body.get("stream"):
                    self._reply(200, completion(body))
                elif self.path in ("/v1/completions", "/v1/chat/completions"):
                    self._reply(400, {"error": {"message": "this stand-in serves non-streamed completions only", "type": "BadRequestError", "code": 400}})
                else:
                    self._reply(404, {"detail": "Not Found"})

        self._serve(Handler)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.llm.close()
