"""The OpenAI-compatible backend: served models (llama.cpp's server, Ollama, vLLM) and paid APIs over HTTP.

``preflight`` talks to the endpoint before any sample is spent: the key and the model are
checked (one line for 401/403/404), the API is chosen (chat, else completions), and the
endpoint is probed for prompt log-probabilities (completions with ``echo`` and ``logprobs``,
else vLLM's ``prompt_logprobs``). Where they are returned, and aligned with the tokens they
belong to, multiple choice and bits per byte are scored from them as in-process; otherwise
multiple choice asks for a letter (``scoring: generative``) and bits-per-byte cells are skipped.
Replies are streamed where the endpoint streams (time to first token), with tokens counted from
the streamed usage or by the server's tokeniser. Requests of a call run concurrently in a bounded
pool; the HTTP layer (``bench.models.http_client``) retries with backoff and honours ``Retry-After``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
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
DEFAULT_CONTEXT = 2048  # tokens per request where neither max_length nor the endpoint says (the in-process backends' default)
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
    prompt_logprobs: str  # "aligned", "shifted" or "absent"
    logprob_request: Literal["echo", "prompt_logprobs"] | None  # how aligned prompt log-probs are asked for
    first_token: Literal["echoed", "forced"] | None  # where a text's first log-prob comes from (bits per byte); None: nowhere
    streamed: Literal["usage", "tokenize"] | None  # streamed, tokens counted from the streamed usage or by the tokenise endpoint; None: not streamed
    tokenize_path: str | None  # a server endpoint that tokenises text, if any
    special_tokens: int  # tokens the server's tokenizer adds to every text (a BOS)
    prompt_overhead: int | None  # tokens a request adds around its prompt (BOS, chat template), from usage
    context: int  # tokens one request may hold: max_length, else what GET /models says, else DEFAULT_CONTEXT


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


def _served_model(endpoint: Any, wanted: str | None) -> tuple[str, int | None]:
    """The model to ask for, checked against ``GET /models`` where the endpoint lists them, and its context length if listed (vLLM's ``max_model_len``)."""
    from bench.models.http_client import EndpointError

    try:
        entries = [item for item in endpoint.get("models").get("data", []) if isinstance(item, dict)]
    except EndpointError as error:
        if error.status in (401, 403):
            raise
        entries = []  # no model list here (404, 405): the probe below still asks for the model
    listed = [str(item.get("id")) for item in entries]
    if wanted is None:
        if len(listed) != 1:
            raise UserError(f"endpoint {endpoint.shown} serves {len(listed) or 'an unknown number of'} models; name one with model: ({', '.join(listed[:5])})")
        wanted = listed[0]
    elif listed and wanted not in listed:
        from bench.errors import did_you_mean

        raise UserError(f"endpoint {endpoint.shown} does not serve model '{wanted}'{did_you_mean(wanted, listed)}; it serves: {', '.join(listed[:8])}")
    context = next((item.get("max_model_len") for item in entries if str(item.get("id")) == wanted), None)
    return wanted, context if isinstance(context, int) and context > 0 else None


def _completion_payload(model: str, prompt: str, options: OpenAIOptions, **fields: Any) -> dict[str, Any]:
    return {**options.extra_body, "model": model, "prompt": prompt, "temperature": 0.0, **fields}


def _echo_alignment(endpoint: Any, model: str, options: OpenAIOptions) -> tuple[str, list[str], list[float | None]]:
    """Echoed prompt log-probs: 'aligned' when each belongs to the token listed with it, 'shifted' when one late, else 'absent'
    (also when the listed offsets are not where the tokens sit in the text); with the probe text's echoed tokens and their log-probs."""
    from bench.models.http_client import EndpointError

    payload = _completion_payload(model, ALIGNMENT_PROBE, options, max_tokens=1, echo=True, logprobs=1)
    try:
        choice = endpoint.post("completions", payload)["choices"][0]
    except (EndpointError, KeyError, IndexError, TypeError):
        return "absent", [], []
    logprobs = choice.get("logprobs") or {}
    tokens, top = logprobs.get("tokens") or [], logprobs.get("top_logprobs") or []
    offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
    if not (len(tokens) == len(top) == len(offsets) == len(values)) or len(tokens) < 8 or not choice.get("text", "").startswith(ALIGNMENT_PROBE):
        return "absent", [], []
    if not all(ALIGNMENT_PROBE.startswith(token, offset) for token, offset in zip(tokens, offsets) if offset < len(ALIGNMENT_PROBE)):
        return "absent", [], []  # e.g. vLLM's echo: offsets summed over decoded tokens, a "<bos>" among them
    best = [max(entry, key=lambda token: entry[token]) if isinstance(entry, dict) and entry else None for entry in top]
    here = sum(best[i] == tokens[i] for i in range(1, len(tokens)))
    ahead = sum(best[i] == tokens[i + 1] for i in range(1, len(tokens) - 1))
    prompt = sum(offset < len(ALIGNMENT_PROBE) for offset in offsets)
    return ("aligned" if here > ahead else "shifted"), tokens[:prompt], values[:prompt]


def _prompt_logprob_alignment(endpoint: Any, model: str, options: OpenAIOptions, ids: list[int]) -> str:
    """vLLM's ``prompt_logprobs`` extension on the probe text (``ids``: its tokens as the server makes them): 'aligned', 'shifted' or 'absent'."""
    from bench.models.http_client import EndpointError

    payload = _completion_payload(model, ALIGNMENT_PROBE, options, max_tokens=1, prompt_logprobs=1)
    try:
        entries = endpoint.post("completions", payload)["choices"][0].get("prompt_logprobs")
    except (EndpointError, KeyError, IndexError, TypeError, AttributeError):
        return "absent"
    if not isinstance(entries, list) or len(entries) != len(ids) or len(ids) < 8:
        return "absent"
    best = [_top_token(entry) for entry in entries]
    here = sum(best[i] == str(ids[i]) for i in range(1, len(ids)))
    ahead = sum(best[i] == str(ids[i + 1]) for i in range(1, len(ids) - 1))
    return "aligned" if here > ahead else "shifted"


def _top_token(entry: Any) -> str | None:
    """The id (a string key) of the most likely token in one ``prompt_logprobs`` entry ({id: {logprob, rank, decoded_token}})."""
    if not isinstance(entry, dict) or not entry:
        return None
    return str(max(entry, key=lambda token: float(entry[token]["logprob"])))


def _forced_first_token(endpoint: Any, model: str, options: OpenAIOptions, token_id: int | None) -> tuple[str, float, dict[str, float]] | None:
    """The first token generated after BOS from an empty prompt (``token_id`` forced by ``logit_bias``), streamed with log-probs:
    (its text, its log-probability, the top log-probabilities listed); None where the endpoint answers otherwise.

    llama-cpp-python's server applies ``logit_bias`` when sampling and reports the model's own log-probabilities,
    which gives a text's first token its log-probability from BOS (its echo lists none)."""
    from bench.models.http_client import EndpointError, server_sent_events

    bias = {} if token_id is None else {"logit_bias": {str(token_id): 100}}
    payload = _completion_payload(model, "", options, max_tokens=1, logprobs=1, stream=True, **bias)

    def read(response: Any) -> tuple[str, float, dict[str, float]] | None:
        for event in server_sent_events(response):
            choices: list[dict[str, Any]] = event.get("choices") or [{}]
            logprobs = choices[0].get("logprobs") or {}
            tokens, values, top = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [], logprobs.get("top_logprobs") or []
            if tokens and values and values[0] is not None:
                return str(tokens[0]), float(values[0]), dict(top[0] or {}) if top else {}
        return None

    try:
        return endpoint.call("completions", payload, read)
    except (EndpointError, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def _forcing_reports_raw_logprobs(endpoint: Any, model: str, options: OpenAIOptions, ids: list[int], texts: list[str]) -> bool:
    """Whether forcing a token with ``logit_bias`` leaves the reported log-probs as the model's: the unforced favourite keeps its value.
    ``ids``/``texts``: the probe text's tokens, one of which (not the favourite) is forced."""
    free = _forced_first_token(endpoint, model, options, None)
    if free is None:
        return False
    favourite, value, _ = free
    candidates = [(token_id, text) for token_id, text in zip(ids, texts) if text.strip() and text.strip() != favourite.strip()]
    if not candidates:
        return False
    token_id, text = candidates[0]
    forced = _forced_first_token(endpoint, model, options, token_id)
    if forced is None or forced[0].strip() != text.strip() or favourite not in forced[2]:
        return False
    return abs(forced[2][favourite] - value) < 1e-4 and forced[1] < value


def _streaming(endpoint: Any, model: str, api: str, options: OpenAIOptions) -> tuple[bool, bool]:
    """Whether the endpoint streams replies (server-sent events), and whether a streamed reply ends with ``usage`` (``stream_options.include_usage``)."""
    from bench.models.http_client import EndpointError, server_sent_events

    payload = _request_payload(api, model, "Hi", 1, (), options) | {"stream": True, "stream_options": {"include_usage": True}}

    def read(response: Any) -> tuple[bool, bool]:
        events = list(server_sent_events(response))
        return any(event.get("choices") for event in events), any(event.get("usage") for event in events)

    try:
        return endpoint.call(api_path(api), payload, read)
    except EndpointError:
        return False, False


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


def _token_ids(endpoint: Any, path: str, model: str, text: str) -> list[int]:
    """``text``'s tokens as the server makes them for a prompt (with the special tokens it adds)."""
    return [int(token) for token in endpoint.post(path, {"model": model, "input": text, "content": text, "prompt": text})["tokens"]]


def _prompt_overhead(endpoint: Any, model: str, api: str, options: OpenAIOptions, path: str, special: int) -> int | None:
    """Tokens a request adds to its prompt's own (BOS, chat template): usage minus the tokenised prompt, the same for two prompts, else None."""
    overheads = set()
    for prompt in ("Hi", "A b\nC: d."):
        usage = endpoint.post(api_path(api), _request_payload(api, model, prompt, 1, (), options)).get("usage") or {}
        if not isinstance(usage.get("prompt_tokens"), int):
            return None
        overheads.add(usage["prompt_tokens"] - (len(_token_ids(endpoint, path, model, prompt)) - special))
    return overheads.pop() if len(overheads) == 1 else None


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
    key = (options.base_url, str(options.model), options.api, options.scoring, str(spec.max_length), repr(sorted(options.extra_body.items())))
    with _PROBES_LOCK:
        if key in _PROBES:
            return _PROBES[key]
    endpoint = _endpoint(options)
    model, listed_context = _served_model(endpoint, options.model)
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
    path = _tokenize_path(endpoint, model)
    special = len(_token_ids(endpoint, path, model, "")) if path else 0
    alignment, echoed, values = _echo_alignment(endpoint, model, options)
    request: Literal["echo", "prompt_logprobs"] | None = "echo" if alignment == "aligned" else None
    first_token: Literal["echoed", "forced"] | None = None
    if alignment == "absent" and path:
        alignment = _prompt_logprob_alignment(endpoint, model, options, _token_ids(endpoint, path, model, ALIGNMENT_PROBE))
        request = "prompt_logprobs" if alignment == "aligned" else None
        first_token = "echoed" if request and special else None  # the entry after BOS is the text's first token
    elif request == "echo" and values[0] is not None:
        first_token = "echoed"
    elif request == "echo" and path:
        ids = _token_ids(endpoint, path, model, ALIGNMENT_PROBE)[special:]
        first_token = "forced" if len(ids) == len(echoed) and _forcing_reports_raw_logprobs(endpoint, model, options, ids, echoed) else None
    if options.scoring == "loglikelihood" and alignment != "aligned":
        raise UserError(
            f"model {spec.ref}: endpoint {endpoint.shown} returns no usable prompt log-probabilities ({alignment}); use scoring: generative or auto"
        )
    scoring: Scoring = "loglikelihood" if alignment == "aligned" and options.scoring != "generative" else "generative"
    streams, stream_usage = _streaming(endpoint, model, api, options)
    overhead = _prompt_overhead(endpoint, model, api, options, path, special) if streams and not stream_usage and path else None
    streamed: Literal["usage", "tokenize"] | None = "usage" if stream_usage else "tokenize" if overhead is not None else None
    context = spec.max_length or listed_context or DEFAULT_CONTEXT
    found = Probe(model, api, scoring, alignment, request, first_token, streamed, path, special, overhead, context)
    with _PROBES_LOCK:
        _PROBES[key] = found
    return found


def preflight(spec: ModelConfig) -> Preflight:
    """Check key, model and API of the endpoint before any sample is spent, and say which task kinds it cannot run."""
    from bench.models.http_client import public_url

    options = _options(spec)
    found = probe(spec)
    skips = {}
    if found.prompt_logprobs != "aligned":
        skips["rolling_loglikelihood"] = (
            f"bits per byte needs every token's log-probability, which this endpoint does not return (prompt log-probs: {found.prompt_logprobs})"
        )
    elif found.first_token is None:
        skips["rolling_loglikelihood"] = "bits per byte needs every token's log-probability; this endpoint gives none for a text's first token"
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


@dataclass(frozen=True)
class PromptToken:
    """One token of a prompt as the endpoint scored it."""

    text: str
    logprob: float | None  # None where the endpoint gives none (the first token of an echo)
    greedy: bool  # the model's most likely token at its position
    offset: int | None  # where it starts in the prompt (echo); None from prompt_logprobs, which gives no offsets


def split_text(text: str, parts: int) -> list[str]:
    """``text`` in ``parts`` pieces of about equal length, each cut before the whitespace nearest its place (or at it, where none is near)."""
    spaces = [i for i, char in enumerate(text) if char.isspace() and i > 0]
    cuts = [0]
    for part in range(1, parts):
        target = part * len(text) // parts
        near = [i for i in spaces if i > cuts[-1] and 2 * parts * abs(i - target) <= len(text)]
        cuts.append(min(near, key=lambda i: abs(i - target)) if near else max(target, cuts[-1] + 1))
    cuts.append(len(text))
    return [text[start:end] for start, end in pairwise(cuts) if start < end]


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
        self._one_stream = threading.Lock()
        self.spent_usd = 0.0
        self._tokenizer: Any = None
        shown = public_url(self.options.base_url)
        endpoint = {
            "base_url": shown,
            "model": self.found.model,
            "api": self.found.api,
            "scoring": self.scoring,
            "prompt_logprobs": self.found.prompt_logprobs,
            "logprob_request": self.found.logprob_request,
            "streamed": self.found.streamed,
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

    # ---------------------------------------------------------------- tokens on the server
    def _ids(self, text: str) -> list[int]:
        if self.found.tokenize_path is None:
            raise UserError(f"endpoint {self.endpoint.shown} cannot tokenise text; set tokenizer: for token statistics")
        return _token_ids(self.endpoint, self.found.tokenize_path, self.found.model, text)

    def _count(self, text: str) -> int:
        """Tokens of ``text`` without the special tokens the server adds."""
        return len(self._ids(text)) - self.found.special_tokens

    # ---------------------------------------------------------------- scoring
    def _prompt_tokens(self, prompt: str) -> tuple[list[PromptToken], int]:
        """The tokens of ``prompt`` (without the BOS the server adds), each with its log-probability; and the prompt tokens the server counted."""
        if self.found.logprob_request == "prompt_logprobs":
            ids = self._ids(prompt)
            reply = self.endpoint.post("completions", _completion_payload(self.found.model, prompt, self.options, max_tokens=1, prompt_logprobs=1))
            entries = reply["choices"][0].get("prompt_logprobs")
            if not isinstance(entries, list) or len(entries) != len(ids):
                raise UserError(
                    f"endpoint {self.endpoint.shown} gave prompt log-probabilities that do not match its tokenizer's {len(ids)} tokens for {prompt[:40]!r}"
                )
            tokens = []
            for token_id, entry in list(zip(ids, entries))[self.found.special_tokens :]:
                chosen = (entry or {}).get(str(token_id))
                value = None if chosen is None else float(chosen["logprob"])
                tokens.append(PromptToken(str((chosen or {}).get("decoded_token") or ""), value, chosen is not None and chosen.get("rank") == 1, None))
        else:
            reply = self.endpoint.post("completions", _completion_payload(self.found.model, prompt, self.options, max_tokens=1, echo=True, logprobs=1))
            logprobs = reply["choices"][0]["logprobs"]
            tokens = []
            for offset, token, value, top in zip(logprobs["text_offset"], logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]):
                if offset >= len(prompt):
                    break  # the generated token
                greedy = bool(top) and max(top, key=lambda other: top[other]) == token
                tokens.append(PromptToken(token, None if value is None else float(value), greedy, offset))
        usage = reply.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens", len(tokens) + self.found.special_tokens))
        self._charge(prompt_tokens, int(usage.get("completion_tokens", 1)))
        return tokens, prompt_tokens

    def _score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        context, continuation = request.context, request.continuation
        spaces = len(context) - len(context.rstrip())
        if spaces:  # as in-process: a trailing space of the context belongs to the continuation's first token
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            raise UserError("an empty context cannot be scored over an endpoint (its first token has no log-probability)")
        tokens, prompt_tokens = self._prompt_tokens(context + continuation)
        if self.found.logprob_request == "prompt_logprobs":
            in_context = self._count(context)  # as in-process: the context's tokens, then the rest of the pair's
        else:
            in_context = sum(1 for token in tokens if token.offset is not None and token.offset < len(context))
        scored = tokens[in_context:]
        if not scored:
            raise UserError(f"the continuation {request.continuation!r} merged into its context's last token on {self.endpoint.shown}; it cannot be scored")
        values = [token.logprob for token in scored]
        if None in values:
            raise UserError(f"endpoint {self.endpoint.shown} gave no log-probability for a continuation token ({scored[values.index(None)].text!r})")
        return LoglikelihoodResult(sum(value for value in values if value is not None), all(token.greedy for token in scored), prompt_tokens, len(scored))

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        if self.scoring != "loglikelihood":
            raise UserError(f"endpoint {self.endpoint.shown} returns no usable prompt log-probabilities; multiple choice runs generatively there")
        return self._map(self._score, requests)

    def pieces(self, text: str) -> list[str]:
        """``text`` cut at whitespace into pieces of at most a window of tokens (the context, less the BOS and the one token each request
        generates); the whole text where it fits or where the endpoint cannot count tokens."""
        window = self.found.context - self.found.special_tokens - 1
        if not text or self.found.tokenize_path is None:
            return [text] if text else []
        parts = -(-self._count(text) // window)
        while 1 < parts <= len(text):
            pieces = split_text(text, parts)
            if all(self._count(piece) <= window for piece in pieces):
                return pieces
            parts += 1
        return [text]

    def _text_logprob(self, text: str) -> tuple[float, int]:
        """The log-probability of a whole text, its first token predicted from BOS, and its number of tokens."""
        tokens, _ = self._prompt_tokens(text)
        values = [token.logprob for token in tokens]
        if values and values[0] is None and self.found.first_token == "forced":
            first = _forced_first_token(self.endpoint, self.found.model, self.options, self._ids(text)[self.found.special_tokens])
            if first is None or first[0].strip() != tokens[0].text.strip():
                raise UserError(f"endpoint {self.endpoint.shown} did not score the first token ({tokens[0].text!r}) of {text[:40]!r} when asked to")
            self._charge(self.found.special_tokens, 1)
            values[0] = first[1]
        missing = values.count(None)
        if missing:
            raise UserError(f"endpoint {self.endpoint.shown} gave no log-probability for {missing} of the {len(values)} tokens of {text[:40]!r}")
        return sum(value for value in values if value is not None), len(values)

    def _rolling_one(self, text: str) -> RollingResult:
        scored = [self._text_logprob(piece) for piece in self.pieces(text)]
        return RollingResult(logprob=sum(logprob for logprob, _ in scored), input_tokens=sum(tokens for _, tokens in scored))

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        if self.found.prompt_logprobs != "aligned" or self.found.first_token is None:
            raise UserError(f"endpoint {self.endpoint.shown} does not give every token's log-probability; bits-per-byte cells are skipped for it")
        return self._map(self._rolling_one, texts)

    # ---------------------------------------------------------------- generation
    def _streamed(self, payload: dict[str, Any], stops: Sequence[str], cut: bool) -> tuple[str, dict[str, Any], float | None, float]:
        """A streamed reply: its text, usage, the time of its first text and when the request was sent. ``cut``: stop reading at the
        first stop string (closing the stream stops the server). A stream that ends without a finish reason was cut short by the server
        (llama-cpp-python's interrupts a stream whenever another request arrives) and is sent again."""
        from bench.models.http_client import server_sent_events

        def read(response: Any) -> tuple[str, dict[str, Any], float | None, bool]:
            text, usage, first, finished = "", dict[str, Any](), None, False
            for event in server_sent_events(response):
                usage = event.get("usage") or usage  # after the finish reason, where the server sends it
                for choice in event.get("choices") or []:
                    piece = _choice_text(choice)
                    if piece:
                        first = first if first is not None else time.perf_counter()
                        text += piece
                        if cut and any(stop and stop in text[-len(piece) - len(stop) :] for stop in stops):
                            return text, usage, first, True
                    finished = finished or bool(choice.get("finish_reason"))
            return text, usage, first, finished

        fields = {"stream": True} | ({"stream_options": {"include_usage": True}} if self.found.streamed == "usage" else {})
        for _ in range(self.options.max_retries + 1):
            started = time.perf_counter()
            text, usage, first, finished = self.endpoint.call(api_path(self.found.api), payload | fields, read)
            if finished:
                return text, usage, first, started
        raise UserError(
            f"endpoint {self.endpoint.shown} cut every stream short {self.options.max_retries + 1} times (another client's requests interrupt it?"
            " llama-cpp-python's server: start it with --interrupt_requests false)"
        )

    def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        params, streamed = request.params, self.found.streamed
        temperature = {} if params.greedy else {"temperature": params.temperature, "top_p": params.top_p}
        # Counted by tokenising what was generated, the stop string included (as usage counts it): stops are applied here.
        stop = () if streamed == "tokenize" else params.stop
        payload = _request_payload(self.found.api, self.found.model, request.context, params.max_new_tokens, stop, self.options, self.seed) | temperature
        if streamed is None:
            started = time.perf_counter()
            reply = self.endpoint.post(api_path(self.found.api), payload)
            text, usage, first = _choice_text(reply["choices"][0]), reply.get("usage") or {}, None
            ended = time.perf_counter()
        elif streamed == "usage":
            text, usage, first, started = self._streamed(payload, params.stop, cut=False)
            ended = time.perf_counter()
        else:
            with self._one_stream:  # any request to such a server, a tokenisation too, would cut a stream in flight short
                text, usage, first, started = self._streamed(payload, params.stop, cut=True)
                ended = time.perf_counter()
                usage = {"prompt_tokens": (self.found.prompt_overhead or 0) + self._count(request.context), "completion_tokens": self._count(text)}
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
        return [self._count(text) for text in texts]


def _choice_text(choice: dict[str, Any]) -> str:
    """The text of a completions or chat choice, streamed (``delta``) or whole (``message``)."""
    if "text" in choice:
        return str(choice.get("text") or "")
    message = choice.get("delta") or choice.get("message") or {}
    return str(message.get("content") or "")
