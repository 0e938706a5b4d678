"""Text features for every language, computed in the JVM: NFKC normalisation (ICU4J, bundled with Spark),
then character n-grams inside each word (sklearn's `char_wb`: works on Japanese and Chinese, where a "word"
is a run of letters between punctuation, and on spaced languages alike), word n-grams, and a few
whole-string tokens (the exact title, its first and last word, the company: high-cardinality exact matches
that the stacked linear text model turns into smoothed, out-of-fold target encodings), hashed into a fixed
space of 2^hash_bits term ids.

TF-IDF weighting is not done here: the IDF is a model parameter fitted on the training rows
(jobcast.models.text_model), so a day's feature partition does not depend on which days it is trained with.

`normalise` and `tokens` are the pure-Python reference of the Spark expressions (tests compare the two; the
pipeline never calls them).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

TERMS = "text_terms"  # the features column: the hashed term ids of the text, one per occurrence, packed (binary)
TERM_BYTES = 3  # bytes per term id in TERMS, big-endian: hash_bits is at most 24
TOKENS = "_jc_tokens"


@dataclass(frozen=True)
class TextSpec:
    hash_bits: int = 18
    char_ngrams: tuple[int, int] = (1, 4)
    word_ngrams: tuple[int, int] = (1, 2)

    @classmethod
    def from_params(cls, p: dict) -> "TextSpec":
        spec = cls(int(p.get("hash_bits", 18)), tuple(int(x) for x in p.get("char_ngrams", (1, 4))),
                   tuple(int(x) for x in p.get("word_ngrams", (1, 2))))
        if not 10 <= spec.hash_bits <= 8 * TERM_BYTES:
            raise ValueError(f"features.text.hash_bits={spec.hash_bits}: expected 10..{8 * TERM_BYTES}")
        for name, (lo, hi) in (("char_ngrams", spec.char_ngrams), ("word_ngrams", spec.word_ngrams)):
            if not 1 <= lo <= hi <= 8:
                raise ValueError(f"features.text.{name}={[lo, hi]}: expected [lo, hi] with 1 <= lo <= hi <= 8")
        return spec

    @property
    def num_features(self) -> int:
        return 1 << self.hash_bits

    def to_dict(self) -> dict:
        return {"hash_bits": self.hash_bits, "char_ngrams": list(self.char_ngrams), "word_ngrams": list(self.word_ngrams)}


WORD_SPLIT = r"[^\p{L}\p{N}]+"  # Java regex: anything but letters and digits separates words


def normalise(text: str | None) -> str:
    """NFKC folds full-width ASCII and half-width katakana to one form; case and spacing are folded too."""
    if not text:
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _words(s: str) -> list[str]:
    return [w for w in re.split(r"[\W_]+", s) if w]


def tokens(title: str | None, description: str | None, company_id: int | None, spec: TextSpec) -> list[str]:
    """The reference tokenizer (see the module docstring); order does not matter, counts do."""
    out: list[str] = []
    nt = normalise(title)
    for prefix, text in (("t", nt), ("d", normalise(description))):
        words = _words(text)
        for w in words:
            padded = f" {w} "
            for n in range(spec.char_ngrams[0], spec.char_ngrams[1] + 1):
                out += [f"{prefix}c{padded[i:i + n]}" for i in range(max(len(padded) - n + 1, 1))]
        for n in range(spec.word_ngrams[0], spec.word_ngrams[1] + 1):
            out += [f"{prefix}w{' '.join(words[i:i + n])}" for i in range(len(words) - n + 1)]
    words = _words(nt)
    out.append(f"T={nt}")
    if words:
        out += [f"F={words[0]}", f"L={words[-1]}"]
    if company_id is not None:
        out.append(f"C={company_id}")
    return out


# ------------------------------------------------------------------------------------------- Spark side
def normalised_sql(col: str) -> str:
    """NFKC (ICU4J's Normalizer.compose(s, compat=true), shipped in Spark's jars), lower case, spaces folded."""
    return (f"trim(regexp_replace(lower(reflect('com.ibm.icu.text.Normalizer', 'compose', coalesce({col}, ''), true)), "
            r"'\\s+', ' '))")


def _field_tokens_sql(prefix: str, words: str, spec: TextSpec, emit, emit_char=None) -> str:
    """SQL for one field's n-grams; `emit` wraps each token expression (itself, or its hashed id); `emit_char`
    (default: emit) wraps a character n-gram's, with its word in scope as `w`."""
    c_lo, c_hi = spec.char_ngrams
    w_lo, w_hi = spec.word_ngrams
    char = (emit_char or emit)(f"concat('{prefix}c', substring(concat(' ', w, ' '), i, n))")
    chars = (f"flatten(transform({words}, w -> flatten(transform(sequence({c_lo}, {c_hi}), n -> "
             f"transform(sequence(1, greatest(length(w) + 3 - n, 1)), i -> {char})))))")
    # sequence(1, k) with k < 1 counts down in Spark: guard it so short texts give no word n-grams.
    word = emit(f"concat('{prefix}w', array_join(slice({words}, i + 1, n), ' '))")
    grams = (f"flatten(transform(sequence({w_lo}, {w_hi}), n -> if(size({words}) >= n, "
             f"transform(sequence(0, size({words}) - n), i -> {word}), array())))")
    return f"concat({chars}, {grams})"


