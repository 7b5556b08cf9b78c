"""Does llama.cpp work on this machine? A probe in a child process, cached per machine and build.

Some llama-cpp-python builds crash or compute wrong numbers on some CPUs: built with
``GGML_NATIVE`` on an Intel CPU with AMX, ggml's AMX matrix path segfaults (llama.cpp
issue #20824). Before ``backend: auto`` picks llama.cpp (and before an explicit
``backend: llamacpp`` loads a model), a child process loads a tiny GGUF written here with the
quantisation types that take ggml's repacked and AMX paths (Q4_0, Q4_1, Q8_0), evaluates a few
tokens as one batch and one by one, and returns their log-probabilities. The parent compares them
with transformers on the same GGUF and tokens. A crash or a disagreement is a failed probe, and
its one-line reason says how to fix the build. The verdict is cached per CPU, llama-cpp-python
version and shared-library file, so each machine and build is probed once.

``python -m bench.models.native_probe FILE.gguf`` is the child's side.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.paths import cache_dir

PROBE_VERSION = 1
# Per-token log-probability difference allowed between llama.cpp (activations quantised to 8 bits
# inside its matrix products) and transformers (float32 on the dequantised weights). A working
# AVX2 build stays under 0.06 nats; a broken kernel is off by whole nats.
TOLERANCE_NATS = 0.25
PROBE_TIMEOUT_S = 120
PROBE_TOKENS = [1, 40, 77, 12, 200, 35, 91, 150, 8, 64, 240, 19, 101, 55, 180, 33]
FIX_HINT = (
    "rebuild it without the AMX path: `python install.py llamacpp` in the accessbench checkout "
    '(or `CMAKE_ARGS="$(python install.py --print-cmake-args)" pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python`)'
)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str  # why the build cannot be used, with the fix; empty when ok
    build: str  # the llama-cpp-python version and library probed


# ---------------------------------------------------------------- the tiny GGUF
VOCABULARY = 288  # 3 special + 256 byte tokens + 29 letters; a multiple of 32, like the AMX tiles
EMBEDDING = 256
FEED_FORWARD = 512
LAYERS = 2
HEADS = 4


def write_probe_gguf(path: Path) -> Path:
    """A 2-layer Llama with seeded random weights in Q4_0, Q4_1 and Q8_0, and a byte vocabulary."""
    import gguf

    rng = np.random.default_rng(0)

    def matrix(rows: int, columns: int) -> np.ndarray:
        return (rng.standard_normal((rows, columns)) / np.sqrt(columns)).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBEDDING // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCABULARY)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)] + [chr(ord("a") + i) for i in range(26)] + ["▁", "▁a", "▁b"]
    kinds = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * 29
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types(kinds)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    def add(name: str, data: np.ndarray, kind: gguf.GGMLQuantizationType | None = None) -> None:
        if kind is None:
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)

    q4_0, q4_1, q8_0 = gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0
    add("token_embd.weight", matrix(VOCABULARY, EMBEDDING) * 4)
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        add(f"{block}.attn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        add(f"{block}.attn_q.weight", matrix(EMBEDDING, EMBEDDING), q8_0)
        add(f"{block}.attn_k.weight", matrix(EMBEDDING, EMBEDDING), q8_0)
        add(f"{block}.attn_v.weight", matrix(EMBEDDING, EMBEDDING), q4_0)
        add(f"{block}.attn_output.weight", matrix(EMBEDDING, EMBEDDING), q4_1)
        add(f"{block}.ffn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        add(f"{block}.ffn_gate.weight", matrix(FEED_FORWARD, EMBEDDING), q4_0)
        add(f"{block}.ffn_up.weight", matrix(FEED_FORWARD, EMBEDDING), q4_1)
        add(f"{block}.ffn_down.weight", matrix(EMBEDDING, FEED_FORWARD), q8_0)
    add("output_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
    add("output.weight", matrix(VOCABULARY, EMBEDDING) * 1.5, q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _token_logprobs(logits: np.ndarray, tokens: list[int]) -> list[float]:
    """log P(tokens[i+1] | tokens[..i]) from per-position logits."""
    rows = logits[: len(tokens) - 1].astype(np.float64)
    rows = rows - rows.max(axis=-1, keepdims=True)
    log_softmax = rows - np.log(np.exp(rows).sum(axis=-1, keepdims=True))
    return [float(log_softmax[i, token]) for i, token in enumerate(tokens[1:])]


def transformers_logprobs(gguf_path: Path, tokens: list[int]) -> list[float]:
    """The reference: transformers on the dequantised GGUF, float32."""
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM

    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].numpy()
    return _token_logprobs(logits, tokens)


def llama_cpp_logprobs(gguf_path: Path, tokens: list[int]) -> dict[str, list[float]]:
    """The child's work: the same tokens through llama.cpp, as one batch and one token at a time."""
    from llama_cpp import Llama

    from bench.models.threads import physical_cores

    llm = Llama(model_path=str(gguf_path), n_ctx=64, n_batch=64, logits_all=True, verbose=False, n_threads=physical_cores(), n_threads_batch=physical_cores())
    llm.eval(tokens)
    batched = _token_logprobs(np.array(llm.scores[: len(tokens)]), tokens)
    llm.reset()
    for token in tokens:
        llm.eval([token])
    stepwise = _token_logprobs(np.array(llm.scores[: len(tokens)]), tokens)
    return {"batched": batched, "stepwise": stepwise}


