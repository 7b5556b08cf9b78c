"""The transformers backend: Hub ids, local checkpoints and GGUF files on a CPU or one GPU."""

from __future__ import annotations

import copy
import functools
import gc
import importlib.util
import inspect
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import transformers

from bench.config import BatchSize, ModelConfig
from bench.errors import UserError
from bench.models.base import (
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
    Preflight,
    RollingResult,
    TokenizingBackend,
    auto_batch_size,
    rolling_windows,
    split_pair,
    truncate_at_stop,
)
from bench.models.cpu_dtype import CHECK_TEXTS, auto_cpu_dtype
from bench.models.gguf_cache import converted_dir, ensure_converted
from bench.models.gguf_header import read_header
from bench.models.memory import MemoryEstimate, check_fits
from bench.models.sources import ModelSource, resolve
from bench.models.threads import compute_threads

T = TypeVar("T")
R = TypeVar("R")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SCORING_BUDGET_BYTES = 512 * 2**20  # cap on the float32 logits (and copied KV cache) one scoring batch may materialise
DEFAULT_MAX_LENGTH = 8192
# The fixed cost of a forward pass in tokens' worth of work (every weight is read once per pass):
# on a 2-core CPU a pass costs ~90 ms and a token ~1.7 ms (SmolLM2, float32); a GPU pass costs as
# much as hundreds of tokens. It decides when a band of continuations is worth its own pass.
PASS_COST_TOKENS = {"cpu": 48, "cuda": 512}
# Continuations of up to this many tokens (after the first) ride in their context's row in one pass; longer
# ones run in bands on copies of the context's cache (they would pad every row of the batch).
PACKED_CONTINUATION_TOKENS = 16
PREFIX_CACHES_KEPT = 8  # shared prefixes (tasks' instructions) whose KV cache is kept between batches


def _packable(continuation: list[int]) -> bool:
    """Whether a continuation rides in its context's row: more than one token, at most PACKED_CONTINUATION_TOKENS after the first."""
    return 1 < len(continuation) <= PACKED_CONTINUATION_TOKENS + 1


def _packed_tokens(continuations: list[list[int]]) -> int:
    """The tokens short continuations add to their context's row (each one's first is predicted by the context)."""
    return sum(len(continuation) - 1 for continuation in continuations if _packable(continuation))


transformers.logging.set_verbosity_error()  # the run's own progress bar is the one to watch
transformers.utils.logging.disable_progress_bar()


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{requested}' was asked for but no CUDA GPU is visible; use --device cpu (or device: auto)")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' was asked for but Apple's Metal backend is not available; use --device cpu")
    return requested


def pick_dtype(requested: str, device: str) -> str:
    """auto → bfloat16 on a GPU, float32 on a CPU (the backend may then pick bfloat16: bench.models.cpu_dtype)."""
    if requested != "auto":
        return requested
    return "bfloat16" if device.startswith("cuda") else "float32"


