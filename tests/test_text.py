from seqtrain.data.text import PAD, UNK, Vocab, tokenize


def test_tokenize_lowercases_strips_breaks_and_splits_punctuation():
    assert tokenize("Great movie!<br /><br />I didn't LIKE the end...") == [
        "great", "movie", "!", "i", "didn't", "like", "the", "end", ".", ".", ".",
    ]


def test_tokenize_keeps_unicode_words():
    assert tokenize("Amélie, c'est très bien") == ["amélie", ",", "c'est", "très", "bien"]


def test_vocab_orders_by_frequency_then_alphabet_with_specials_first():
    vocab = Vocab.build([["b", "a", "c"], ["a", "b"], ["a"]], max_size=4)
    assert vocab.itos == [PAD, UNK, "a", "b"]
    assert vocab.stoi[PAD] == 0 and vocab.unk_index == 1


def test_vocab_min_freq_and_unknown_tokens():
    vocab = Vocab.build([["x", "x", "y"]], min_freq=2)
    assert "y" not in vocab
    assert vocab.encode(["x", "y", "zzz"]) == [2, 1, 1]
    assert vocab.decode([2]) == ["x"]
