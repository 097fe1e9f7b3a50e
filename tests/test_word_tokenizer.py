"""The word-level CLIP BPE: each vocabulary word is one token, other text still tokenizes."""

from __future__ import annotations

from app.clip.word_tokenizer import caption_vocabulary, write_word_clip_tokenizer


def test_every_word_is_one_token(tmp_path) -> None:
    from transformers import CLIPTokenizer

    captions = [["smiling face with sunglasses", "1st place medal"], ["keycap #", "cat face", "catface"]]
    words = caption_vocabulary(captions)
    assert "1" in words and "st" in words and "#" in words
    size = write_word_clip_tokenizer(tmp_path, words, max_length=16)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(tok) == size and tok.model_max_length == 16
    assert tok.bos_token_id == size - 2 and tok.eos_token_id == size - 1 == tok.pad_token_id
    for w in words:
        assert len(tok.tokenize(w)) == 1, w
    ids = tok("zebra crossing", padding="max_length", max_length=16).input_ids
    assert len(ids) == 16 and ids[0] == size - 2
