"""The gallery over HTTP (issue 17): pages with a total, prompt search with literal wildcards, delete
(row and file together, behind the cross-site guard and the token), and no orphan ever served."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.errors import ErrorBody, ValidationErrorBody
from app.main import create_app
from app.registry import Models
from app.store.gallery import Gallery, ImageRecord
from app.store.search import MAX_QUERY_CHARS
from tests.api.conftest import make_settings


def add(gallery: Gallery, prompt: str, seed: int = 1) -> str:
    record = ImageRecord(engine="diffusion", params={"prompt": prompt, "steps": 2, "sampler": "ddim"}, seed=seed)
    return gallery.add(Image.new("RGB", (8, 8), (seed % 256, 0, 0)), record)


def studio_gallery(c: TestClient) -> Gallery:
    return c.app.state.studio.gallery  # type: ignore[attr-defined]


def test_pages_carry_the_total(client: TestClient) -> None:
    g = studio_gallery(client)
    ids = [add(g, f"cat {i}", seed=i) for i in range(7)][::-1]  # newest first
    res = client.get("/api/gallery", params={"limit": 3, "offset": 3})
    assert res.status_code == 200 and res.headers["x-total-count"] == "7"
    assert [item["id"] for item in res.json()] == ids[3:6]
    last = client.get("/api/gallery", params={"limit": 3, "offset": 6})
    assert [item["id"] for item in last.json()] == ids[6:] and last.headers["x-total-count"] == "7"
    past = client.get("/api/gallery", params={"offset": 50})
    assert past.json() == [] and past.headers["x-total-count"] == "7"
    assert isinstance(client.get("/api/gallery").json(), list), "the body stays a bare list (older pages read it)"


def test_search_takes_wildcards_literally(client: TestClient) -> None:
    g = studio_gallery(client)
    plain = add(g, "a red fox")
    percent = add(g, "100% cat")
    underscore = add(g, "snake_case fox")
    backslash = add(g, r"back\slash fox")
    add(g, "100 cats")  # what an unescaped "100%" or "_" would also match

    def found(q: str) -> tuple[list[str], str]:
        res = client.get("/api/gallery", params={"q": q})
        assert res.status_code == 200, res.text
        return sorted(item["id"] for item in res.json()), res.headers["x-total-count"]

    assert found("100%") == ([percent], "1")
    assert found("e_c") == ([underscore], "1")
    assert found("_") == ([underscore], "1")
    assert found("%") == ([percent], "1")
    assert found("\\") == ([backslash], "1")
    assert found("  FOX ") == (sorted([plain, underscore, backslash]), "3")  # outer spaces, any case
    assert found("")[1] == "5" and found("   ")[1] == "5"  # blank: everything
    assert found("no such words") == ([], "0")
    assert found("fox")[1] == "3"
    page = client.get("/api/gallery", params={"q": "fox", "limit": 1, "offset": 1})
    assert len(page.json()) == 1 and page.headers["x-total-count"] == "3"  # search works past the first page


def test_search_text_is_capped_at_the_edge(client: TestClient) -> None:
    assert client.get("/api/gallery", params={"q": "x" * MAX_QUERY_CHARS}).status_code == 200
    res = client.get("/api/gallery", params={"q": "x" * (MAX_QUERY_CHARS + 1)})
    assert res.status_code == 422
    body = ValidationErrorBody.model_validate(res.json())
    assert body.detail[0].loc == ["query", "q"] and str(MAX_QUERY_CHARS) in body.detail[0].msg
    for odd in ("\x00", "'; DROP TABLE images; --", "é🦊", "\\%_"):
        assert client.get("/api/gallery", params={"q": odd}).status_code == 200


def test_delete_removes_row_and_file(client: TestClient) -> None:
    g = studio_gallery(client)
    keep, gone = add(g, "keep me"), add(g, "delete me")
    path = g.path_for(gone)
    assert client.get(f"/api/gallery/{gone}.png").status_code == 200
    res = client.delete(f"/api/gallery/{gone}")
    assert res.status_code == 204 and res.content == b""
    assert not path.exists() and g.get(gone) is None
    assert [item["id"] for item in client.get("/api/gallery").json()] == [keep]
    assert client.get(f"/api/gallery/{gone}.png").status_code == 404
    again = client.delete(f"/api/gallery/{gone}")
    assert again.status_code == 404 and ErrorBody.model_validate(again.json()).detail == "no such image"
    assert g.path_for(keep).is_file()


@pytest.mark.parametrize("bad", ["nope", "0" * 23, "0" * 25, "0123456789ABCDEF01234567", "a..b", "%2e%2e",
                                 "0123456789abcdef0123456\u0665", "x.png", " " + "0" * 23])
def test_delete_refuses_malformed_ids(client: TestClient, bad: str) -> None:
    add(studio_gallery(client), "still here")
    res = client.delete(f"/api/gallery/{bad}")
    assert res.status_code == 422, (bad, res.status_code, res.text)
    detail = ValidationErrorBody.model_validate(res.json()).detail[0]
    assert detail.loc == ["path", "image_id"] and "24 characters of 0-9 and a-f" in detail.msg
    assert len(client.get("/api/gallery").json()) == 1


@pytest.mark.parametrize("headers", [{"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"},
                                     {"sec-fetch-site": "same-site"}, {"host": "evil.example"}])
def test_delete_from_another_site_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    g = studio_gallery(client)
    image_id = add(g, "mine")
    res = client.delete(f"/api/gallery/{image_id}", headers=headers)
    assert res.status_code == (400 if "host" in headers else 403)
    assert g.get(image_id) is not None and g.path_for(image_id).is_file()
    ok = client.delete(f"/api/gallery/{image_id}", headers={"origin": "http://testserver",
                                                             "sec-fetch-site": "same-origin"})
    assert ok.status_code == 204  # the page's own request


def test_delete_needs_the_token_in_token_mode(tiny_models: Models, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, host="0.0.0.0", token="s3cret")
    with TestClient(create_app(settings, models=tiny_models)) as c:
        g = studio_gallery(c)
        image_id = add(g, "guarded")
        for headers in ({}, {"authorization": "Bearer wrong"}):
            assert c.delete(f"/api/gallery/{image_id}", headers=headers).status_code == 401
        assert g.get(image_id) is not None
        assert c.delete(f"/api/gallery/{image_id}?token=s3cret").status_code == 204
        assert g.get(image_id) is None


def test_a_crash_between_row_and_file_leaves_nothing_visible(client: TestClient, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    g = studio_gallery(client)
    image_id = add(g, "half deleted")
    path = g.path_for(image_id)

    def crash(self: Path, missing_ok: bool = False) -> None:
        raise KeyboardInterrupt("the server dies between the row and the file")

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        g.delete(image_id)
    monkeypatch.undo()
    assert path.is_file(), "the file outlived its row"
    assert client.get("/api/gallery").json() == [] and client.get("/api/gallery").headers["x-total-count"] == "0"
    assert client.get(f"/api/gallery/{image_id}.png").status_code == 404, "an orphan is never served"
    old = time.time() - 3600
    os.utime(path, (old, old))
    Gallery(g.folder).close()  # the next start sweeps it
    assert not path.exists()
