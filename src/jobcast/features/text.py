"""Text features for every language, computed in the JVM: NFKC normalisation (ICU4J, bundled with Spark),
then character n-grams inside each word (sklearn's `char_wb`: works on Japanese and Chinese, where a "word"
is a run of letters between punctuation, and on spaced languages alike), word n-grams, and a few
whole-string tokens (the exact title, its first and last word, the company: high-cardinality exact matches
that the stacked linear text model turns into smoothed, out-of-fold target encodings), and the title words'
clusters of pretrained English word vectors (jobcast.features.word_clusters: what carries a model from the
words it was trained on to their near-synonyms; looked up by a pandas UDF, the one step outside the JVM), hashed
into a fixed space of 2^hash_bits term ids.

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
    word_clusters: str | None = None  # the word-cluster table's digest (jobcast.features.word_clusters), or off

    @classmethod
    def from_params(cls, p: dict) -> "TextSpec":
        """features.text of params.yaml (word_clusters: true or false), or a spec recorded by to_dict (word_clusters:
        the digest of the table it was made with, which must be this jobcast's; absent in older specs: off)."""
        from jobcast.features import word_clusters

        clusters = p.get("word_clusters")
        if clusters is True:
            clusters = word_clusters.digest()
        elif clusters is False:
            clusters = None
        elif clusters is not None and clusters != word_clusters.digest():
            raise ValueError(f"features.text.word_clusters={clusters!r}: made with another word-cluster table than "
                             f"this jobcast's ({word_clusters.digest()}); rebuild the features or retrain")
        spec = cls(int(p.get("hash_bits", 18)), tuple(int(x) for x in p.get("char_ngrams", (1, 4))),
                   tuple(int(x) for x in p.get("word_ngrams", (1, 2))), clusters)
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
        d = {"hash_bits": self.hash_bits, "char_ngrams": list(self.char_ngrams), "word_ngrams": list(self.word_ngrams)}
        if self.word_clusters:  # absent when off: specs recorded before the clusters read the same
            d["word_clusters"] = self.word_clusters
        return d


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
    if spec.word_clusters:
        from jobcast.features.word_clusters import codes_of

        out += [f"g{c}" for c in codes_of(words) if c >= 0]
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


def _clusters_sql(tw: str, codes: str, emit, emit_word=None) -> str:
    """SQL for the title words' cluster tokens, from `codes` (word_clusters.codes_of of the words in `tw`);
    `emit_word` (default: emit) wraps a token with the expression of its word."""
    from jobcast.features.word_clusters import GROUPINGS

    if emit_word is None:
        token = emit("concat('g', cast(c as string))")
        return f"transform(filter({codes}, c -> c >= 0), c -> {token})"
    token = emit_word(f"concat('g', cast({codes}[i] as string))", f"element_at({tw}, cast(i div {len(GROUPINGS)} as int) + 1)")
    # sequence(0, -1) counts down in Spark: guard the empty array
    return (f"if(size({codes}) = 0, array(), transform(filter(sequence(0, size({codes}) - 1), i -> {codes}[i] >= 0), "
            f"i -> {token}))")


def _text_sql(df, spec: TextSpec, out: str, emit, title: str, description: str, company: str, emit_char=None,
              emit_word=None):
    from pyspark.sql import functions as F

    nt, tw, dw, gc = "_jc_title_norm", "_jc_title_words", "_jc_desc_words", "_jc_title_clusters"

    def words(text):  # the column API, not a SQL literal: the regex's backslashes arrive as written
        return F.filter(F.split(text, WORD_SPLIT), lambda w: w != "")

    df = (df.withColumn(nt, F.expr(normalised_sql(title))).withColumn(tw, words(F.col(nt)))
          .withColumn(dw, words(F.expr(normalised_sql(description)))))
    clusters = "array()"
    if spec.word_clusters:
        from jobcast.features.word_clusters import codes_udf

        df = df.withColumn(gc, codes_udf()(F.col(tw)))
        clusters = _clusters_sql(tw, gc, emit, emit_word)
    t_exact = emit(f"concat('T=', {nt})")
    first, last = emit(f"concat('F=', element_at({tw}, 1))"), emit(f"concat('L=', element_at({tw}, -1))")
    comp = emit(f"concat('C=', cast({company} as string))")
    exact = (f"concat(array({t_exact}), if(size({tw}) > 0, array({first}, {last}), array()), "
             f"if({company} is null, array(), array({comp})))")
    toks = (f"concat({_field_tokens_sql('t', tw, spec, emit, emit_char)}, {_field_tokens_sql('d', dw, spec, emit, emit_char)}, "
            f"{clusters}, {exact})")
    return df.withColumn(out, F.expr(toks)).drop(nt, tw, dw, gc)


def add_tokens(df, spec: TextSpec, title: str = "title", description: str = "description", company: str = "company_id"):
    """df with TOKENS: the title's and description's n-grams, the title words' clusters and the whole-string tokens
    (exact title, first and last title word, company), in Spark SQL; the one Python UDF looks the title words up
    in the word-cluster table (a dict per Python worker; Spark SQL has no lookup in a 100k-word table short of a
    join and a shuffle of every title's words). Tests compare them with `tokens`."""
    return _text_sql(df, spec, TOKENS, lambda token: token, title, description, company)


def add_token_words(df, spec: TextSpec, title: str = "title", description: str = "description", company: str = "company_id"):
    """df with TOKENS as structs (t: the token, w: the word it came from; a word n-gram or a whole-string token
    is its own word; a cluster token's word is the title word it came from): what the reasons of a prediction name
    a character n-gram or a cluster by (jobcast.models.reasons)."""
    return _text_sql(df, spec, TOKENS, lambda token: f"named_struct('t', {token}, 'w', {token})", title, description,
                     company, emit_char=lambda token: f"named_struct('t', {token}, 'w', w)",
                     emit_word=lambda token, word: f"named_struct('t', {token}, 'w', {word})")


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
