"""Torch-free text tokenizers for the exported text towers: CLIP byte-level BPE and Hugging Face tokenizer.json."""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgecl.errors import ModelFileError


class TextTokenizer(Protocol):
    """Turns texts into the ONNX text tower's integer inputs."""

    input_names: tuple[str, ...]

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]: ...


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-unicode table of GPT-2 / CLIP BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=False))


def _clean(text: str) -> str:
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # ftfy only repairs mojibake; plain text tokenizes the same without it
        pass
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class ClipBpeTokenizer:
    """CLIP's byte-level BPE (the vocabulary file open_clip ships), padded to a fixed context length."""

    input_names = ("input_ids",)
    _SPECIALS = ("<start_of_text>", "<end_of_text>")

    def __init__(self, vocab_path: Path, context_length: int = 77) -> None:
        import regex

        with gzip.open(vocab_path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        base = list(_bytes_to_unicode().values())
        vocab = base + [v + "</w>" for v in base] + ["".join(m) for m in merges] + list(self._SPECIALS)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.sot, self.eot = self.encoder[self._SPECIALS[0]], self.encoder[self._SPECIALS[1]]
        self.context_length = context_length
        self._pattern = regex.compile(
            r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._cache: dict[str, list[str]] = {}

    def _bpe(self, token: str) -> list[str]:
        if token in self._cache:
            return self._cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        table = _bytes_to_unicode()
        ids: list[int] = []
        for piece in self._pattern.findall(_clean(text)):
            mapped = "".join(table[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(mapped))
        return ids

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)  # (N, L) int64
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return {"input_ids": out}


class HfJsonTokenizer:
    """A Hugging Face `tokenizers` tokenizer.json (WordPiece for MiniLM), padded to the batch's longest text."""

    input_names = ("input_ids", "attention_mask")

    def __init__(self, path: Path, max_length: int = 128) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.enable_truncation(max_length=max_length)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self._tok.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)  # (N, L) int64
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)  # (N, L) int64
        return {"input_ids": ids, "attention_mask": mask}


def load_tokenizer(spec: dict[str, Any], model_dir: Path) -> TextTokenizer:
    """Build the tokenizer a manifest describes, e.g. {"kind": "clip_bpe", "file": ..., "context_length": 77}."""
    kind = spec.get("kind")
    path = model_dir / str(spec.get("file", ""))
    if not path.is_file():
        raise ModelFileError(f"{path}: tokenizer file missing; re-run `edgecl export`")
    if kind == "clip_bpe":
        return ClipBpeTokenizer(path, int(spec.get("context_length", 77)))
    if kind == "hf_json":
        return HfJsonTokenizer(path, int(spec.get("max_length", 128)))
    raise ModelFileError(f"{model_dir}/manifest.json: unknown tokenizer kind {kind!r} (known: clip_bpe, hf_json)")
