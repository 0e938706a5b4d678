"""Japanese-safe text features: NFKC normalisation and hashed character n-grams (no word segmentation needed).

Character n-grams work on Japanese without a tokenizer or dictionary download, are robust to the
spelling variants job ads use, and hashing keeps the feature space fixed between training and scoring.
"""

from __future__ import annotations

import unicodedata
import zlib

NGRAM_SIZES = (1, 2, 3)


def normalise(text: str | None) -> str:
    """NFKC folds full-width ASCII and half-width katakana to one form; case and spacing are folded too."""
    if not text:
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def char_ngram_hashes(text: str | None, buckets: int, prefix: str = "", sizes: tuple[int, ...] = NGRAM_SIZES) -> list[int]:
    """Sorted distinct bucket ids of the text's character n-grams. crc32 is stable across processes and hosts."""
    s = normalise(text)
    out: set[int] = set()
    for n in sizes:
        for i in range(len(s) - n + 1):
            out.add(zlib.crc32((prefix + s[i:i + n]).encode("utf-8")) % buckets)
    return sorted(out)
