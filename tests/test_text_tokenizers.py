"""The torch-free CLIP BPE tokenizer gives exactly open_clip's token ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecl.text_tokenizers import ClipBpeTokenizer

TEXTS = [
    "a photo of a T-shirt/top.",
    "Ankle boot!!",
    "naïve café 東京 1234",
    "x " * 100,
    "it's   <b>HTML</b> &amp; stuff",
    "",
    "emoji 🙂 and tabs\tand\nnewlines",
]


def test_matches_open_clip() -> None:
    import open_clip
    import open_clip.tokenizer as reference_module

    vocab = Path(reference_module.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    ours = ClipBpeTokenizer(vocab)(TEXTS)["input_ids"]
    theirs = open_clip.get_tokenizer("ViT-B-32")(TEXTS).numpy()
    np.testing.assert_array_equal(ours, theirs)
