"""The OpenAI-compatible backend: served models (llama.cpp's server, Ollama, vLLM) and paid APIs over HTTP.

``preflight`` talks to the endpoint before any sample is spent: the key and the model are
checked (one line for 401/403/404), the API is chosen (chat, else completions), and the
endpoint is probed for prompt log-probabilities (completions with ``echo`` and ``logprobs``).
Where they are returned, and aligned with the tokens they belong to, multiple choice is scored
by log-likelihood exactly as in-process; otherwise the evaluation asks for a letter
(``scoring: generative``). Requests of a call run concurrently in a bounded pool; the HTTP
layer (``bench.models.http_client``) retries with backoff and honours ``Retry-After``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from bench.config import BatchSize, ModelConfig
from bench.errors import UserError
from bench.models.base import (
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
    Preflight,
    RollingResult,
    truncate_at_stop,
)
from bench.models.sources import ModelSource

JsonDict = dict[str, JsonValue]
Scoring = Literal["loglikelihood", "generative"]
# Text whose next tokens any language model predicts: an aligned endpoint's top log-prob at
# position i names token i, a shifted one (llama-cpp-python's echo for models without BOS) token i+1.
ALIGNMENT_PROBE = "A B C D E F G H I J K L M N O P"
NOT_IN_RESULTS: JsonDict = {"affects_results": False}  # options that change how a run talks to the endpoint, not what it measures


class TokenPrice(BaseModel):
    """An explicit price, US$ per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)


