"""A GGUF file's header, read fast: its scalar metadata, the length of each metadata array, and its tensor table.

gguf-py's ``GGUFReader`` builds a numpy view for every element of every metadata array: 3–14 s
per parse for a 49k–262k-token vocabulary on a laptop CPU, and a run reads the header of each
model more than once (planning, backend choice, loading). The checks and memory estimates need
only scalars, array lengths and tensor shapes, so arrays are stepped over here (strings by their
length prefix) and nothing else is decoded: well under a second for the same files.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# GGUF metadata value types: struct formats of the fixed-size ones, then string (8) and array (9).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9

type Scalar = int | float | bool | str


@dataclass(frozen=True)
class Tensor:
    name: str
    elements: int
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF declares before its tensor data."""

    metadata: dict[str, Scalar]  # scalar and string values
    array_lengths: dict[str, int]  # arrays, by length only (e.g. tokenizer.ggml.tokens: the vocabulary size)
    tensors: list[Tensor]

    def string(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None

    def integer(self, key: str) -> int | None:
        value = self.metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def parameters(self) -> int:
        return sum(tensor.elements for tensor in self.tensors)


class _Cursor:
    """Reads little- or big-endian GGUF values from a buffer, advancing an offset."""

    def __init__(self, buffer: mmap.mmap, order: str) -> None:
        self.buffer, self.order, self.offset = buffer, order, 0

    def unpack(self, fmt: str) -> int | float | bool:
        (value,) = struct.unpack_from(self.order + fmt, self.buffer, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = int(self.unpack("Q"))
        if self.offset + length > len(self.buffer):
            raise ValueError("string past the end of the file")
        value = self.buffer[self.offset : self.offset + length].decode("utf-8", errors="replace")
        self.offset += length
        return value

    def skip_array(self, kind: int, count: int) -> None:
        if kind in _SCALARS:
            self.offset += struct.calcsize(_SCALARS[kind]) * count
        elif kind == _STRING:
            length = struct.Struct(self.order + "Q")
            for _ in range(count):
                self.offset += 8 + length.unpack_from(self.buffer, self.offset)[0]
        elif kind == _ARRAY:
            for _ in range(count):
                inner, inner_count = int(self.unpack("I")), int(self.unpack("Q"))
                self.skip_array(inner, inner_count)
        else:
            raise ValueError(f"unknown metadata type {kind}")
        if self.offset > len(self.buffer):
            raise ValueError("array past the end of the file")


def _parse(buffer: mmap.mmap) -> GGUFHeader:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if buffer[:4] != MAGIC:
        raise ValueError("bad magic")
    order = "<" if struct.unpack_from("<I", buffer, 4)[0] & 0xFFFF else ">"  # a byte-swapped version reads as n << 16
    cursor = _Cursor(buffer, order)
    cursor.offset = 4
    version, tensor_count, kv_count = cursor.unpack("I"), cursor.unpack("Q"), cursor.unpack("Q")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"GGUF version {version}")
    metadata: dict[str, Scalar] = {}
    array_lengths: dict[str, int] = {}
    for _ in range(int(kv_count)):
        key, kind = cursor.string(), int(cursor.unpack("I"))
        if kind in _SCALARS:
            metadata[key] = cursor.unpack(_SCALARS[kind])
        elif kind == _STRING:
            metadata[key] = cursor.string()
        elif kind == _ARRAY:
            inner, count = int(cursor.unpack("I")), int(cursor.unpack("Q"))
            array_lengths[key] = count
            cursor.skip_array(inner, count)
        else:
            raise ValueError(f"unknown metadata type {kind}")
    infos = []
    for _ in range(int(tensor_count)):
        name, dims = cursor.string(), int(cursor.unpack("I"))
        shape = [int(cursor.unpack("Q")) for _ in range(dims)]
        kind, offset = int(cursor.unpack("I")), int(cursor.unpack("Q"))
        elements = 1
        for size in shape:
            elements *= size
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        infos.append((Tensor(name, elements, elements // block * block_bytes), offset))
    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT))
    data_start = -(-cursor.offset // alignment) * alignment
    if any(data_start + offset + tensor.nbytes > len(buffer) for tensor, offset in infos):
        raise ValueError("tensor data past the end of the file")
    return GGUFHeader(metadata, array_lengths, [tensor for tensor, _ in infos])


def read_header(path: Path) -> GGUFHeader:
    """The header of the GGUF at ``path``, or a one-line UserError: not a valid GGUF, and its size."""
    with path.open("rb") as handle:
        try:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                return _parse(buffer)
        except (ValueError, KeyError, struct.error, IndexError, OSError):
            handle.seek(0)
            why = "it is truncated or damaged" if handle.read(4) == MAGIC else "it does not start with the GGUF signature"
            raise UserError(f"{path} is not a valid GGUF file ({path.stat().st_size:,} bytes; {why}); download it again, or pass another model") from None
