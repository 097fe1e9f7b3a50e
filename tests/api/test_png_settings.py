"""POST /api/png-settings: a PNG's settings, read from its text chunks, with clear refusals."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from tests.api.conftest import make_settings
from tests.store.test_readback import A1111_TEXT, a1111_png


def post(client: TestClient, data: bytes, name: str = "x.png"):
    return client.post("/api/png-settings", files={"file": (name, data, "image/png")})


def test_a1111_png_gives_settings_and_notes(client: TestClient) -> None:
    res = post(client, a1111_png(A1111_TEXT))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["source"] == "automatic1111" and body["params"]["steps"] == 28 and body["seed"] == 3141592653
    assert any("nearest" in n for n in body["notes"])


def test_refusals_are_clear(client: TestClient) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    res = post(client, jpeg.getvalue(), "x.jpg")
    assert res.status_code == 400 and res.json()["detail"] == "not a PNG file"
    plain = io.BytesIO()
    Image.new("RGB", (4, 4)).save(plain, format="PNG")
    res = post(client, plain.getvalue())
    assert res.status_code == 400 and "no Noisescope or AUTOMATIC1111 settings" in res.json()["detail"]


def test_files_over_the_cap_are_too_large(tiny_models, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_init_image_bytes=1024)
    with TestClient(create_app(settings, models=tiny_models)) as c:
        res = post(c, a1111_png(A1111_TEXT) + b"\0" * 2048)
    assert res.status_code == 413


def test_the_route_is_behind_the_token_and_the_origin_rule(tiny_models, tmp_path: Path) -> None:
    from tests.api.test_guard import real_settings

    app = create_app(real_settings(tmp_path, host="0.0.0.0", token="s3cret"), models=tiny_models)
    files = {"file": ("x.png", a1111_png(A1111_TEXT), "image/png")}
    with TestClient(app, base_url="http://10.0.0.5:7860") as c:
        assert c.post("/api/png-settings", files=files).status_code == 401
        assert c.post("/api/png-settings?token=s3cret", files=files,
                      headers={"origin": "http://evil.example"}).status_code == 403
        assert c.post("/api/png-settings?token=s3cret", files=files).status_code == 200