def _config_parameter_count(config: Any, trust_remote_code: bool) -> int:
    """Count parameters without allocating weights (accelerate's empty-weights context)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return int(skeleton.num_parameters())


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def _load_error(ref: str, error: ValueError | OSError) -> UserError:
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "trust_remote_code" in str(error):
        return UserError(f"model {ref} needs its own code from the Hub; set trust_remote_code: true for it in the config if you trust its authors")
    if isinstance(error, OSError):
        return UserError(f"model {ref} could not be loaded ({first_line}); check the id, revision and network, or pass a local folder")
    return UserError(f"model {ref} could not be loaded: {first_line}")


def preflight(spec: ModelConfig) -> Preflight:
    """Check a model before anything is loaded: its reference, device, dtype and whether it fits in memory.

    Resolves the device and the dtype name. Cheap: reads only configs and GGUF headers.
    """
    device = pick_device(spec.device)
    dtype_name = pick_dtype(spec.dtype, device)
    if spec.quantization and not device.startswith("cuda"):
        raise UserError(f"quantization: {spec.quantization} loads through bitsandbytes on a GPU only; on a CPU use --dtype bfloat16 instead")
    if spec.quantization and importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"quantization: {spec.quantization} needs bitsandbytes; install it with `pip install bitsandbytes`")
    source = resolve(spec.ref, spec.revision)
    precision = spec.quantization or dtype_name
    if source.kind == "gguf" and not (converted_dir(source) / "config.json").is_file():
        parameters = read_header(Path(source.location)).parameters
        # Converting dequantises everything to float32 in RAM first.
        check_fits(spec.ref, MemoryEstimate(parameters, "float32"), "cpu", spec.max_memory, False)
    else:
        from transformers import AutoConfig

        path = str(converted_dir(source)) if source.kind == "gguf" else source.location
        revision = None if source.kind == "gguf" else source.revision
        try:
            config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=spec.trust_remote_code)
            parameters = _config_parameter_count(config, spec.trust_remote_code)
        except (ValueError, OSError) as error:
            raise _load_error(spec.ref, error) from None
    estimate = MemoryEstimate(parameters, precision)
    check_fits(spec.ref, estimate, device, spec.max_memory, spec.device_map is not None)
    return Preflight(source, estimate.bytes_needed, {"device": device, "dtype": dtype_name})


class HFBackend(TokenizingBackend):
    """Answers loglikelihood, rolling-loglikelihood and generation requests with a transformers model."""

    def __init__(self, spec: ModelConfig, batch_size: BatchSize = "auto", seed: int = 1234) -> None:
        self.spec = spec
        checked = preflight(spec)
        self.source, self.device, self.dtype_name = checked.source, str(checked.resolved["device"]), str(checked.resolved["dtype"])
        threads = compute_threads()
        torch.set_num_threads(threads)  # before the dtype check, which runs the model too
        dtype_reason = "as configured" if spec.dtype != "auto" else "auto: bfloat16 on a GPU"
        if spec.dtype == "auto" and self.device == "cpu":
            key = f"{self.source.cache_key or self.source.location}@{self.source.revision}|torch {torch.__version__}"
            choice = auto_cpu_dtype(key, self._check_logprobs)
            self.dtype_name, dtype_reason = choice.dtype, f"auto: {choice.reason}"
        torch.manual_seed(seed)
        self.model, self.tokenizer = self._load(self.source, self.dtype_name)
        self.model.eval()
        self.input_device = self.model.device if spec.device_map is None else next(self.model.parameters()).device
        self.batch_size = auto_batch_size(batch_size, self.device)
        self.max_length = spec.max_length or min(
            getattr(self.model.config, "max_position_embeddings", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH
        )
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self.prefix_token_id = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.use_chat_template = self.uses_chat_template(spec.chat_template, getattr(self.tokenizer, "chat_template", None) is not None)
        forward_parameters = inspect.signature(self.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in forward_parameters
        self._cache_argument = "cache" if "cache" in forward_parameters else "past_key_values"  # renamed in transformers 5.2x
        self._shares_contexts = _returns_cache(self.model, self.input_device)
        # Sliding-window layers count padding cells as distance, so a padded pass after a shared prefix is exact only within the window.
        self._attention_window: int | None = getattr(self.model.config.get_text_config(), "sliding_window", None) or None
        self._kv_bytes_per_token = _kv_bytes_per_token(self.model.config, DTYPES[self.dtype_name])
        # The custom 4D attention mask that packed scoring passes: boolean for sdpa, additive for eager; None: no packing.
        self._mask_kind = {"sdpa": "bool", "eager": "float"}.get(getattr(self.model.config, "_attn_implementation", None) or "")
        self._prefix_caches: dict[tuple[int, ...], Any] = {}  # KV caches of shared prefixes, one row each (see _prefix_cache)
        self.share_prefixes = True  # benchmarks/shared_prefix.py turns it off to measure what it saves
        self.time_first_token = True  # the cost meter's hook in generate(); benchmarks/meter_overhead.py turns it off to price it
        self.info = ModelInfo(
            ref=spec.ref,
            backend="hf",
            parameters=int(self.model.num_parameters()),
            dtype=self.dtype_name,
            device=self.device,
            quantization=spec.quantization or ("gguf-dequantised" if self.source.kind == "gguf" else None),
            source=self.source.location,
            dtype_reason=dtype_reason,
            threads=threads if self.device == "cpu" else None,
        )

    # ---------------------------------------------------------------- loading
    def _check_logprobs(self, dtype_name: str) -> list[float]:
        """Log-likelihood of each of the dtype check's sentences with the model loaded in ``dtype_name`` (bench.models.cpu_dtype)."""
        model, tokenizer = self._load(self.source, dtype_name)
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        scores = []
        with torch.inference_mode():
            for text in CHECK_TEXTS:
                ids = torch.tensor([[prefix, *tokenizer(text, add_special_tokens=False)["input_ids"]]], device=self.device)
                logits = model(ids).logits[0, :-1].float()
                scores.append(float(torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None]).sum()))
        del model
        gc.collect()
        return scores

    def _load(self, source: ModelSource, dtype_name: str) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        spec = self.spec
        offload = spec.device_map is not None
        if source.kind == "gguf":
            path, revision = str(ensure_converted(source)), None
        else:
            path, revision = source.location, source.revision
        common = {"revision": revision, "trust_remote_code": spec.trust_remote_code}
        try:
            kwargs: dict[str, Any] = {"dtype": DTYPES[dtype_name], **common}
            if offload:
                kwargs["device_map"] = spec.device_map
                if spec.max_memory:
                    kwargs["max_memory"] = {int(k) if str(k).isdigit() else k: v for k, v in spec.max_memory.items()}
            if spec.quantization:
                from transformers import BitsAndBytesConfig

                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_8bit=spec.quantization == "8bit",
                    load_in_4bit=spec.quantization == "4bit",
                    bnb_4bit_compute_dtype=DTYPES[dtype_name],
                )
                kwargs.setdefault("device_map", self.device)
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(path, **common)
        except (ValueError, OSError) as error:
            raise _load_error(spec.ref, error) from None
        if not offload and not spec.quantization:
            model.to(self.device)  # type: ignore[arg-type]
        return model, tokenizer

    def close(self) -> None:
        """Release the model's memory (the runner loads one model at a time)."""
        del self.model
        self._prefix_caches.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------- batching
    def _batched(self, items: Sequence[T], run: Callable[[list[T]], list[R]], cost: Callable[[list[T]], int]) -> list[R]:
        """Run ``items`` (already sorted, longest first) in batches; halve the batch size on out-of-memory.

        ``cost`` gives the bytes a candidate batch would materialise, capped by SCORING_BUDGET_BYTES.
        """
        results: list[R] = []
        start = 0
        while start < len(items):
            size = 1
            while size < self.batch_size and start + size < len(items) and cost(list(items[start : start + size + 1])) <= SCORING_BUDGET_BYTES:
                size += 1
            batch = list(items[start : start + size])
            try:
                results.extend(run(batch))
            except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                if not _is_out_of_memory(error) or size == 1:
                    raise
                self.batch_size = max(1, size // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start += size
        return results

    # ---------------------------------------------------------------- scoring core
    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, padded on the left to the longest sequence."""
        width = max(len(sequence) for sequence in sequences)
        ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, width - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
            mask[row, width - len(sequence) :] = 1
        return ids, mask

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        keep: int | None = None,
        cache: Any = None,
        cells: Sequence[tuple[int, int]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """One forward pass, after the KV ``cache`` if given; with ``keep``, only the last ``keep`` positions' logits are computed.

        With ``cells``, (row, distance from the end of the row) pairs, the output layer reads only those
        positions: the logits come as one row of len(cells) positions, in that order (a pre-hook on the
        output layer gathers them, so whatever the model does to its logits after that layer still applies).
        ``keep`` is then the farthest of them.
        """
        if cells is not None:
            keep = max(distance for _, distance in cells)
        if keep is not None and self._keeps_logits:
            kwargs["logits_to_keep"] = keep
        if cache is not None:
            kwargs[self._cache_argument] = cache
        hook = None
        if cells is not None:
            rows = torch.tensor([row for row, _ in cells], device=self.input_device)
            back = torch.tensor([distance for _, distance in cells], device=self.input_device)

            def gather(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
                hidden = args[0]
                return (hidden[rows, hidden.shape[1] - back][None], *args[1:])

            hook = self.model.get_output_embeddings().register_forward_pre_hook(gather)
        try:
            return self.model(
                input_ids=ids.to(self.input_device),
                attention_mask=mask.to(self.input_device),
                position_ids=positions.to(self.input_device),
                **kwargs,
            )
        finally:
            if hook is not None:
                hook.remove()

    def _score_batch(self, batch: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """For each (inputs, targets): the last len(targets) positions of inputs predict targets.

        Sequences are left-padded so that every target sits at the end and only the needed
        positions' logits are computed; the prefix they all share (a task's instruction) runs once.
        """
        keep = max(len(targets) for _, targets in batch)
        targets, valid = self._pad_targets([targets for _, targets in batch], left=True)
        with torch.inference_mode():
            unscored = min(len(inputs) - len(targets) for inputs, targets in batch)  # a shared prefix must end before any scored position
            output, _ = self._forward_sharing_prefix([inputs for inputs, _ in batch], unscored, keep, use_cache=False)
            logits = output.logits[:, -keep:, :]
            return _target_logprobs(logits, targets.to(logits.device), valid.to(logits.device))

    def _shared_prefix_length(self, sequences: list[list[int]], limit: int) -> int:
        """How many leading tokens (at most ``limit``) every sequence shares, when running them once saves work; else 0.

        A prefix whose KV cache an earlier batch kept (a task's instruction) costs nothing and is used as it is;
        a new one is worth its extra pass when the tokens saved, the prefix times every row but one, outweigh
        it. Exact only when every row fits a sliding attention window, if the model has one.
        """
        if len(sequences) < 2 or not self._shares_contexts or not self.share_prefixes:
            return 0
        if self._attention_window is not None and max(len(sequence) for sequence in sequences) > self._attention_window:
            return 0
        first = sequences[0]
        length = 0
        while length < limit and all(len(sequence) > length and sequence[length] == first[length] for sequence in sequences):
            length += 1
        kept = max((len(tokens) for tokens in self._prefix_caches if len(tokens) <= length and tuple(first[: len(tokens)]) == tokens), default=0)
        if kept:
            return kept
        return length if length * (len(sequences) - 1) > PASS_COST_TOKENS.get(self.input_device.type, 48) else 0

    def _prefix_cache(self, prefix: list[int], rows: int) -> Any:
        """The KV cache of ``prefix``, one copy per row. The prefix runs once; its cache is kept for later batches
        (the last PREFIX_CACHES_KEPT prefixes), so a cell's instruction runs once, not once per batch."""
        key = tuple(prefix)
        single = self._prefix_caches.pop(key, None)
        if single is None:
            ids = torch.tensor([prefix], dtype=torch.long)
            single = self._forward(ids, torch.ones_like(ids), torch.arange(len(prefix))[None], keep=1, use_cache=True).past_key_values
        self._prefix_caches[key] = single  # the most recently used last
        while len(self._prefix_caches) > PREFIX_CACHES_KEPT:
            del self._prefix_caches[next(iter(self._prefix_caches))]
        cache = copy.deepcopy(single)
        cache.reorder_cache(torch.zeros(rows, dtype=torch.long, device=self.input_device))  # one copy per row
        return cache

    def _forward_sharing_prefix(
        self, sequences: list[list[int]], limit: int, keep: int | None, use_cache: bool, cells: Sequence[tuple[int, int]] | None = None
    ) -> tuple[Any, torch.Tensor]:
        """One left-padded pass over ``sequences``; the token prefix they all share (up to ``limit`` tokens) runs once
        before it, and its KV cache serves every row. Returns the output and the attention mask of every position
        the cache holds (prefix included), which a later pass on that cache extends."""
        shared = self._shared_prefix_length(sequences, limit)
        ids, mask = self._left_pad([sequence[shared:] for sequence in sequences])
        if not shared:
            return self._forward(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), keep, cells=cells, use_cache=use_cache), mask
        cache = self._prefix_cache(sequences[0][:shared], len(sequences))
        mask = torch.cat([torch.ones((len(sequences), shared), dtype=torch.long), mask], dim=1)  # [prefix][padding][own tokens]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        return self._forward(ids, mask, positions, keep, cache=cache, cells=cells, use_cache=True), mask

    def _forward_packed(
        self,
        rows: list[list[int]],
        labels: list[list[int]],
        positions: list[list[int]],
        limit: int,
        use_cache: bool,
        cells: Sequence[tuple[int, int]],
    ) -> tuple[Any, torch.Tensor]:
        """One left-padded pass over rows holding a context and then continuations' tokens (``labels``: -1 for
        the context, else which continuation); a 4D attention mask lets each continuation see the context and
        its own earlier tokens only, at ``positions`` continuing the context. The prefix every row shares (up to
        ``limit`` tokens) runs once before, its KV cache copied per row. Returns the output and a 2D mask of the
        context cells the cache holds (continuations' cells 0), which a later pass on that cache extends."""
        shared = self._shared_prefix_length(rows, limit)
        width = max(len(row) for row in rows) - shared
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        context_cells = torch.zeros((len(rows), shared + width), dtype=torch.long)
        context_cells[:, :shared] = 1
        allowed = torch.zeros((len(rows), 1, width, shared + width), dtype=torch.bool)
        allowed[:, 0, torch.arange(width), shared + torch.arange(width)] = True  # padding sees itself: no empty softmax
        for index, (row, label, position) in enumerate(zip(rows, labels, positions)):
            own = len(row) - shared
            owner = torch.tensor(label[shared:])
            seen = torch.ones((own, own), dtype=torch.bool).tril() & ((owner[None, :] == -1) | (owner[None, :] == owner[:, None]))
            allowed[index, 0, width - own :, shared + width - own :] = seen
            allowed[index, 0, width - own :, :shared] = True
            ids[index, width - own :] = torch.tensor(row[shared:])
            position_ids[index, width - own :] = torch.tensor(position[shared:])
            context_cells[index, shared + width - own :] = (owner == -1).long()
        mask = (
            allowed
            if self._mask_kind == "bool"
            else torch.zeros(allowed.shape, dtype=self.model.dtype).masked_fill(~allowed, torch.finfo(self.model.dtype).min)
        )
        cache = self._prefix_cache(rows[0][:shared], len(rows)) if shared else None
        return self._forward(ids, mask, position_ids, cache=cache, cells=cells, use_cache=use_cache or cache is not None), context_cells

    def _packs(self, groups: list[tuple[list[int], list[list[int]]]]) -> bool:
        """Whether short continuations may ride in their context's row: the attention takes a custom 4D mask
        (sdpa, eager) and, for a model with sliding attention layers, every context with all its continuations
        fits the window, where sliding and full attention see the same cells."""
        if self._mask_kind is None:
            return False
        return self._attention_window is None or all(len(context) + sum(len(c) for c in members) <= self._attention_window for context, members in groups)

    def _score_shared_batch(self, groups: list[tuple[list[int], list[list[int]]]]) -> list[tuple[float, bool]]:
        """Score several continuations of each context, running every context once.

        The contexts run as one left-padded batch (after the prefix they all share, run once), each row
        followed by its short continuations' tokens (up to PACKED_CONTINUATION_TOKENS; see
        ``_forward_packed``); the context's last position predicts every continuation's first token.
        Longer continuations then run on copies of their context's cache rows, right-padded, in bands of
        similar length that trade padding against the number of passes. Results come continuation by
        continuation, group by group.
        """
        continuations = [continuation for _, members in groups for continuation in members]
        owner = [row for row, (_, members) in enumerate(groups) for _ in members]
        packs = self._packs(groups)
        packed = [packs and _packable(continuation) for continuation in continuations]
        longer = sorted((i for i, continuation in enumerate(continuations) if len(continuation) > 1 and not packed[i]), key=lambda i: -len(continuations[i]))
        rows = [list(context) for context, _ in groups]
        labels = [[-1] * len(context) for context, _ in groups]
        positions = [list(range(len(context))) for context, _ in groups]
        picks: list[tuple[int, int, int]] = []  # (row, cell, target) of every token this pass scores
        counts = []
        for index, continuation in enumerate(continuations):
            row = owner[index]
            picks.append((row, len(groups[row][0]) - 1, continuation[0]))  # the context's last cell predicts the first token
            if packed[index]:
                start = len(rows[row])  # the cell of continuation[j] predicts continuation[j + 1]
                picks += [(row, start + j, token) for j, token in enumerate(continuation[1:])]
                rows[row] += continuation[:-1]
                labels[row] += [index] * (len(continuation) - 1)
                positions[row] += range(len(groups[row][0]), len(groups[row][0]) + len(continuation) - 1)
            counts.append(1 + (len(continuation) - 1 if packed[index] else 0))
        limit = min(len(context) for context, _ in groups) - 1  # a shared prefix ends before every context's last token
        # The output layer reads only the scored cells, each (row, distance from the row's end) once.
        cells = list(dict.fromkeys((row, len(rows[row]) - cell) for row, cell, _ in picks))
        slot = {cell: index for index, cell in enumerate(cells)}
        with torch.inference_mode():
            if any(packed):
                output, mask = self._forward_packed(rows, labels, positions, limit, use_cache=bool(longer), cells=cells)
            else:
                output, mask = self._forward_sharing_prefix(rows, limit, keep=None, use_cache=bool(longer), cells=cells)
            logits = output.logits[0].float()  # one position per cell
            log_norm, best = torch.logsumexp(logits, dim=-1), logits.argmax(dim=-1)
            where = torch.tensor([(slot[(row, len(rows[row]) - cell)], target) for row, cell, target in picks], dtype=torch.long, device=logits.device)
            picked = (logits[where[:, 0], where[:, 1]] - log_norm[where[:, 0]]).tolist()
            greedy = (best[where[:, 0]] == where[:, 1]).tolist()
            scores, start = [], 0
            for count in counts:
                scores.append((sum(picked[start : start + count]), all(greedy[start : start + count])))
                start += count
            bands = length_bands([len(continuations[i]) - 1 for i in longer], PASS_COST_TOKENS.get(self.input_device.type, 48))
            owners = torch.tensor(owner, dtype=torch.long)
            for number, band in enumerate(bands):
                members = longer[band]
                cache = output.past_key_values if number == len(bands) - 1 else copy.deepcopy(output.past_key_values)
                band_rows = owners[members]
                cache.reorder_cache(band_rows)
                targets, valid = self._pad_targets([continuations[i][1:] for i in members], left=False)
                inputs, _ = self._pad_targets([continuations[i][:-1] for i in members], left=False)
                row_mask = torch.cat([mask.index_select(0, band_rows), valid.long()], dim=1)
                band_positions = mask.sum(-1).index_select(0, band_rows)[:, None] + torch.arange(inputs.shape[1])
                band_logits = self._forward(inputs, row_mask, band_positions, cache=cache, use_cache=True).logits
                for index, (logprob, greedy_band) in zip(members, _target_logprobs(band_logits, targets.to(band_logits.device), valid.to(band_logits.device))):
                    scores[index] = (scores[index][0] + logprob, scores[index][1] and greedy_band)
        return scores

    @staticmethod
    def _pad_targets(sequences: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids padded with 0 to the longest (on the left or right) and a mask of the real ones."""
        width = max(len(sequence) for sequence in sequences)
        targets = torch.zeros((len(sequences), width), dtype=torch.long)
        valid = torch.zeros((len(sequences), width), dtype=torch.bool)
        for row, sequence in enumerate(sequences):
            span = slice(width - len(sequence), width) if left else slice(0, len(sequence))
            targets[row, span] = torch.tensor(sequence, dtype=torch.long)
            valid[row, span] = True
        return targets, valid

    def _score_all(self, items: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))

        def cost(batch: list[int]) -> int:
            return len(batch) * max(len(items[i][1]) for i in batch) * self.vocab_size * 4

        scored = self._batched(order, lambda batch: self._score_batch([items[i] for i in batch]), cost)
        results: list[tuple[float, bool]] = [(0.0, False)] * len(items)
        for index, result in zip(order, scored):
            results[index] = result
        return results

    def _score_shared(self, groups: list[tuple[list[int], list[list[int]]]]) -> list[list[tuple[float, bool]]]:
        """Scores of every continuation of every (context, continuations) group, in the groups' order."""
        order = sorted(range(len(groups)), key=lambda i: -(len(groups[i][0]) + _packed_tokens(groups[i][1])))  # similar packed rows pad least

        def cost(batch: list[int]) -> int:
            """The logits of the context pass (one per scored cell) and of the bands (up to 50 % padding), and the copied cache rows."""
            continuations = [continuation for i in batch for continuation in groups[i][1]]
            tokens = sum(len(continuation) for continuation in continuations)
            context = max(len(groups[i][0]) for i in batch) + max(len(continuation) for continuation in continuations)
            cells = sum(1 + _packed_tokens(groups[i][1]) for i in batch)
            packed_logits = 2 * cells * self.vocab_size * 4  # the context pass's logits and their float32 copy
            return int(1.5 * tokens * self.vocab_size * 4) + packed_logits + len(continuations) * context * self._kv_bytes_per_token

        def run(batch: list[int]) -> list[list[tuple[float, bool]]]:
            flat = iter(self._score_shared_batch([groups[i] for i in batch]))
            return [[next(flat) for _ in groups[i][1]] for i in batch]

        results: list[list[tuple[float, bool]]] = [[] for _ in groups]
        for index, result in zip(order, self._batched(order, run, cost)):
            results[index] = result
        return results

    # ---------------------------------------------------------------- tokenisation
    def _encode(self, text: str, special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    # ---------------------------------------------------------------- the protocol
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Requests that share a context (the choices of a multiple-choice item) run that context once."""
        encode = functools.lru_cache(maxsize=None)(self._encode)  # a shared context is tokenised once
        pairs = []
        for request in requests:
            context_ids, continuation_ids = split_pair(encode, self.prefix_token_id, request.context, request.continuation)
            if not continuation_ids:
                raise UserError(f"an empty continuation cannot be scored (context: {request.context[:60]!r})")
            pairs.append((context_ids, continuation_ids))
        sharing: dict[tuple[int, ...], list[int]] = {}
        for index, (context_ids, continuation_ids) in enumerate(pairs):
            if len(context_ids) + len(continuation_ids) - 1 <= self.max_length:
                sharing.setdefault(tuple(context_ids), []).append(index)
        groups = [members for members in sharing.values() if len(members) > 1] if self._shares_contexts else []
        scores: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        for members, scored in zip(groups, self._score_shared([(pairs[m[0]][0], [pairs[i][1] for i in m]) for m in groups])):
            for index, result in zip(members, scored):
                scores[index] = result
        shared = {index for members in groups for index in members}
        alone = [index for index in range(len(pairs)) if index not in shared]
        items = []
        for index in alone:  # truncated on the left to max_length inputs
            context_ids, continuation_ids = pairs[index]
            sequence = self._scored_window(context_ids, continuation_ids)
            items.append((sequence[:-1], continuation_ids[-(len(sequence) - 1) :]))
        for index, result in zip(alone, self._score_all(items)):
            scores[index] = result
        return [
            LoglikelihoodResult(
                logprob=logprob,
                is_greedy=greedy,
                input_tokens=min(len(context_ids) + len(continuation_ids) - 1, self.max_length),
                continuation_tokens=min(len(continuation_ids), self.max_length),
            )
            for (logprob, greedy), (context_ids, continuation_ids) in zip(scores, pairs)
        ]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """Score whole texts in windows of max_length tokens, each predicted from the one before it."""
        items, owners = [], []
        token_counts = []
        for index, text in enumerate(texts):
            tokens = self._encode(text, special=False)
            token_counts.append(len(tokens))
            for window in rolling_windows(tokens, self.prefix_token_id, self.max_length):
                items.append(window)
                owners.append(index)
        totals = [0.0] * len(texts)
        for owner, (logprob, _) in zip(owners, self._score_all(items)):
            totals[owner] += logprob
        return [RollingResult(logprob=total, input_tokens=count) for total, count in zip(totals, token_counts)]

    def _chat_ids(self, context: str) -> list[int] | None:
        if not self.use_chat_template:
            return None
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": context}], tokenize=False, add_generation_prompt=True)
        return self._encode(text, special=False)

    def _generate_batch(self, batch: list[tuple[list[int], GenerationParams]]) -> list[GenerationResult]:
        from transformers import GenerationConfig, StoppingCriteriaList

        params = batch[0][1]
        ids, mask = self._left_pad([prompt for prompt, _ in batch])
        width = ids.shape[1]
        eos_ids = self._eos_ids()
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            temperature=None if params.greedy else params.temperature,
            top_p=None if params.greedy else params.top_p,
            top_k=None,
            pad_token_id=self.pad_token_id,
            eos_token_id=eos_ids,
            stop_strings=list(params.stop) or None,
        )
        cuda = self.input_device.type == "cuda"
        clock = FirstTokenClock(synchronise=cuda)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=ids.to(self.input_device),
                attention_mask=mask.to(self.input_device),
                generation_config=config,
                tokenizer=self.tokenizer,
                stopping_criteria=StoppingCriteriaList([clock] if self.time_first_token else []),
            )
        if cuda:
            torch.cuda.synchronize(self.input_device)
        ended = time.perf_counter()
        first = clock.first if clock.first is not None else ended
        results = []
        for row, (prompt, _) in enumerate(batch):
            generated = output[row, width:].tolist()
            produced = len(generated)
            for position, token in enumerate(generated):
                if token in eos_ids:
                    produced = position + 1
                    break
            else:
                while produced and generated[produced - 1] == self.pad_token_id:
                    produced -= 1
            text = self.tokenizer.decode(generated[:produced], skip_special_tokens=True)
            results.append(
                GenerationResult(
                    text=truncate_at_stop(text, params.stop),
                    input_tokens=len(prompt),
                    output_tokens=produced,
                    ttft_seconds=first - started,
                    decode_seconds=ended - first,
                )
            )
        return results

    def _eos_ids(self) -> list[int]:
        configured = self.model.generation_config.eos_token_id
        ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        prompts = [(self._prompt_ids(r.context, r.params), r.params) for r in requests]
        # Requests with different parameters cannot share a generate() call; group, then sort by length.
        order = sorted(range(len(prompts)), key=lambda i: (repr(prompts[i][1]), -len(prompts[i][0])))
        results: list[GenerationResult | None] = [None] * len(prompts)
        groups: dict[str, list[int]] = {}
        for index in order:
            groups.setdefault(repr(prompts[index][1]), []).append(index)
        for members in groups.values():
            produced = self._batched(members, lambda batch: self._generate_batch([prompts[i] for i in batch]), lambda batch: 0)
            for index, result in zip(members, produced):
                results[index] = result
        return [result for result in results if result is not None]


def length_bands(lengths: Sequence[int], pass_cost: int) -> list[slice]:
    """Cut lengths sorted longest first into bands that cost least to run, one forward pass per band.

    A band costs its rows × its longest length (padding included) plus ``pass_cost``, the fixed
    cost of a forward pass in tokens' worth of work. Exact, by dynamic programming over the cuts.
    """
    best = [0] + [math.inf] * len(lengths)
    start_of = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * lengths[start] + pass_cost
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    bands, end = [], len(lengths)
    while end:
        bands.append(slice(start_of[end], end))
        end = start_of[end]
    return bands[::-1]


def _target_logprobs(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> list[tuple[float, bool]]:
    """Per row: the summed log-probability of the valid targets and whether each was the argmax.

    ``logits`` is (rows, positions, vocab); position j predicts ``targets[:, j]``.
    """
    logits = logits.float()
    picked = logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    sums = torch.where(valid, picked, torch.zeros_like(picked)).sum(-1)
    greedy = ((logits.argmax(dim=-1) == targets) | ~valid).all(-1)
    return list(zip(sums.tolist(), greedy.tolist()))


def _returns_cache(model: Any, device: torch.device) -> bool:
    """Whether the model keeps a transformers Cache object that can be reordered (every built-in decoder does)."""
    from transformers.cache_utils import Cache

    probe = torch.tensor([[0]], device=device)
    with torch.inference_mode():
        cache = model(input_ids=probe, use_cache=True).past_key_values
    return isinstance(cache, Cache)


def _kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Bytes of key/value cache one token of one sequence takes."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_attention_heads", 1) or 1
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or getattr(text, "hidden_size", 0) // heads
    return 2 * getattr(text, "num_hidden_layers", 1) * kv_heads * head_dim * torch.finfo(dtype).bits // 8


class FirstTokenClock:
    """A stopping criterion that never stops: it notes when generate() produced its first new token.

    generate() calls its stopping criteria once per step, right after each new token, so the
    first call marks the end of prefill. On a GPU the first call synchronises once so that the
    time is that of the finished token, not of its queued kernels.
    """

    def __init__(self, synchronise: bool) -> None:
        self.synchronise = synchronise
        self.first: float | None = None
        self._never: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        if self._never is None:
            if self.synchronise:
                torch.cuda.synchronize(input_ids.device)
            self.first = time.perf_counter()
            self._never = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return self._never
