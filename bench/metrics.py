"""Metrics: per-sample values, corpus-level aggregation and bootstrap confidence intervals.

A metric reads named per-sample columns and reduces them either to a mean (accuracy-like)
or to a ratio of sums (bits per byte, tokens per word, token premium), which is the
corpus-level definition. A corpus metric (chrF++, BLEU) keeps each sentence's sacrebleu
statistics and scores their sum, exactly as sacrebleu's corpus score does. Every 95 %
interval is a seeded percentile bootstrap over samples (sentences).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np

BOOTSTRAP_RESAMPLES = 1000


Scale = Literal["percent", "number", "ratio"]  # how a value is shown: 0-1 as %, as it is, or as a multiple (×)


@dataclass(frozen=True)
class Metric:
    """A metric that reduces per-sample columns to a mean or a ratio of sums.

    Everything else needs to know about it is here: its heading, how to show it, which task kinds
    may list it, and (for generation metrics) how one output is scored against its reference.
    """

    name: str
    description: str
    columns: tuple[str, ...]  # one column: its mean; two: sum(first) / sum(second)
    higher_is_better: bool | None  # None: descriptive, neither better nor worse
    label: str  # a short, plain-language heading
    kinds: frozenset[str]  # the task kinds that may list it
    scale: Scale = "number"
    digits: int = 2
    transform: Literal["none", "exp"] = "none"
    per_sample: Callable[[str, str], float] | None = None  # (output, reference) → the sample's value, stored as ``name``

    def reduce(self, values: np.ndarray) -> np.ndarray:
        """Aggregate over the last axis; ``values`` has shape (..., n_columns, n_samples)."""
        if len(self.columns) == 1:
            result = values[..., 0, :].mean(axis=-1)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                result = values[..., 0, :].sum(axis=-1) / values[..., 1, :].sum(axis=-1)
        return np.exp(result) if self.transform == "exp" else result


@dataclass(frozen=True)
class CorpusMetric:
    """A corpus-level score from summed per-sentence statistics (sacrebleu's significance tests do the same)."""

    name: str
    description: str
    column: str  # per-sample list of sufficient statistics
    higher_is_better: bool
    scorer: Callable[[], Any]  # a sacrebleu metric object
    label: str
    kinds: frozenset[str] = frozenset({"generate"})
    scale: Scale = "number"
    digits: int = 1  # sacrebleu's 0-100 scales

    def score(self, summed: np.ndarray) -> float:
        return float(self.scorer()._compute_score_from_stats([float(x) for x in summed]).score)

    def sentence_stats(self, hypothesis: str, reference: str) -> list[float]:
        return [float(x) for x in self.scorer()._extract_corpus_statistics([hypothesis], [[reference]])[0]]

    def per_sample(self, output: str, reference: str) -> list[float]:
        """The sentence's statistics, stored as ``column`` and summed over the corpus."""
        return self.sentence_stats(output.strip(), reference.strip())


@cache
def _chrf_pp() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=2)


@cache
def _bleu() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU()


def _columns(metric: Metric | CorpusMetric) -> tuple[str, ...]:
    return (metric.column,) if isinstance(metric, CorpusMetric) else metric.columns


def _usable(metric: Metric | CorpusMetric, sample: Mapping[str, Any]) -> bool:
    return all(sample.get(column) is not None for column in _columns(metric))


