"""Model-aware controls at the edge: sizes from the loaded model, and what its tokenizer knows."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.diffusion.sizes import size_range
from tests.api.conftest import WsReader

GOOD = {"prompt": "a cat", "seed": 1, "steps": 2, "width": 32, "height": 32}


def test_info_offers_sizes_from_the_model(client: TestClient) -> None:
    sizes = client.get("/api/info").json()["sizes"]
    # the tiny pipeline: 8-latent UNet with two levels, f=4 VAE of sample_size 32
    assert (sizes["native"], sizes["step"], sizes["multiple_of"], sizes["min"]) == (32, 8, 4, 16)
    assert sizes["options"][0] == 16 and sizes["options"][-1] == sizes["max"] == 128
    assert all(s % 8 == 0 for s in sizes["options"]) and 32 in sizes["options"]


def test_size_rules_for_real_layouts() -> None:
    sd15 = size_range({"sample_size": 64, "block_out_channels": [320, 640, 1280, 1280]}, {"sample_size": 512}, 8,
                      1024 * 1024)
    assert (sd15.native, sd15.step, sd15.min, sd15.max) == (512, 64, 256, 1024)
    shipped = size_range({"sample_size": 64, "block_out_channels": [64, 128, 128]}, {"sample_size": 64}, 4,
                         1024 * 1024)
    assert (shipped.native, shipped.min, shipped.max) == (64, 32, 256)  # the VAE's 64 px, not 64 x 4
    assert shipped.problem("width", 16) and shipped.problem("width", 34) and shipped.problem("width", 96) is None
    no_sizes = size_range({}, {}, 8, 512 * 512)
    assert no_sizes.min <= no_sizes.native <= no_sizes.max <= 512


def test_generate_refuses_sizes_that_give_noise(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        reader = WsReader(ws)
        ws.send_json({"type": "generate", "params": {**GOOD, "width": 8}})
        err = reader.until("error")
        assert err["code"] == "bad_request"
        assert err["message"].startswith("params.width: width 8 px is too small") and "16 px" in err["message"]
        ws.send_json({"type": "generate", "params": {**GOOD, "height": 64}})  # above native: allowed
        assert reader.until("done")["run_id"]


def test_tokenize_marks_words_split_into_letters(client: TestClient) -> None:
    res = client.post("/api/tokenize", json={"text": "a lighthouse:1 | storm:-0.5"})
    assert res.status_code == 200
    body = res.json()
    assert [w["text"] for w in body["words"]] == ["a", "lighthouse", "storm"]
    a, light, _ = body["words"]
    assert a["status"] == "known" and not a["marked"]  # the tiny tokenizer knows single letters only
    assert light["status"] == "letters" and light["marked"] and len(light["pieces"]) == 10
    assert body["max_tokens"] == 77 and body["truncated"] is False
    assert body["parts"] == [{"text": "a lighthouse", "tokens": 11}, {"text": "storm", "tokens": 5}]


def test_tokenize_refuses_another_sites_origin(client: TestClient) -> None:
    res = client.post("/api/tokenize", json={"text": "a"}, headers={"Origin": "http://evil.example"})
    assert res.status_code == 403


def test_tokenize_and_vocab_refuse_bad_input(client: TestClient) -> None:
    assert client.post("/api/tokenize", json={"text": "x" * 5000}).status_code == 413
    assert client.post("/api/tokenize", json={"words": ["x"]}).status_code == 422
    assert client.post("/api/tokenize", content=b"not json", headers={"content-type": "application/json"}
                       ).status_code == 422
    assert client.get("/api/vocab").status_code == 422
    assert client.get("/api/vocab", params={"prefix": "a" * 41}).status_code == 422
    assert client.get("/api/vocab", params={"prefix": "a", "limit": 51}).status_code == 422
    body = client.get("/api/vocab", params={"prefix": "zq"}).json()
    assert body["words"] == [] and body["prefix"] == "zq"


def test_vocab_completes_from_the_loaded_tokenizer(client: TestClient, monkeypatch) -> None:
    from transformers import CLIPTokenizer

    from app.api import vocab as vocab_routes
    from app.clip.vocab import WordVocab
    from app.clip.word_tokenizer import write_word_clip_tokenizer

    folder = client.app.state.settings.data_dir / "tok"
    write_word_clip_tokenizer(folder, ["cat", "castle", "dog"], max_length=77)
    words = WordVocab(CLIPTokenizer.from_pretrained(folder))
    monkeypatch.setattr(vocab_routes, "studio_vocab", lambda studio: words)
    body = client.get("/api/vocab", params={"prefix": "Ca", "limit": 5}).json()
    assert set(body["words"]) == {"cat", "castle"}


def test_vocab_routes_need_the_token(tiny_models, tmp_path) -> None:
    from app.main import create_app
    from tests.api.conftest import make_settings

    settings = make_settings(tmp_path, host="0.0.0.0", token="s3cret")
    with TestClient(create_app(settings, models=tiny_models)) as c:
        assert c.get("/api/vocab", params={"prefix": "a"}).status_code == 401
        assert c.post("/api/tokenize", json={"text": "a"}).status_code == 401
        ok = c.get("/api/vocab", params={"prefix": "a"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_shipped_model_offers_sizes_around_64_px() -> None:
    """Issue 17: the menu offered 8-1024 px for the embedded 64 px model."""
    import json
    from pathlib import Path

    import pytest

    root = Path(__file__).resolve().parents[2] / "models" / "diffusion"
    if not (root / "unet" / "config.json").is_file():
        pytest.skip("no shipped diffusion model")
    unet, vae = (json.loads((root / part / "config.json").read_text()) for part in ("unet", "vae"))
    scale = 2 ** (len(vae["block_out_channels"]) - 1)
    sizes = size_range(unet, vae, scale, 1024 * 1024)
    assert (sizes.native, sizes.min, sizes.max) == (64, 32, 256)
    assert 8 not in sizes.options() and 16 not in sizes.options() and 1024 not in sizes.options()
