"""app.clip.vocab: which words a CLIP tokenizer knows, for any CLIP tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.clip.vocab import WordVocab, classify, prompt_words

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "diffusion" / "tokenizer"


@pytest.fixture(scope="module")
def words_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import CLIPTokenizer

    from app.clip.word_tokenizer import write_word_clip_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    write_word_clip_tokenizer(folder, ["cat", "face", "red", "heart", "house", "castle", "cactus"], max_length=77)
    return CLIPTokenizer.from_pretrained(folder)


def test_known_split_and_letters(words_tokenizer) -> None:
    vocab = WordVocab(words_tokenizer)
    assert vocab.word("cat").status == "known" and not vocab.word("cat").marked
    light = vocab.word("lighthouse")
    assert light.status == "letters" and light.marked and light.pieces[-1] == "house</w>"
    assert classify(["light", "house</w>"]) == "split"
    assert classify(["p", "a", "inting</w>"]) == "letters"
    assert vocab.max_tokens == 77


def test_complete_by_prefix(words_tokenizer) -> None:
    vocab = WordVocab(words_tokenizer)
    done = vocab.complete("ca", 10)
    assert {"cat", "castle", "cactus"} <= set(done) and all(w.startswith("ca") for w in done)
    assert vocab.complete("CA", 10) == done, "case-insensitive like CLIP's lower-casing"
    assert vocab.complete("cat", 10) == [], "the word itself is not a completion"
    assert len(vocab.complete("c", 2)) == 2
    assert vocab.complete("zzzz", 5) == []


def test_open_clip_style_tokenizer() -> None:
    """open_clip's SimpleTokenizer has `encoder` and `bpe` instead of transformers' methods."""

    class Simple:
        encoder = {"cat</w>": 5, "car</w>": 3, "c": 0, "a": 1, "t</w>": 2}
        context_length = 77

        def encode(self, text: str) -> list[int]:
            return [0] * sum(len(self.bpe(w).split(" ")) for w in text.lower().split())

        def bpe(self, word: str) -> str:
            return "cat</w>" if word == "cat" else " ".join([*word[:-1], word[-1] + "</w>"])

    vocab = WordVocab(Simple())
    assert vocab.complete("c", 5) == ["car", "cat"]  # lower token id first
    assert vocab.word("Cat").status == "known" and vocab.word("dog").status == "letters"
    assert vocab.count("cat dog") == 4


def test_prompt_words_drop_weights_and_bars() -> None:
    assert prompt_words("a red fox:1 | blurry:-0.5") == ["a", "red", "fox", "blurry"]
    assert prompt_words("at 12:30, don't") == ["at", "12", "30", "don't"]


@pytest.mark.skipif(not (SHIPPED / "vocab.json").is_file(), reason="no shipped tokenizer")
def test_shipped_tokenizer_knows_the_placeholder() -> None:
    """The page's placeholder prompts are made of words the shipped tokenizer knows; the old one was not."""
    import re

    from transformers import CLIPTokenizer

    vocab = WordVocab(CLIPTokenizer.from_pretrained(SHIPPED))
    html = (Path(__file__).resolve().parents[1] / "frontend" / "index.html").read_text()
    placeholders = re.findall(r'<textarea id="(?:prompt|negative_prompt)"[^>]*placeholder="([^"]+)"', html)
    assert len(placeholders) == 2
    for text in placeholders:
        assert [w for w in prompt_words(text) if vocab.word(w).status != "known"] == [], text
    assert [w for w in prompt_words("a lighthouse in a storm, oil painting") if vocab.word(w).marked] == \
        ["lighthouse", "storm", "painting"]


def test_prompt_hints_never_unpad_the_models_prompts(tmp_path: Path) -> None:
    """The prompt box tokenizes in request threads while the worker pads a run's prompts with the
    model's tokenizer; sharing the tokenizer's backend state once made such a run fail (`internal`,
    "Unable to create tensor"). Hammered from four threads for up to two seconds."""
    import threading
    import time

    from transformers import CLIPTokenizer

    from app.demo_models import build_tiny_diffusion

    tokenizer = CLIPTokenizer.from_pretrained(build_tiny_diffusion(tmp_path / "sd", seed=0) / "tokenizer")
    vocab = WordVocab(tokenizer)
    assert vocab.tokenizer is not tokenizer
    stop = time.monotonic() + 2.0
    errors: list[Exception] = []

    def hints() -> None:
        while time.monotonic() < stop and not errors:
            for word in ("lighthouse", "a", "red", "snow"):
                vocab.word(word)
            vocab.count("a red fox in the snow")

    def encode() -> None:
        while time.monotonic() < stop and not errors:
            try:
                tokenizer(["a", "a red fox in the snow at night"], padding="max_length",
                          max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
            except ValueError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=hints) for _ in range(3)] + [threading.Thread(target=encode)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
