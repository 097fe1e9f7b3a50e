"""What the loaded tokenizer knows, for the prompt box: GET /api/vocab (autocomplete) and
POST /api/tokenize (which words split into pieces). Behind the same token as the other /api routes."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import SettingsDep, StudioDep, require_token
from app.clip.vocab import WordVocab, prompt_words
from app.diffusion.prompts import parse_prompt

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)])
MAX_PREFIX = 40
MAX_WORDS = 200  # words looked up per request; a prompt is capped in characters anyway


@lru_cache(maxsize=4)
def vocab_of(tokenizer: Any) -> WordVocab:
    """Built once per loaded tokenizer (a few ms for CLIP's 49k tokens), then reused."""
    return WordVocab(tokenizer)


def studio_vocab(studio: Any) -> WordVocab:
    """The diffusion pipeline's tokenizer: the one that turns the prompt into the UNet's conditioning."""
    return vocab_of(studio.models.diffusion.tokenizer)


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=20_000)


@router.get("/vocab")
def vocab(studio: StudioDep,
          prefix: Annotated[str, Query(min_length=1, max_length=MAX_PREFIX, description="the start of a word")],
          limit: Annotated[int, Query(ge=1, le=50)] = 8) -> dict[str, Any]:
    """Whole words the tokenizer knows that start with `prefix`, most common first."""
    words = studio_vocab(studio)
    return {"prefix": prefix, "words": words.complete(prefix.strip(), limit), "vocab_words": len(words)}


@router.post("/tokenize")
def tokenize(studio: StudioDep, settings: SettingsDep, body: TokenizeRequest) -> dict[str, Any]:
    """Each word of a prompt with the pieces the tokenizer makes of it; `marked` words split into letters
    or into 3 or more pieces (the model reads them as fragments, not as the word). `parts`: the tokens of
    each weighted part; CLIP reads `max_tokens - 2` of them and drops the rest."""
    if len(body.text) > settings.max_prompt_chars:
        raise HTTPException(413, f"the text has {len(body.text)} characters; the limit is {settings.max_prompt_chars}")
    words = studio_vocab(studio)
    seen: dict[str, dict[str, Any]] = {}
    out = []
    found = prompt_words(body.text)
    for text in found[:MAX_WORDS]:
        key = text.lower()
        if key not in seen:
            seen[key] = words.word(text).as_dict()
        out.append({**seen[key], "text": text})
    try:
        parts = [{"text": text[:80], "tokens": words.count(text)} for text, _ in parse_prompt(body.text)]
    except ValueError:  # no text, or a bad weight: generate explains that; here there is nothing to count
        parts = []
    return {"words": out, "parts": parts, "max_tokens": words.max_tokens, "truncated": len(found) > MAX_WORDS}