def resample_picks(n: int, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """The bootstrap's item indices, shape (resamples, n), from a seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _score_resamples(metric: Metric | CorpusMetric, rows: Sequence[Mapping[str, Any]], picks: np.ndarray) -> tuple[float, np.ndarray]:
    """The metric over all rows, and over each resample (one row of ``picks``: item indices drawn with replacement)."""
    if isinstance(metric, CorpusMetric):
        stats = np.array([row[metric.column] for row in rows], dtype=float)  # (samples, statistics)
        counts = np.stack([np.bincount(pick, minlength=len(rows)) for pick in picks])  # (resamples, samples)
        return metric.score(stats.sum(axis=0)), np.array([metric.score(summed) for summed in counts @ stats])
    values = np.array([[float(row[column]) for row in rows] for column in metric.columns])
    return float(metric.reduce(values)), metric.reduce(np.transpose(values[:, picks], (1, 0, 2)))  # (resamples, columns, samples)


def aggregate(metric: Metric | CorpusMetric, samples: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, float | int | None]:
    """Value and 95 % percentile-bootstrap interval of a metric over per-sample values."""
    rows = [sample for sample in samples if _usable(metric, sample)]
    if not rows:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    point, estimates = _score_resamples(metric, rows, resample_picks(len(rows), seed))
    estimates = estimates[np.isfinite(estimates)]
    low, high = np.percentile(estimates, [2.5, 97.5]) if estimates.size else (math.nan, math.nan)
    return {"value": _finite(point), "ci_low": _finite(float(low)), "ci_high": _finite(float(high)), "n": len(rows)}


@dataclass(frozen=True)
class PairedComparison:
    """Side A minus side B on the same items, with a paired bootstrap 95 % interval and a two-sided p-value."""

    n: int
    a: float
    b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def paired_bootstrap(
    metric: Metric | CorpusMetric, a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], seed: int = 0, picks: np.ndarray | None = None
) -> PairedComparison | None:
    """Compare two sides scored on the same items (``a[i]`` and ``b[i]`` are one item); None when no item has both.

    Each resample draws items once and scores both sides on them (the same resampling for both), so
    what the items have in common cancels out. The interval is the 2.5th-97.5th percentile of the
    resampled differences; the p-value is that of a null centred on their mean (as sacrebleu's paired
    bootstrap): ``(1 + #{|d_r - mean(d)| >= |d|}) / (R + 1)`` for R resamples and observed difference d.
    """
    pairs = [(x, y) for x, y in zip(a, b) if _usable(metric, x) and _usable(metric, y)]
    if not pairs:
        return None
    picks = resample_picks(len(pairs), seed) if picks is None else picks
    point_a, resampled_a = _score_resamples(metric, [x for x, _ in pairs], picks)
    point_b, resampled_b = _score_resamples(metric, [y for _, y in pairs], picks)
    differences = resampled_a - resampled_b
    differences = differences[np.isfinite(differences)]
    observed = point_a - point_b
    if not differences.size or not math.isfinite(observed):
        return None
    low, high = np.percentile(differences, [2.5, 97.5])
    extreme = int(np.sum(np.abs(differences - differences.mean()) >= abs(observed) - 1e-12))
    return PairedComparison(len(pairs), point_a, point_b, observed, float(low), float(high), (1 + extreme) / (differences.size + 1))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- answer extraction
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def ascii_digits(text: str) -> str:
    """Map any Unicode decimal digit (Devanagari, Bengali, Arabic-Indic, Myanmar, Khmer, …) to 0-9."""
    return "".join(
        str(unicodedata.digit(char)) if char.isdigit() and not char.isascii() and unicodedata.digit(char, None) is not None else char for char in text
    )


def normalise_number(text: str) -> str | None:
    """'1,234.50' → '1234.5', '-3.0' → '-3'; None when no number can be read."""
    cleaned = text.replace(",", "").replace(" ", "")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return str(int(value)) if value == int(value) else repr(value)


def extract_number(text: str) -> str | None:
    """The final answer of a maths response: the last \\boxed{…} if any, else the last number."""
    text = ascii_digits(text)
    boxed = _BOXED.findall(text)
    region = boxed[-1] if boxed else text
    numbers = _NUMBER.findall(region)
    if not numbers:
        return None
    return normalise_number(numbers[-1])


def normalise_text(text: str) -> str:
    """Lower-case, NFC, collapse whitespace and strip surrounding punctuation for exact match."""
    text = unicodedata.normalize("NFC", text).lower()
    return " ".join(text.split()).strip(" .,;:!?\"'")


_ANSWER_PREFIX = re.compile(r"^\W*(?:the\s+)?(?:correct\s+|right\s+|final\s+)?(?:answer|choice|option)\s*(?:is|:|-)?\s*[:\-]?\s*", re.IGNORECASE)
_ANSWER_LETTER = re.compile(r"(?:answer|choice|option)\s*(?:is\s*:?|:)\s*[\(\[]?([A-Z])(?![A-Za-z])", re.IGNORECASE)
_LABEL = re.compile(r"^[^\W\d][\w ]{0,24}:\s*(\S.*)$")


def parse_choice(answer: str, choices: Sequence[str]) -> int | None:
    """The choice a generated answer names: "B", "(B)", "B.", "Answer: B", "B. travel", the choice's text,
    or "the answer is B" further on; None when it names none (or several) of them."""
    letters = string.ascii_uppercase[: len(choices)]
    lines = [line for line in answer.replace("*", "").replace("`", "").splitlines() if line.strip()]
    first = _ANSWER_PREFIX.sub("", lines[0].strip()) if lines else ""
    labelled = _LABEL.match(first)  # "Topic: travel"
    if labelled and (found := parse_choice(labelled.group(1), choices)) is not None:
        return found
    letter = re.match(r"^[\(\[]?([A-Za-z])(?:[\)\].:]|\s*$)", first)
    if letter and letter.group(1).upper() in letters and (letter.group(1).isupper() or len(first.strip("()[].: ")) == 1):
        return letters.index(letter.group(1).upper())
    named = normalise_text(first)
    texts = [normalise_text(choice) for choice in choices]
    if named in texts and texts.count(named) == 1:
        return texts.index(named)
    lettered = re.match(r"^([A-Z])\s+(.+)$", first)
    if lettered and lettered.group(1) in letters and normalise_text(lettered.group(2)) == texts[letters.index(lettered.group(1))]:
        return letters.index(lettered.group(1))
    starting = [i for i, text in enumerate(texts) if text and re.match(rf"{re.escape(text)}(?!\w)", named)]
    if starting:  # "travel, because …": the longest choice the answer starts with
        return max(starting, key=lambda i: len(texts[i]))
    stated = {match.upper() for match in _ANSWER_LETTER.findall(answer) if match.upper() in letters}
    if len(stated) == 1:
        return letters.index(stated.pop())
    return None


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_tokens(text: str) -> list[str]:
    """SQuAD normalisation: lower-case, drop punctuation and English articles, split on whitespace."""
    text = "".join(char for char in text.lower() if char not in string.punctuation)
    return _ARTICLES.sub(" ", text).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between a prediction and one reference."""
    predicted, gold = squad_tokens(prediction), squad_tokens(reference)
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum(min(predicted.count(token), gold.count(token)) for token in set(predicted))
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------- text statistics
def text_stats(text: str) -> dict[str, int]:
    """Words (whitespace-separated), characters (NFC code points) and UTF-8 bytes of a text."""
    normalised = unicodedata.normalize("NFC", text)
    return {"words": len(normalised.split()), "chars": len(normalised), "bytes": len(normalised.encode("utf-8"))}


# ---------------------------------------------------------------- the metrics, by name
GENERATE, CHOICE, ROLLING, TOKENS = (
    frozenset({"generate"}),
    frozenset({"multiple_choice"}),
    frozenset({"rolling_loglikelihood"}),
    frozenset({"tokenizer_stats"}),
)


def _exact_number(output: str, reference: str) -> float:
    predicted = extract_number(output)
    return float(predicted is not None and predicted == extract_number(reference))


def _exact_text(output: str, reference: str) -> float:
    return float(normalise_text(output) == normalise_text(reference))


METRICS: dict[str, Metric | CorpusMetric] = {
    metric.name: metric
    for metric in (
        Metric("acc", "share of items whose highest-likelihood choice is the right one", ("acc",), True, "choice accuracy", CHOICE, "percent"),
        Metric(
            "acc_norm_bytes",
            "accuracy when each choice's log-likelihood is divided by its UTF-8 bytes (fair across scripts)",
            ("acc_norm_bytes",),
            True,
            "accuracy, byte-normalised",
            CHOICE,
            "percent",
        ),
        CorpusMetric("chrf_pp", "chrF++ (sacrebleu, character n-grams + word bigrams), corpus-level, 0-100", "chrf_pp_stats", True, _chrf_pp, "chrF++"),
        CorpusMetric("bleu", "BLEU (sacrebleu, 13a tokenisation), corpus-level, 0-100", "bleu_stats", True, _bleu, "BLEU"),
        Metric("f1", "token overlap F1 with the reference answer (SQuAD normalisation)", ("f1",), True, "token F1", GENERATE, "percent", per_sample=token_f1),
        Metric(
            "exact_match_number",
            "share of answers whose final number equals the reference number",
            ("exact_match_number",),
            True,
            "accuracy",
            GENERATE,
            "percent",
            per_sample=_exact_number,
        ),
        Metric(
            "exact_match",
            "share of answers equal to the reference after normalisation",
            ("exact_match",),
            True,
            "exact match",
            GENERATE,
            "percent",
            per_sample=_exact_text,
        ),
        Metric(
            "bits_per_byte",
            "bits the model needs per UTF-8 byte of text (comparable across tokenizers)",
            ("neg_log2_prob", "bytes"),
            False,
            "bits per byte",
            ROLLING,
        ),
        Metric(
            "nats_per_token", "mean negative log-likelihood per token (depends on the tokenizer)", ("neg_logprob", "tokens"), False, "nats per token", ROLLING
        ),
        Metric(
            "perplexity_per_word",
            "exp of the negative log-likelihood per whitespace word",
            ("neg_logprob", "words"),
            False,
            "perplexity per word",
            ROLLING,
            transform="exp",
        ),
        Metric("tokens_per_word", "tokens per whitespace-separated word", ("tokens", "words"), None, "tokens per word", TOKENS),
        Metric("tokens_per_char", "tokens per Unicode character", ("tokens", "chars"), None, "tokens per char", TOKENS),
        Metric("tokens_per_byte", "tokens per UTF-8 byte", ("tokens", "bytes"), None, "tokens per byte", TOKENS),
        Metric(
            "token_premium",
            "tokens for this language ÷ tokens for the same items in the reference language",
            ("tokens", "reference_tokens"),
            False,
            "token premium vs English",
            TOKENS,
            "ratio",
        ),
    )
}


def metrics_for(kind: str) -> frozenset[str]:
    """The metrics a task of ``kind`` may list."""
    return frozenset(name for name, metric in METRICS.items() if kind in metric.kinds)
