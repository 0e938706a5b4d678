import collections

import numpy as np
import pytest

from jobcast.errors import InputDataError
from jobcast.features.text import TERM_BYTES, TERMS, TOKENS, TextSpec, add_text_terms, add_tokens, normalise, term_ids, tokens

pytestmark = pytest.mark.unit

SPEC = TextSpec()
CLUSTERED = TextSpec.from_params({"word_clusters": True})  # params.yaml's default


def test_fullwidth_and_halfwidth_text_normalise_to_the_same_form():
    assert normalise("ＰｙｔｈｏｎエンジニアＡＢＣ１２３") == normalise("Pythonエンジニアabc123")
    assert normalise("ｴﾝｼﾞﾆｱ") == normalise("エンジニア")  # half-width katakana
    assert sorted(tokens("【東京都】Ｗｅｂエンジニア", None, None, SPEC)) == sorted(tokens("【東京都】Webエンジニア", None, None, SPEC))


def test_title_and_description_grams_use_separate_prefixes_and_exact_tokens_only_come_from_the_title():
    t = tokens("営業", "営業", 7, SPEC)
    assert "tc営業" in t and "dc営業" in t and "tw営業" in t and "dw営業" in t
    assert {"T=営業", "F=営業", "L=営業", "C=7"} <= set(t)
    assert "T=" not in " ".join(x for x in t if not x.startswith("T="))


def test_word_ngrams_and_char_ngrams_inside_words():
    t = tokens("cold store Operative", None, None, SPEC)
    assert {"twcold", "twcold store", "twstore operative", "tc co", "tcold", "tce "} <= set(t)
    assert not any(x.startswith("tw") and len(x.split()) > 2 for x in t)  # word_ngrams [1, 2]
    assert "tcd s" not in t  # char n-grams never cross a word boundary (char_wb)


@pytest.fixture(scope="module")
def spark():
    from jobcast.config import Settings
    from jobcast.spark import get_session

    return get_session(Settings.load())


ROWS = [("【東京都】ＳＥ（ｼﾆｱ）ｶﾞｰﾃﾞﾝ  Ｅｎｇｉｎｅｅｒ", "Go / Kubernetes・リモート可。週休2日", 5),
        ("cold store Operative", None, None), ("A", "", 1), ("看護師(夜勤なし)", "未経験歓迎", 12)]


@pytest.mark.integration
@pytest.mark.parametrize("spec", [SPEC, CLUSTERED], ids=["plain", "word_clusters"])
def test_the_jvm_tokens_equal_the_python_reference(spark, spec):
    df = spark.createDataFrame(ROWS, "title string, description string, company_id long")
    got = [sorted(r[TOKENS]) for r in add_tokens(df, spec).orderBy("title").collect()]
    want = [sorted(tokens(t, d, c, spec)) for t, d, c in sorted(ROWS)]
    assert got == want


def test_near_synonyms_share_word_clusters_and_words_outside_the_table_add_none():
    from jobcast.features.word_clusters import GROUPINGS

    def clusters(title):
        return {t for t in tokens(title, None, None, CLUSTERED) if t.startswith("g")}

    assert len(clusters("plumber")) == len(GROUPINGS) and clusters("plumber") == clusters("electrician")
    assert clusters("teacher") & clusters("lecturer") and not clusters("teacher") & clusters("welder")
    assert clusters("看護師") == set() and clusters("Operative 看護師") == clusters("operative")
    assert sorted(tokens("看護師", "夜勤", 3, CLUSTERED)) == sorted(tokens("看護師", "夜勤", 3, SPEC))
    assert not any(t.startswith("g") for t in tokens("x", "plumber electrician", None, CLUSTERED))  # title words only


def test_a_spec_recorded_with_another_word_cluster_table_is_refused():
    assert TextSpec.from_params(CLUSTERED.to_dict()) == CLUSTERED
    assert TextSpec.from_params(SPEC.to_dict()) == SPEC and "word_clusters" not in SPEC.to_dict()
    with pytest.raises(ValueError, match="word_clusters='0123456789abcdef': made with another word-cluster table"):
        TextSpec.from_params({**CLUSTERED.to_dict(), "word_clusters": "0123456789abcdef"})


@pytest.mark.integration
def test_term_ids_count_repeats_and_stay_in_the_hash_space(spark):
    small = TextSpec(hash_bits=12)
    df = spark.createDataFrame(ROWS, "title string, description string, company_id long")
    rows = add_text_terms(df, small).orderBy("title").collect()
    packed = [r[TERMS] for r in rows]
    ids, lengths = term_ids(packed)
    per_row = np.split(ids, np.cumsum(lengths)[:-1])
    for ids_, (t, d, c) in zip(per_row, sorted(ROWS)):
        assert ((0 <= ids_) & (ids_ < 4096)).all()
        assert len(ids_) == len(tokens(t, d, c, small))  # one id per token occurrence: counts survive
    again = add_text_terms(df, small).orderBy("title").collect()
    assert [r[TERMS] for r in again] == packed  # murmur3, not a salted hash
    hashed = add_tokens(df, small).selectExpr("title", f"transform({TOKENS}, t -> cast(pmod(hash(t), 4096) as int)) as ids")
    assert [sorted(r.ids) for r in hashed.orderBy("title").collect()] == [sorted(v.tolist()) for v in per_row]  # the fused form
    assert collections.Counter(per_row[0].tolist()).most_common(1)[0][1] > 1


def test_packed_term_ids_unpack_with_their_row_lengths_and_bad_bytes_are_refused():
    big = [1, 2**24 - 1, 65536, 0, 258]
    packed = [b"".join(i.to_bytes(TERM_BYTES, "big") for i in big), None, b"", (7).to_bytes(TERM_BYTES, "big")]
    ids, lengths = term_ids(packed)
    assert ids.tolist() == big + [7] and lengths.tolist() == [5, 0, 0, 1]
    assert term_ids([[3, 4], None, [5]])[0].tolist() == [3, 4, 5]  # array<int> of features from before the packing
    with pytest.raises(InputDataError, match="text_terms: a value of 4 bytes"):
        term_ids([b"\x00\x01\x02\x03"])


def test_bad_text_params_are_refused_with_the_key():
    with pytest.raises(ValueError, match="hash_bits=40"):
        TextSpec.from_params({"hash_bits": 40})
    with pytest.raises(ValueError, match=r"char_ngrams=\[3, 1\]"):
        TextSpec.from_params({"char_ngrams": [3, 1]})


def test_token_words_carry_the_same_tokens_and_name_a_char_gram_by_its_word(spark):
    from jobcast.features.text import add_token_words
    from jobcast.features.word_clusters import lookup

    df = spark.createDataFrame(ROWS, "title string, description string, company_id long")
    pairs = [r[TOKENS] for r in add_token_words(df, CLUSTERED).orderBy("title").collect()]
    plain = [sorted(r[TOKENS]) for r in add_tokens(df, CLUSTERED).orderBy("title").collect()]
    assert [sorted(p["t"] for p in row) for row in pairs] == plain  # the reasons' dictionary sees the features' tokens
    for row in pairs:
        for p in row:
            if p["t"][0] == "g":  # a word cluster: one of its title word's
                assert int(p["t"][1:]) in lookup()[p["w"]]
            elif p["t"][1] == "c":  # a character n-gram lies inside its word (padded with spaces)
                assert p["t"][2:].strip() in p["w"]
            else:
                assert p["w"] == p["t"]
    assert any(p["t"][0] == "g" for row in pairs for p in row)
