import pytest

from jobcast.features.text import char_ngram_hashes, normalise

pytestmark = pytest.mark.unit


def test_fullwidth_and_halfwidth_text_normalise_to_the_same_form():
    assert normalise("ＰｙｔｈｏｎエンジニアＡＢＣ１２３") == normalise("Pythonエンジニアabc123")
    assert normalise("ｴﾝｼﾞﾆｱ") == normalise("エンジニア")  # half-width katakana
    assert char_ngram_hashes("【東京都】Ｗｅｂエンジニア", 1024) == char_ngram_hashes("【東京都】Webエンジニア", 1024)


def test_ngram_hashes_are_stable_sorted_and_within_buckets():
    h = char_ngram_hashes("法人営業（未経験歓迎）", 64)
    assert h == sorted(set(h)) and all(0 <= x < 64 for x in h)
    assert h == char_ngram_hashes("法人営業（未経験歓迎）", 64)  # crc32, not Python's salted hash()
    assert char_ngram_hashes(None, 64) == [] and char_ngram_hashes("", 64) == []


def test_title_and_description_grams_use_separate_prefixes():
    assert char_ngram_hashes("営業", 1 << 20, "t:") != char_ngram_hashes("営業", 1 << 20, "d:")