class OpenAIOptions(BaseModel):
    """The openai backend's keys, written flat in a model entry."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(description="the endpoint, e.g. http://127.0.0.1:8080/v1 or https://api.openai.com/v1")
    model: str | None = Field(None, description="the model id the endpoint serves; default: its only model")
    api: Literal["auto", "chat", "completions"] = "auto"
    scoring: Literal["auto", "loglikelihood", "generative"] = "auto"
    api_key_env: str | None = Field(None, description="the NAME of the environment variable holding the key (never the key)", json_schema_extra=NOT_IN_RESULTS)
    max_concurrency: int = Field(4, ge=1, le=256, json_schema_extra=NOT_IN_RESULTS)
    timeout_s: float = Field(120.0, gt=0, json_schema_extra=NOT_IN_RESULTS)
    max_retries: int = Field(6, ge=0, le=30, json_schema_extra=NOT_IN_RESULTS)
    tokenizer: str | None = Field(None, description="a local tokenizer (Hub id or folder) for token statistics")
    price: str | TokenPrice | None = Field(
        None, description="provider:model from models.dev, or {input_per_1m, output_per_1m}", json_schema_extra=NOT_IN_RESULTS
    )
    extra_body: dict[str, Any] = Field(default_factory=dict, description="server-specific request fields, e.g. {repeat_penalty: 1.0}")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL such as http://127.0.0.1:8080/v1")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
            raise ValueError("must be the name of an environment variable (such as OPENAI_API_KEY), never the key itself")
        return value


@dataclass(frozen=True)
class Probe:
    """What an endpoint turned out to support."""

    model: str
    api: Literal["chat", "completions"]
    scoring: Scoring
    prompt_logprobs: str  # "aligned", "shifted", "absent", or "not probed"
    stream_usage: bool  # streamed replies carry usage (else requests are not streamed, and time to first token is unknown)
    tokenize_path: str | None  # a server endpoint that tokenises text, if any


_PROBES: dict[tuple[str, ...], Probe] = {}
_PROBES_LOCK = threading.Lock()


def _endpoint(options: OpenAIOptions, seed: int = 0) -> Any:
    from bench.models.http_client import Endpoint

    return Endpoint(options.base_url, options.api_key_env, options.timeout_s, options.max_retries, seed=seed)


def _options(spec: ModelConfig) -> OpenAIOptions:
    from bench.models.registry import backend_options

    if "base_url" not in spec.options:
        raise UserError(f"model {spec.ref}: backend openai needs base_url: (the endpoint, e.g. http://127.0.0.1:8080/v1)")
    return backend_options(spec, OpenAIOptions)


def _served_model(endpoint: Any, wanted: str | None) -> str:
    """The model to ask for: checked against ``GET /models`` where the endpoint lists them."""
    from bench.models.http_client import EndpointError

    try:
        listed = [str(item.get("id")) for item in endpoint.get("models").get("data", []) if isinstance(item, dict)]
    except EndpointError as error:
        if error.status in (401, 403):
            raise
        listed = []  # no model list here (404, 405): the probe below still asks for the model
    if wanted is None:
        if len(listed) != 1:
            raise UserError(f"endpoint {endpoint.shown} serves {len(listed) or 'an unknown number of'} models; name one with model: ({', '.join(listed[:5])})")
        return listed[0]
    if listed and wanted not in listed:
        from bench.errors import did_you_mean

        raise UserError(f"endpoint {endpoint.shown} does not serve model '{wanted}'{did_you_mean(wanted, listed)}; it serves: {', '.join(listed[:8])}")
    return wanted


def _completion_payload(model: str, prompt: str, options: OpenAIOptions, **fields: Any) -> dict[str, Any]:
    return {**options.extra_body, "model": model, "prompt": prompt, "temperature": 0.0, **fields}


def _logprob_alignment(endpoint: Any, model: str, options: OpenAIOptions) -> str:
    """'aligned' when echoed prompt log-probs belong to the tokens they are listed with, 'shifted' when one late, else 'absent'."""
    from bench.models.http_client import EndpointError

    payload = _completion_payload(model, ALIGNMENT_PROBE, options, max_tokens=1, echo=True, logprobs=1)
    try:
        choice = endpoint.post("completions", payload)["choices"][0]
    except (EndpointError, KeyError, IndexError, TypeError):
        return "absent"
    logprobs = choice.get("logprobs") or {}
    tokens, top = logprobs.get("tokens") or [], logprobs.get("top_logprobs") or []
    offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
    if not (len(tokens) == len(top) == len(offsets) == len(values)) or len(tokens) < 8 or not choice.get("text", "").startswith(ALIGNMENT_PROBE):
        return "absent"
    best = [max(entry, key=lambda token: entry[token]) if isinstance(entry, dict) and entry else None for entry in top]
    here = sum(best[i] == tokens[i] for i in range(1, len(tokens)))
    ahead = sum(best[i] == tokens[i + 1] for i in range(1, len(tokens) - 1))
    return "aligned" if here > ahead else "shifted"


def _stream_usage(endpoint: Any, model: str, api: str, options: OpenAIOptions) -> bool:
    """Whether a streamed reply ends with ``usage`` (``stream_options.include_usage``)."""
    from bench.models.http_client import EndpointError, server_sent_events

    payload = _request_payload(api, model, "Hi", 1, (), options) | {"stream": True, "stream_options": {"include_usage": True}}
    try:
        return bool(endpoint.call(f"{api_path(api)}", payload, lambda response: any(event.get("usage") for event in server_sent_events(response))))
    except EndpointError:
        return False


def _tokenize_path(endpoint: Any, model: str) -> str | None:
    """llama-cpp-python's ``/extras/tokenize`` or llama-server's and vLLM's ``/tokenize``, if the server has one."""
    from bench.models.http_client import EndpointError, Unreachable

    root = endpoint.base_url.removesuffix("/v1")
    for path in (f"{root}/extras/tokenize", f"{root}/tokenize"):
        try:
            if isinstance(endpoint.post(path, {"model": model, "input": "a b", "content": "a b", "prompt": "a b"}).get("tokens"), list):
                return path
        except (EndpointError, Unreachable):
            continue
    return None


def api_path(api: str) -> str:
    return "chat/completions" if api == "chat" else "completions"


