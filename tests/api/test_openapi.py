"""The OpenAPI schema documents the 4xx answers each route gives (issue 16), with the bodies they send."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.errors import ErrorBody, ValidationErrorBody
from app.main import create_app
from app.measured import PLOT_URL
from app.registry import Models
from tests.api.conftest import make_settings

# Every documented operation and the 4xx it must name: 400 (Host guard) and 401 (token) everywhere under /api.
EXPECTED = {
    ("get", "/api/info"): {400, 401},
    ("post", "/api/uploads"): {400, 401, 403, 413, 415},
    ("post", "/api/png-settings"): {400, 401, 403, 413, 415},
    ("get", "/api/vocab"): {400, 401, 422},
    ("post", "/api/tokenize"): {400, 401, 403, 413, 422},
    ("get", "/api/gallery"): {400, 401, 422},
    ("get", "/api/gallery/{image_id}.png"): {400, 401, 404, 422},
    ("delete", "/api/gallery/{image_id}"): {400, 401, 403, 404, 422},
    ("get", PLOT_URL): {400, 401, 404},
    ("get", "/api/models"): {400, 401},
    ("post", "/api/models/load"): {400, 401, 403, 404, 409, 422},
}


def operations(schema: dict) -> dict[tuple[str, str], dict]:
    return {(method, path): op for path, ops in schema["paths"].items() for method, op in ops.items()}


def check_schema(schema: dict) -> None:
    ops = operations(schema)
    assert set(ops) == set(EXPECTED), set(ops) ^ set(EXPECTED)
    for key, codes in EXPECTED.items():
        responses = ops[key]["responses"]
        fours = {int(code) for code in responses if code.startswith("4")}
        assert fours == codes, (key, sorted(fours))
        for code in codes:
            answer = responses[str(code)]
            assert answer["description"], (key, code)
            ref = answer["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ValidationErrorBody" if code == 422 else "/ErrorBody"), (key, code, ref)
    components = schema["components"]["schemas"]
    assert components["ErrorBody"]["required"] == ["detail"]
    assert components["ErrorBody"]["properties"]["detail"]["type"] == "string"
    body = ops[("post", "/api/uploads")]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"


def test_loopback_schema_documents_every_4xx(client: TestClient) -> None:
    check_schema(client.get("/openapi.json").json())


def test_token_schema_needs_the_token_and_documents_every_4xx(tiny_models: Models, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, host="0.0.0.0", token="s3cret")
    with TestClient(create_app(settings, models=tiny_models)) as c:
        assert c.get("/openapi.json").status_code == 401
        res = c.get("/openapi.json", headers={"authorization": "Bearer s3cret"})
        assert res.status_code == 200
        check_schema(res.json())


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("get", "/api/gallery?offset=-1", {}, 422),
    ("get", "/api/gallery/nope.png", {}, 404),
    ("get", "/api/gallery?q=" + "x" * 201, {}, 422),
    ("delete", "/api/gallery/nope", {}, 422),
    ("delete", "/api/gallery/" + "0" * 24, {}, 404),
    ("delete", "/api/gallery/" + "0" * 24, {"headers": {"sec-fetch-site": "cross-site"}}, 403),
    ("post", "/api/uploads", {"content": b"x", "headers": {"content-type": "text/plain"}}, 415),
    ("post", "/api/uploads", {"files": {"file": ("x.png", b"\0" * (8 * 1024 * 1024 + 1), "image/png")}}, 413),
    ("post", "/api/uploads", {"files": {"file": ("x.png", b"not an image", "image/png")}}, 400),
    ("get", "/api/info", {"headers": {"host": "evil.example"}}, 400),
    ("post", "/api/uploads", {"headers": {"origin": "http://evil.example"}, "content": b""}, 403),
])
def test_the_bodies_sent_are_the_bodies_documented(client: TestClient, method: str, path: str, kwargs: dict,
                                                   status: int) -> None:
    res = client.request(method, path, **kwargs)
    assert res.status_code == status, res.text
    model = ValidationErrorBody if status == 422 else ErrorBody
    model.model_validate(res.json())
