"""The edge (issue 16, items 1, 5 and 7): DNS rebinding refused by Host and Origin, tokens that cannot
500, the token kept out of the access log, security headers everywhere, no absolute paths in
/api/info, and the API docs behind the token."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from app.api.guard import RedactToken, host_allowed, host_name
from app.main import create_app
from app.registry import Models
from app.settings import Settings
from tests.api.conftest import WsReader

LOOPBACK_URLS = ["http://127.0.0.1:7860", "http://localhost:7860", "http://[::1]:7860", "http://LOCALHOST"]
FOREIGN_HOSTS = ["evil.example:7860", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io:7860",
                 "localhost@evil.example", "localhost:7860@evil.example", "localhost :7860", "", "[::1]x",
                 "testserver"]


def real_settings(tmp_path: Path, **overrides) -> Settings:
    """The defaults a user gets (no extra allowed hosts), on the tiny models."""
    return Settings(data_dir=tmp_path, device="cpu", gan_model="", **overrides)


@pytest.fixture
def app(tiny_models: Models, tmp_path: Path):
    return create_app(real_settings(tmp_path), models=tiny_models)


@pytest.fixture
def loopback(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        yield c


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return buf.getvalue()


# ---- item 1: DNS rebinding -------------------------------------------------------------------

def test_default_allow_list_is_loopback_and_the_bind_host() -> None:
    s = Settings()
    for host in ("127.0.0.1:7860", "localhost", "[::1]:7860", "LocalHost:1"):
        assert host_allowed(host, s), host
    for host in FOREIGN_HOSTS + [None, "192.168.1.20:7860", "::1"]:
        assert not host_allowed(host, s), host
    assert host_name("[::1]:7860") == "::1" and host_name("a@b") is None
    lan = Settings(host="studio.lan", token="t")
    assert host_allowed("studio.lan:7860", lan) and host_allowed("localhost", lan)
    assert not host_allowed("evil.example", lan) and not host_allowed("10.0.0.5", lan)
    everywhere = Settings(host="0.0.0.0", token="t", allowed_hosts="gpu-box, Studio.Example")
    for host in ("10.0.0.5:7860", "[fe80::1]:7860", "gpu-box", "studio.example:443", "localhost"):
        assert host_allowed(host, everywhere), host
    assert not host_allowed("evil.example:7860", everywhere)


def test_allowed_hosts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOISESCOPE_ALLOWED_HOSTS", "studio.lan,gpu-box")
    s = Settings()
    assert s.allowed_hosts == ["studio.lan", "gpu-box"]
    assert host_allowed("studio.lan:7860", s) and not host_allowed("evil.example", s)


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_rebound_http_requests_are_refused_before_any_work(app, tmp_path: Path, host: str) -> None:
    with TestClient(app) as c:
        for method, path in (("GET", "/"), ("GET", "/api/gallery"), ("GET", "/api/info"),
                             ("GET", "/static/js/main.js"), ("GET", "/docs"), ("GET", "/openapi.json")):
            res = c.request(method, path, headers={"host": host})
            assert res.status_code == 400, (host, path, res.status_code)
            assert "Host" in res.json()["detail"]
        res = c.post("/api/uploads", headers={"host": host}, files={"file": ("x.png", png(), "image/png")})
        assert res.status_code == 400
        assert c.get("/api/gallery", headers={"host": "127.0.0.1:7860"}).status_code == 200  # the header is used
    assert not any((tmp_path / "uploads").iterdir()), "a refused upload must not be stored"


@pytest.mark.parametrize("base", LOOPBACK_URLS)
def test_loopback_names_are_served(app, base: str) -> None:
    with TestClient(app, base_url=base) as c:
        assert c.get("/api/gallery").status_code == 200
        assert c.get("/").status_code == 200


def test_rebound_websocket_is_refused(app) -> None:
    with TestClient(app) as c:
        attacks = [
            ("ws://evil.example:7860/ws", {"origin": "http://evil.example:7860"}),  # the reproduction
            ("ws://evil.example:7860/ws", {}),
            ("ws://127.0.0.1:7860/ws", {"origin": "http://evil.example:7860"}),
            ("ws://127.0.0.1:7860/ws", {"origin": "http://127.0.0.1:9999"}),  # another local page
            ("ws://127.0.0.1:7860/ws", {"origin": "null"}),
        ]
        for url, headers in attacks:
            with pytest.raises(WebSocketDisconnect):
                with c.websocket_connect(url, headers=headers) as ws:
                    ws.receive_text()
        for url, headers in (("ws://127.0.0.1:7860/ws", {"origin": "http://127.0.0.1:7860"}),
                             ("ws://localhost:7860/ws", {"origin": "http://localhost:7860"}),
                             ("ws://127.0.0.1:7860/ws", {})):
            with c.websocket_connect(url, headers=headers) as ws:
                ws.send_text("{}")
                assert WsReader(ws).until("error")["code"] == "bad_request"


def test_cross_site_writes_are_refused(loopback: TestClient, tmp_path: Path) -> None:
    files = {"file": ("x.png", png(), "image/png")}
    res = loopback.post("/api/uploads", headers={"origin": "http://evil.example"}, files=files)
    assert res.status_code == 403
    assert not any((tmp_path / "uploads").iterdir())
    same = loopback.post("/api/uploads", headers={"origin": "http://127.0.0.1:7860"}, files=files)
    assert same.status_code == 200


# ---- item 5: tokens -------------------------------------------------------------------------------

@pytest.fixture
def token_app(tiny_models: Models, tmp_path: Path):
    return create_app(real_settings(tmp_path, host="0.0.0.0", token="s3cret"), models=tiny_models)


def test_non_ascii_tokens_are_refused_not_500(token_app) -> None:
    with TestClient(token_app, base_url="http://10.0.0.5:7860") as c:
        for path in ("/api/info", "/", "/docs", "/api/gallery"):
            assert c.get(f"{path}?token=%C3%A9").status_code == 401, path
            assert c.get(path, headers={"authorization": "Bearer é".encode()}).status_code == 401, path
            assert c.get(path, headers={"cookie": "noisescope_token=é".encode()}).status_code == 401, path
        for url, headers in (("/ws?token=%C3%A9", {}), ("/ws", {"authorization": "Bearer é".encode()})):
            with pytest.raises(WebSocketDisconnect):
                with c.websocket_connect(f"ws://10.0.0.5:7860{url}", headers=headers) as ws:
                    ws.receive_text()
        assert c.get("/api/info?token=s3cret").status_code == 200


def test_redaction_filter() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "GET", "/?a=1&token=s3cret&b=2", "1.1", 200), None)
    RedactToken().filter(record)
    line = record.getMessage()
    assert "s3cret" not in line and "token=[redacted]&b=2" in line


def test_the_token_never_reaches_the_access_log(tiny_models: Models, tmp_path: Path) -> None:
    import uvicorn

    from app.devtools import free_port

    port = free_port()
    settings = real_settings(tmp_path, host="0.0.0.0", port=port, token="s3cret-token")  # token mode
    config = uvicorn.Config(create_app(settings, models=tiny_models), host="127.0.0.1", port=port,  # loopback only
                            log_level="info", lifespan="on", ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keep = Keep()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).addHandler(keep)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/?token=s3cret-token").status_code == 200
        assert httpx.get(f"{base}/api/info?x=1&token=s3cret-token").status_code == 200
        assert httpx.get(f"{base}/api/info?token=%C3%A9").status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).removeHandler(keep)
    requests = [line for line in lines if "GET /" in line]
    assert len(requests) == 3, lines
    assert not [line for line in lines if "s3cret" in line], lines
    assert all("token=[redacted]" in line for line in requests), requests


# ---- item 7: headers, paths, docs ---------------------------------------------------------------

def assert_secure(res: httpx.Response) -> None:
    h = res.headers
    assert h["x-content-type-options"] == "nosniff", res.url
    assert h["x-frame-options"] == "DENY", res.url
    assert "frame-ancestors 'none'" in h["content-security-policy"], res.url
    assert h["referrer-policy"] == "no-referrer", res.url


def test_every_response_has_security_headers(app) -> None:
    def boom() -> None:
        raise RuntimeError("secret detail")

    app.add_api_route("/boom", boom)
    with TestClient(app, base_url="http://127.0.0.1:7860", raise_server_exceptions=False) as c:
        for path in ("/", "/static/js/main.js", "/static/css/style.css", "/api/info", "/api/gallery", "/nope",
                     "/api/gallery/nope.png", "/api/gallery?limit=0", "/docs", "/openapi.json"):
            assert_secure(c.get(path))
        page_csp = c.get("/").headers["content-security-policy"]
        assert "script-src 'self';" in page_csp and "unsafe" not in page_csp
        assert_secure(c.get("/api/info", headers={"host": "evil.example"}))
        res = c.get("/boom")
        assert res.status_code == 500 and "secret" not in res.text
        assert_secure(res)


def test_token_mode_refusals_have_security_headers(token_app) -> None:
    with TestClient(token_app, base_url="http://10.0.0.5:7860") as c:
        for path in ("/", "/api/info", "/docs"):
            res = c.get(path)
            assert res.status_code == 401
            assert_secure(res)


def test_info_shows_no_absolute_paths(loopback: TestClient, tiny_diffusion_dir: Path, tiny_clip_dir: Path) -> None:
    info = loopback.get("/api/info")
    assert str(tiny_diffusion_dir) not in info.text and str(tiny_clip_dir) not in info.text
    body = info.json()
    assert body["diffusion"] == tiny_diffusion_dir.name and body["clip"] == tiny_clip_dir.name


def test_docs_need_the_token_in_token_mode(token_app) -> None:
    with TestClient(token_app, base_url="http://10.0.0.5:7860") as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 401, path
            assert c.get(f"{path}?token=wrong").status_code == 401, path
        docs = c.get("/docs?token=s3cret")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        nonce = docs.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in docs.text
        assert "noisescope_token" in docs.headers.get("set-cookie", "")
        assert c.get("/openapi.json").status_code == 200  # the page's own fetch, with the cookie
        c.cookies.clear()
        assert c.get("/redoc", headers={"authorization": "Bearer s3cret"}).status_code == 200
        schema = c.get("/openapi.json", headers={"authorization": "Bearer s3cret"}).json()
        assert "/api/info" in schema["paths"]


def test_docs_are_open_on_loopback(loopback: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert loopback.get(path).status_code == 200, path