def _request_payload(
    api: str, model: str, prompt: str, max_tokens: int, stop: Sequence[str], options: OpenAIOptions, seed: int | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {**options.extra_body, "model": model, "max_tokens": max_tokens, "temperature": 0.0}
    if api == "chat":
        payload["messages"] = [{"role": "user", "content": prompt}]
    else:
        payload["prompt"] = prompt
    if stop:
        payload["stop"] = list(stop)[:4]  # OpenAI takes at most four; the rest are applied to the text
    if seed is not None:
        payload["seed"] = seed
    return payload


def probe(spec: ModelConfig) -> Probe:
    """What the endpoint supports (cached per endpoint, model and settings for this process)."""
    options = _options(spec)
    key = (options.base_url, str(options.model), options.api, options.scoring, repr(sorted(options.extra_body.items())))
    with _PROBES_LOCK:
        if key in _PROBES:
            return _PROBES[key]
    endpoint = _endpoint(options)
    model = _served_model(endpoint, options.model)
    api: Literal["chat", "completions"] = "completions" if options.api == "completions" else "chat"
    if options.api == "auto":
        from bench.models.http_client import EndpointError

        try:
            endpoint.post("chat/completions", _request_payload("chat", model, "Hi", 1, (), options))
        except EndpointError as error:
            if error.status in (401, 403):
                raise
            api = "completions"
    else:
        endpoint.post(api_path(api), _request_payload(api, model, "Hi", 1, (), options))  # 401/403/404 here, before any sample
    alignment = _logprob_alignment(endpoint, model, options) if options.scoring != "generative" else "not probed"
    if options.scoring == "loglikelihood" and alignment != "aligned":
        raise UserError(
            f"model {spec.ref}: endpoint {endpoint.shown} returns no usable prompt log-probabilities ({alignment}); use scoring: generative or auto"
        )
    scoring: Scoring = "loglikelihood" if alignment == "aligned" else "generative"
    found = Probe(model, api, scoring, alignment, _stream_usage(endpoint, model, api, options), _tokenize_path(endpoint, model))
    with _PROBES_LOCK:
        _PROBES[key] = found
    return found


def preflight(spec: ModelConfig) -> Preflight:
    """Check key, model and API of the endpoint before any sample is spent, and say which task kinds it cannot run."""
    from bench.models.http_client import public_url

    options = _options(spec)
    found = probe(spec)
    skips = {"rolling_loglikelihood": "bits per byte needs every token's log-probability, which this backend does not read from an endpoint yet"}
    if options.tokenizer is None and found.tokenize_path is None:
        skips["tokenizer_stats"] = "the endpoint cannot tokenise text; set tokenizer: (a local Hub id or folder) for token statistics"
    source = ModelSource(ref=spec.ref, kind="endpoint", location=public_url(options.base_url), title=found.model)
    resolved: dict[str, str | int] = {"api": found.api, "scoring": found.scoring, "prompt_logprobs": found.prompt_logprobs}
    return Preflight(source, 0, resolved, skips)


def _api_price(spec: ModelConfig, options: OpenAIOptions) -> Any:
    """The per-token price: explicit, else models.dev by ``price: provider:model``, else by the ref when it is one; None: self-hosted."""
    from bench.cost.apis import ApiPrice, _listings, reference_price

    if isinstance(options.price, TokenPrice):
        return ApiPrice(f"config:{spec.ref}", spec.ref, options.price.input_per_1m, options.price.output_per_1m)
    if isinstance(options.price, str):
        return reference_price(options.price)
    return next((listing for listing in _listings() if listing.api == spec.ref), None)


class OpenAIBackend:
    """Answers the backend protocol over HTTP; each call's requests run concurrently."""

    def __init__(self, spec: ModelConfig, batch_size: BatchSize = "auto", seed: int = 1234) -> None:
        from bench.models.http_client import public_url

        self.spec, self.seed = spec, seed
        self.options = _options(spec)
        self.found = probe(spec)
        self.scoring: Scoring = self.found.scoring
        self.endpoint = _endpoint(self.options, seed)
        self.price = _api_price(spec, self.options)
        self.pool = ThreadPoolExecutor(self.options.max_concurrency, thread_name_prefix="accessbench-http")
        self._lock = threading.Lock()
        self.spent_usd = 0.0
        self._tokenizer: Any = None
        shown = public_url(self.options.base_url)
        endpoint = {
            "base_url": shown,
            "model": self.found.model,
            "api": self.found.api,
            "scoring": self.scoring,
            "prompt_logprobs": self.found.prompt_logprobs,
            "streamed": self.found.stream_usage,
            "price": None
            if self.price is None
            else {"api": self.price.api, "input_per_1m": self.price.usd_per_1m_input, "output_per_1m": self.price.usd_per_1m_output},
        }
        self.info = ModelInfo(
            ref=spec.ref,
            backend="openai",
            parameters=0,
            dtype="n/a",
            device="remote",
            quantization=None,
            source=shown,
            endpoint=endpoint,
        )

    def warm_up(self) -> None:
        """Nothing to warm: preflight has already talked to the endpoint."""

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _map[T, R](self, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return list(self.pool.map(work, items))

    def _charge(self, input_tokens: int, output_tokens: int) -> None:
        if self.price is not None:
            with self._lock:
                self.spent_usd += self.price.usd(input_tokens, output_tokens)

    # ---------------------------------------------------------------- scoring
    def _score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        context, continuation = request.context, request.continuation
        spaces = len(context) - len(context.rstrip())
        if spaces:  # as in-process: a trailing space of the context belongs to the continuation's first token
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            raise UserError("an empty context cannot be scored over an endpoint (its first token has no log-probability)")
        prompt = context + continuation
        payload = _completion_payload(self.found.model, prompt, self.options, max_tokens=1, echo=True, logprobs=1)
        reply = self.endpoint.post("completions", payload)
        logprobs = reply["choices"][0]["logprobs"]
        picked, greedy, prompt_tokens = 0.0, True, 0
        for offset, token, value, top in zip(logprobs["text_offset"], logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]):
            if offset >= len(prompt):
                break  # the generated token
            prompt_tokens += 1
            if offset < len(context):
                continue
            if value is None:
                raise UserError(f"endpoint {self.endpoint.shown} gave no log-probability for a continuation token ({token!r})")
            picked += float(value)
            greedy = greedy and bool(top) and max(top, key=lambda other: top[other]) == token
        usage = reply.get("usage") or {}
        self._charge(int(usage.get("prompt_tokens", prompt_tokens)), int(usage.get("completion_tokens", 1)))
        continuation_tokens = sum(1 for offset in logprobs["text_offset"] if len(context) <= offset < len(prompt))
        if continuation_tokens == 0:
            raise UserError(f"the continuation {request.continuation!r} merged into its context's last token on {self.endpoint.shown}; it cannot be scored")
        return LoglikelihoodResult(picked, greedy, int(usage.get("prompt_tokens", prompt_tokens)), continuation_tokens)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        if self.scoring != "loglikelihood":
            raise UserError(f"endpoint {self.endpoint.shown} returns no usable prompt log-probabilities; multiple choice runs generatively there")
        return self._map(self._score, requests)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        raise UserError("rolling log-likelihood (bits per byte) is not available over an endpoint; such cells are skipped")

    # ---------------------------------------------------------------- generation
    def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        from bench.models.http_client import server_sent_events

        params = request.params
        temperature = {} if params.greedy else {"temperature": params.temperature, "top_p": params.top_p}
        payload = _request_payload(self.found.api, self.found.model, request.context, params.max_new_tokens, params.stop, self.options, self.seed) | temperature
        started = time.perf_counter()
        if not self.found.stream_usage:
            reply = self.endpoint.post(api_path(self.found.api), payload)
            text, usage, first = _choice_text(reply["choices"][0]), reply.get("usage") or {}, None
        else:

            def read(response: Any) -> tuple[str, dict[str, Any], float | None]:
                parts: list[str] = []
                usage: dict[str, Any] = {}
                first: float | None = None
                for event in server_sent_events(response):
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = _choice_text(choice)
                        if piece:
                            first = first if first is not None else time.perf_counter()
                            parts.append(piece)
                return "".join(parts), usage, first

            text, usage, first = self.endpoint.call(api_path(self.found.api), payload | {"stream": True, "stream_options": {"include_usage": True}}, read)
        ended = time.perf_counter()
        input_tokens, output_tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        self._charge(input_tokens, output_tokens)
        return GenerationResult(
            text=truncate_at_stop(text, params.stop),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            ttft_seconds=None if first is None else first - started,
            decode_seconds=None if first is None else ended - first,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return self._map(self._generate_one, requests)

    # ---------------------------------------------------------------- tokens
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self.options.tokenizer is not None:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.options.tokenizer)
            return [len(self._tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
        path = self.found.tokenize_path
        if path is None:
            raise UserError(f"endpoint {self.endpoint.shown} cannot tokenise text; set tokenizer: for token statistics")
        model = self.found.model

        def count(text: str) -> int:
            return len(self.endpoint.post(path, {"model": model, "input": text, "content": text, "prompt": text, "add_special": False})["tokens"])

        empty = count("")  # a BOS token the server adds to every text
        return [count(text) - empty for text in texts]


def _choice_text(choice: dict[str, Any]) -> str:
    """The text of a completions or chat choice, streamed (``delta``) or whole (``message``)."""
    if "text" in choice:
        return str(choice.get("text") or "")
    message = choice.get("delta") or choice.get("message") or {}
    return str(message.get("content") or "")