def _text_sql(df, spec: TextSpec, out: str, emit, title: str, description: str, company: str, emit_char=None):
    from pyspark.sql import functions as F

    nt, tw, dw = "_jc_title_norm", "_jc_title_words", "_jc_desc_words"

    def words(text):  # the column API, not a SQL literal: the regex's backslashes arrive as written
        return F.filter(F.split(text, WORD_SPLIT), lambda w: w != "")

    df = (df.withColumn(nt, F.expr(normalised_sql(title))).withColumn(tw, words(F.col(nt)))
          .withColumn(dw, words(F.expr(normalised_sql(description)))))
    t_exact = emit(f"concat('T=', {nt})")
    first, last = emit(f"concat('F=', element_at({tw}, 1))"), emit(f"concat('L=', element_at({tw}, -1))")
    comp = emit(f"concat('C=', cast({company} as string))")
    exact = (f"concat(array({t_exact}), if(size({tw}) > 0, array({first}, {last}), array()), "
             f"if({company} is null, array(), array({comp})))")
    toks = (f"concat({_field_tokens_sql('t', tw, spec, emit, emit_char)}, {_field_tokens_sql('d', dw, spec, emit, emit_char)}, "
            f"{exact})")
    return df.withColumn(out, F.expr(toks)).drop(nt, tw, dw)


def add_tokens(df, spec: TextSpec, title: str = "title", description: str = "description", company: str = "company_id"):
    """df with TOKENS: the title's and description's n-grams and the whole-string tokens (exact title, first and
    last title word, company), in Spark SQL (no Python UDF). Tests compare them with `tokens`."""
    return _text_sql(df, spec, TOKENS, lambda token: token, title, description, company)


def add_token_words(df, spec: TextSpec, title: str = "title", description: str = "description", company: str = "company_id"):
    """df with TOKENS as structs (t: the token, w: the word it came from; a word n-gram or a whole-string token
    is its own word): what the reasons of a prediction name a character n-gram by (jobcast.models.reasons)."""
    return _text_sql(df, spec, TOKENS, lambda token: f"named_struct('t', {token}, 'w', {token})", title, description,
                     company, emit_char=lambda token: f"named_struct('t', {token}, 'w', w)")


def add_text_terms(df, spec: TextSpec, title: str = "title", description: str = "description", company: str = "company_id"):
    """df with TERMS: the hashed ids of add_tokens' tokens, each repeated as often as its token occurs (a term's
    count is its multiplicity; the order carries no meaning). The hash is Spark SQL's murmur3 `hash()` modulo
    2^hash_bits, computed inside the lambda that cuts each n-gram, so no array of token strings is built.

    Measured alternatives (12k postings, 2 cores, bench notes in the issue): building the token array, then
    hashing it, then sorting it took 3x the time of this fused form; sorting alone was half. Spark ML's
    HashingTF hashes in compiled code but returns its own vector type, which SQL cannot take apart: reading it
    back costs a Python object per row (or a dense 2^18 array), while a flat value goes through Parquet, Arrow
    and scipy as one buffer.

    The ids are stored packed, TERM_BYTES bytes each (big-endian), one binary value per row (term_ids unpacks
    them). A day's incremental scoring reads every row's terms to hash them, and on 1M postings of about 610
    ids each, Spark decoded and hashed an array<int> column in 5.5 s, the packed column in 2.0 s (decoding
    alone: 3.4 s and 1.6 s). Packing is done in SQL (each id as fixed-width hex, joined, then unhex): it costs
    about 40 s per million texts, and a daily build featurises only its new and edited texts."""
    from pyspark.sql import functions as F

    n, width = spec.num_features, 2 * TERM_BYTES
    df = _text_sql(df, spec, TERMS, lambda token: f"lpad(hex(pmod(hash({token}), {n})), {width}, '0')", title,
                   description, company)
    return df.withColumn(TERMS, F.unhex(F.array_join(TERMS, "")))


def term_ids(values) -> tuple:
    """(ids, lengths) of a sequence of TERMS values: every row's term ids in one int32 array, and each row's
    count of them (None: no terms). Takes the packed form, and the array<int> of features built before it."""
    import numpy as np

    from jobcast.errors import InputDataError

    n = len(values)
    lengths = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=n)
    first = next((v for v in values if v is not None and len(v)), None)
    if first is None:  # every row empty: lengths is all zeros in either form
        return np.empty(0, np.int32), lengths
    if not isinstance(first, (bytes, bytearray, memoryview)):  # array<int>, features_version < 4
        return np.concatenate([np.asarray(v, dtype=np.int32) for v in values if v is not None and len(v)]), lengths
    if (lengths % TERM_BYTES).any():
        raise InputDataError(f"{TERMS}: a value of {lengths[(lengths % TERM_BYTES) > 0][0]} bytes is not "
                             f"{TERM_BYTES}-byte term ids; were these features built by another jobcast?")
    b = np.frombuffer(b"".join(v for v in values if v is not None), dtype=np.uint8).reshape(-1, TERM_BYTES)
    ids = b[:, 0].astype(np.int32)
    for j in range(1, TERM_BYTES):
        ids = (ids << 8) | b[:, j]
    return ids, lengths // TERM_BYTES
