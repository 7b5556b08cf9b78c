"""The fast GGUF header reader agrees with gguf-py's GGUFReader and names damaged files."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader

from bench.errors import UserError
from bench.models.gguf_header import read_header
from bench.models.native_probe import LAYERS, VOCABULARY, write_probe_gguf


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_probe_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_metadata_arrays_and_tensors_match_gguf_py(tiny_gguf: Path) -> None:
    header, reader = read_header(tiny_gguf), GGUFReader(str(tiny_gguf))
    assert header.string("general.architecture") == "llama"
    assert header.integer("llama.block_count") == LAYERS
    assert header.array_lengths["tokenizer.ggml.tokens"] == VOCABULARY == len(reader.fields["tokenizer.ggml.tokens"].data)
    for key, field in reader.fields.items():
        if not key.startswith("GGUF.") and key not in header.array_lengths:
            assert header.metadata[key] == pytest.approx(field.contents()), key
    assert [(t.name, t.elements, t.nbytes) for t in header.tensors] == [(t.name, int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
    assert header.parameters == sum(int(t.n_elements) for t in reader.tensors)


def test_a_truncated_file_is_named_with_its_size(tiny_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size - 100])  # the header is whole, the last tensor is not
    with pytest.raises(UserError, match=r"cut.gguf is not a valid GGUF file \(.* bytes; it is truncated or damaged\)"):
        read_header(cut)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(UserError, match="it does not start with the GGUF signature"):
        read_header(tmp_path / "empty.gguf")


def test_a_conversion_parses_its_gguf_once(tiny_gguf: Path, tmp_path: Path) -> None:
    """transformers builds a GGUFReader for the config, the tokenizer and the weights: one parse serves them."""
    import gguf

    from bench.models.gguf_cache import _parsed_once

    other = write_probe_gguf(tmp_path / "other.gguf")
    with _parsed_once(tiny_gguf):
        first = gguf.GGUFReader(str(tiny_gguf))
        assert gguf.GGUFReader(tiny_gguf) is first
        assert gguf.GGUFReader(str(other)) is not first
    assert gguf.GGUFReader is GGUFReader and GGUFReader(str(tiny_gguf)) is not first