# ---------------------------------------------------------------- the verdict, cached
def _library_file() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent
    for pattern in ("lib/libllama.*", "libllama.*", "lib/llama.*"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def _cpu_identity() -> str:
    """CPU model and feature flags: what decides which native code paths run."""
    model, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            if key.strip() in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return f"{platform.machine()}|{model}|{flags}"


@functools.cache
def build_identity() -> str:
    """The llama-cpp-python version and its shared library's SHA-256 prefix (hashed once per process)."""
    from importlib.metadata import version

    library = _library_file()
    digest = hashlib.sha256(library.read_bytes()).hexdigest()[:16] if library else "unknown"
    return f"llama-cpp-python {version('llama-cpp-python')} ({library.name if library else 'library not found'} {digest})"


def _cache_file(build: str) -> Path:
    key = hashlib.sha256(f"{PROBE_VERSION}|{_cpu_identity()}|{build}".encode()).hexdigest()[:20]
    return cache_dir() / "probes" / f"llamacpp-{key}.json"


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _verdict(gguf_path: Path, build: str, command: list[str]) -> ProbeResult:
    """Run the child, and compute the transformers reference while it runs (a few seconds each, on two cores)."""
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONFAULTHANDLER": ""})
    try:
        reference = transformers_logprobs(gguf_path, PROBE_TOKENS)
        stdout, stderr = child.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return ProbeResult(False, f"llama.cpp ({build}) hung for {PROBE_TIMEOUT_S} s evaluating 16 tokens on this CPU; {FIX_HINT}", build)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    if child.returncode < 0:
        return ProbeResult(False, f"llama.cpp ({build}) crashed with {_signal_name(child.returncode)} on this CPU; {FIX_HINT}", build)
    if child.returncode != 0:
        last = (stderr.strip().splitlines() or ["no message"])[-1]
        return ProbeResult(False, f"llama.cpp ({build}) failed on a 16-token test ({last}); {FIX_HINT}", build)
    measured = json.loads(stdout.strip().splitlines()[-1])
    for how, values in measured.items():
        worst = max(abs(a - b) for a, b in zip(values, reference))
        if not worst <= TOLERANCE_NATS:  # also catches NaN
            return ProbeResult(
                False, f"llama.cpp ({build}) computes wrong log-likelihoods on this CPU ({how}: off by {worst:.3g} nats from transformers); {FIX_HINT}", build
            )
    return ProbeResult(True, "", build)


def probe_llama_cpp(command: list[str] | None = None) -> ProbeResult:
    """Whether this machine's llama-cpp-python build loads, evaluates and agrees with transformers.

    ``command`` replaces the child's command line (tests use a child that kills itself); its
    verdict is not cached.
    """
    build = build_identity()
    cached = _cache_file(build)
    if command is None and cached.is_file():
        try:
            return ProbeResult(**json.loads(cached.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            pass  # a damaged cache entry is probed again
    folder = cache_dir() / "probes"
    folder.mkdir(parents=True, exist_ok=True)
    gguf_path = folder / f"probe-v{PROBE_VERSION}.gguf"
    if not gguf_path.is_file():
        staging = gguf_path.with_name(f"{gguf_path.name}.{os.getpid()}.partial")
        write_probe_gguf(staging).replace(gguf_path)
    result = _verdict(gguf_path, build, command or [sys.executable, "-m", "bench.models.native_probe", str(gguf_path)])
    if command is None:
        staging = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        staging.write_text(json.dumps(asdict(result)), encoding="utf-8")
        staging.replace(cached)
    return result


if __name__ == "__main__":
    print(json.dumps(llama_cpp_logprobs(Path(sys.argv[1]), PROBE_TOKENS)))
