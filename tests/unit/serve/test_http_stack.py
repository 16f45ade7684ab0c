"""uvicorn serves with its C HTTP parser and libuv loop (pinned: httptools, uvloop), not h11 and asyncio's loop.

bench/serve_load.py measured 4-16% more requests/s with them on the same server; uvicorn falls back silently
when either is missing, so this checks that the pinned install set still provides both.
"""

from __future__ import annotations

from uvicorn.config import Config


def test_uvicorns_automatic_http_choice_is_httptools():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    config = Config(app=lambda scope, receive, send: None, http="auto")
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol


def test_uvicorns_automatic_loop_is_uvloop():
    import uvloop
    from uvicorn.loops.auto import auto_loop_factory

    loop = auto_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_liveness_serve_leaves_both_on_automatic(monkeypatch, tmp_path):
    """``liveness serve`` passes no http= or loop= override that would pin uvicorn to h11 or asyncio."""
    import uvicorn

    from liveness.cli import serving

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    monkeypatch.setattr("liveness.serve.app.create_app", lambda settings: object())
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    serving.serve(model=str(bundle), poll_s=0)
    assert seen and "http" not in seen and "loop" not in seen
