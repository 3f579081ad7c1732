"""Data: downloads, tokenization and vocabularies, batching, word vectors."""
