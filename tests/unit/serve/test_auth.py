"""A key for exposed servers: the bearer check on the app, the key's sources, the loopback rule, the command."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liveness.serve import auth
from liveness.serve.app import create_app
from liveness.serve.auth import ApiKeyError, ExposedWithoutKey, check_bind, is_loopback, read_key_file, resolve_api_key
from liveness.serve.settings import ServeSettings
from tests.fixtures.bad_images import astronaut
from tests.fixtures.serving import jpeg, started
from tests.fixtures.serving import FakePredictor, FakeSource

KEY = "s3cr3t-key-0123456789abcdef"
IMAGE = jpeg(astronaut()[:16, :16])
SCORING = ("/v1/liveness", "/v1/liveness/batch", "/metrics")


def keyed_app(api_key: str | None = KEY):
    return started(create_app(ServeSettings(model="fake", api_key=api_key), source=FakeSource(),
                              factory=lambda folder: FakePredictor()))


def call(client, route: str, headers: dict[str, str] | None = None):
    if route == "/metrics":
        return client.get(route, headers=headers)
    if route == "/v1/liveness/batch":
        return client.post(route, files=[("images", ("a.jpg", IMAGE, "image/jpeg"))], headers=headers)
    return client.post(route, content=IMAGE, headers=headers)


@pytest.fixture(scope="module")
def client():
    with keyed_app() as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch):
    monkeypatch.delenv(auth.API_KEY_ENV, raising=False)
    monkeypatch.delenv(auth.API_KEY_FILE_ENV, raising=False)


def assert_unauthorized(answer, challenge: str = "Bearer") -> None:
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "unauthorized" and answer.json()["detail"]
    assert set(answer.json()) == {"error", "detail"}
    assert answer.headers["www-authenticate"] == challenge
    assert KEY not in answer.text


class TestBearerKey:
    @pytest.mark.parametrize("route", SCORING)
    def test_no_header_is_401(self, client, route):
        answer = call(client, route)
        assert_unauthorized(answer)
        assert "Authorization: Bearer <key>" in answer.json()["detail"]

    @pytest.mark.parametrize("route", SCORING)
    def test_wrong_key_is_401_invalid_token(self, client, route):
        for wrong in ("nope", KEY[:-1], KEY + "x", KEY.upper()):
            assert_unauthorized(call(client, route, {"Authorization": f"Bearer {wrong}"}),
                                'Bearer error="invalid_token"')

    @pytest.mark.parametrize("header", [f"Basic {KEY}", f"Token {KEY}", KEY, "Bearer", "Bearer "])
    def test_wrong_scheme_or_no_credentials_is_401(self, client, header):
        answer = call(client, "/v1/liveness", {"Authorization": header})
        assert_unauthorized(answer)
        assert "Bearer" in answer.json()["detail"]

    @pytest.mark.parametrize("route", SCORING)
    def test_right_key_is_served(self, client, route):
        for scheme in ("Bearer", "bearer"):  # auth schemes are case-insensitive (RFC 7235)
            answer = call(client, route, {"Authorization": f"{scheme} {KEY}"})
            assert answer.status_code == 200, answer.text
        if route == "/v1/liveness":
            assert answer.json()["label"] == "live"
        if route == "/v1/liveness/batch":
            assert [item["status"] for item in answer.json()["results"]] == [200]

    @pytest.mark.parametrize("route", ["/healthz", "/readyz", "/docs", "/openapi.json"])
    def test_probes_and_docs_stay_open(self, client, route):
        assert client.get(route).status_code == 200

    def test_the_api_description_declares_the_bearer_scheme(self, client):
        spec = client.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        for path, method in (("/v1/liveness", "post"), ("/v1/liveness/batch", "post"), ("/metrics", "get")):
            assert spec["paths"][path][method]["security"] == [{"HTTPBearer": []}], path
            assert "401" in spec["paths"][path][method]["responses"], path
        assert "security" not in spec["paths"]["/healthz"]["get"]

    def test_refused_requests_are_not_counted_as_refused_images(self, client):
        call(client, "/v1/liveness")
        metrics = call(client, "/metrics", {"Authorization": f"Bearer {KEY}"}).text
        assert 'liveness_refused_images_total{error="unauthorized"}' not in metrics
        assert 'route="/v1/liveness",status="401"' in metrics

    def test_the_key_is_compared_in_constant_time_as_bytes(self, client, monkeypatch):
        compared = []

        def record(given, expected):
            compared.append((given, expected))
            return True  # the answer must follow compare_digest, so a wrong key now passes

        monkeypatch.setattr(auth.hmac, "compare_digest", record)
        answer = call(client, "/v1/liveness", {"Authorization": "Bearer not-the-key"})
        assert answer.status_code == 200, answer.text
        assert compared == [(b"not-the-key", KEY.encode())]

    def test_without_a_key_the_scoring_routes_stay_open(self):
        with keyed_app(None) as open_client:
            for route in SCORING:
                assert call(open_client, route).status_code == 200, route
            assert "securitySchemes" not in open_client.get("/openapi.json").json().get("components", {})


class TestSecrecy:
    def test_settings_repr_hides_the_key(self):
        settings = ServeSettings(api_key=KEY)
        assert KEY not in repr(settings) and KEY not in str(settings) and "api_key" not in repr(settings)
        assert settings.api_key == KEY

    def test_the_key_is_in_no_log_record(self, caplog):
        with caplog.at_level(logging.DEBUG), keyed_app() as client:
            call(client, "/v1/liveness", {"Authorization": "Bearer wrong"})
            call(client, "/v1/liveness", {"Authorization": f"Bearer {KEY}"})
            call(client, "/v1/liveness", {"Authorization": f"Basic {KEY}"})
        assert caplog.records  # the app did log (startup, the synthetic-model warning)
        for record in caplog.records:
            assert KEY not in record.getMessage() and KEY not in str(record.args), record.getMessage()

    @pytest.mark.parametrize("bad", ["", "two words", "tab\there", "line\nbreak", "ünïcode", "x" * 5000])
    def test_a_key_the_header_cannot_carry_is_refused_without_being_quoted(self, bad):
        with pytest.raises(ValueError) as refused:
            ServeSettings(api_key=bad)
        assert bad not in str(refused.value) or bad == ""


class TestKeyFile:
    def test_surrounding_whitespace_and_newline_are_stripped(self, tmp_path):
        path = tmp_path / "serve.key"
        path.write_text(f"  {KEY}\n\n")
        assert read_key_file(path) == KEY

    @pytest.mark.parametrize(("content", "says"), [
        (b"", "empty"), (b" \n\t\n", "empty"), (b"two words\n", "printable ASCII"), (b"\xff\xfe key", "not ASCII"),
        (b"a\nb\n", "printable ASCII"), (b"k" * 10_000, "longer than")])
    def test_a_file_without_a_usable_key_is_refused(self, tmp_path, content, says):
        path = tmp_path / "serve.key"
        path.write_bytes(content)
        with pytest.raises(ApiKeyError, match=says) as refused:
            read_key_file(path)
        assert str(path) in str(refused.value) and "openssl rand" in str(refused.value)
        if content.strip():
            assert content.decode("latin-1").strip() not in str(refused.value)  # never quotes what it read

    def test_a_missing_file_says_how_to_make_one(self, tmp_path):
        with pytest.raises(ApiKeyError, match="does not exist; create one with `openssl rand"):
            read_key_file(tmp_path / "absent.key")

    def test_a_folder_is_refused(self, tmp_path):
        with pytest.raises(ApiKeyError, match="is a directory"):
            read_key_file(tmp_path)

    def test_an_unreadable_file_is_refused(self, tmp_path, monkeypatch):
        path = tmp_path / "serve.key"
        path.write_text(KEY)

        def denied(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(Path, "open", denied)  # chmod 000 does not stop root, who runs some CI
        with pytest.raises(ApiKeyError, match="permission denied"):
            read_key_file(path)

    @pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o400, False), (0o640, True), (0o644, True),
                                                  (0o602, True)])
    def test_a_key_file_others_can_open_is_warned_about(self, tmp_path, mode, warned):
        path = tmp_path / "serve.key"
        path.write_text(KEY)
        path.chmod(mode)
        warning = auth.loose_permissions(path)
        assert (warning is not None) is warned
        if warned:
            assert "chmod 600" in warning and KEY not in warning


class TestKeySources:
    def test_neither_source_means_no_key(self):
        assert resolve_api_key(None, None) is None

    def test_the_environment_key_is_stripped(self):
        assert resolve_api_key(None, f" {KEY}\n") == KEY

    def test_an_empty_environment_key_is_refused(self):
        with pytest.raises(ApiKeyError, match=r"\$LIVENESS_API_KEY: the API key is empty; set it"):
            resolve_api_key(None, "  ")

    def test_a_file_and_an_environment_key_together_are_refused(self, tmp_path):
        path = tmp_path / "serve.key"
        path.write_text(KEY)
        with pytest.raises(ApiKeyError, match="use one") as refused:
            resolve_api_key(path, "other")
        assert KEY not in str(refused.value) and "other" not in str(refused.value)


class TestBind:
    @pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LocalHost",
                                      "::ffff:127.0.0.1"])
    def test_loopback_needs_no_key_and_says_nothing(self, host):
        assert is_loopback(host)
        assert check_bind(host, has_key=False, insecure=False) is None

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "fe80::1", "example.com",
                                      "localhost.example.com", ""])
    def test_another_address_without_a_key_is_refused(self, host):
        assert not is_loopback(host)
        with pytest.raises(ExposedWithoutKey) as refused:
            check_bind(host, has_key=False, insecure=False)
        message = str(refused.value)
        assert f"refusing to bind {host} without an API key" in message
        assert "--api-key-file" in message and "--insecure" in message and "127.0.0.1" in message

    def test_insecure_allows_it_with_a_warning(self):
        warning = check_bind("0.0.0.0", has_key=False, insecure=True)
        assert warning is not None and "WITHOUT an API key" in warning

    def test_a_key_allows_it_with_a_plain_http_reminder(self):
        for insecure in (False, True):
            reminder = check_bind("0.0.0.0", has_key=True, insecure=insecure)
            assert reminder is not None and "unencrypted" in reminder


class TestCommand:
    @pytest.fixture
    def uvicorn_calls(self, monkeypatch):
        import uvicorn

        calls = []
        monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
        return calls

    @pytest.fixture
    def key_file(self, tmp_path) -> Path:
        path = tmp_path / "serve.key"
        path.write_text(KEY + "\n")
        path.chmod(0o600)
        return path

    def invoke(self, *args: str, env: dict[str, str] | None = None):
        from liveness.cli import app as cli

        return CliRunner().invoke(cli, ["serve", *args], env=env)

    def test_an_exposed_bind_without_a_key_exits_before_anything_starts(self, monkeypatch, tmp_path):
        import uvicorn

        from liveness.serve import app as app_module

        def must_not_run(*args, **kwargs):
            raise AssertionError("the refused server got as far as starting")

        monkeypatch.setattr(uvicorn, "run", must_not_run)
        monkeypatch.setattr(app_module, "create_app", must_not_run)
        result = self.invoke("--model", str(tmp_path), "--host", "0.0.0.0")
        assert result.exit_code == 2, result.output
        assert "refusing to bind 0.0.0.0 without an API key" in result.output
        assert "--api-key-file" in result.output and "--insecure" in result.output

    def test_a_key_file_reaches_the_app_and_uvicorn(self, uvicorn_calls, tmp_path, key_file):
        result = self.invoke("--model", str(tmp_path), "--host", "0.0.0.0", "--api-key-file", str(key_file))
        assert result.exit_code == 0, result.output
        (served, kwargs), = uvicorn_calls
        assert kwargs["host"] == "0.0.0.0" and served.state.settings.api_key == KEY
        assert "unencrypted" in result.output and "accessible to group" not in result.output
        assert KEY not in result.output

    def test_the_key_file_may_come_from_the_environment(self, uvicorn_calls, tmp_path, key_file):
        result = self.invoke("--model", str(tmp_path), "--host", "0.0.0.0",
                             env={auth.API_KEY_FILE_ENV: str(key_file)})
        assert result.exit_code == 0, result.output
        assert uvicorn_calls[0][0].state.settings.api_key == KEY

    def test_the_key_may_come_from_the_environment(self, uvicorn_calls, tmp_path):
        result = self.invoke("--model", str(tmp_path), "--host", "0.0.0.0", env={auth.API_KEY_ENV: KEY})
        assert result.exit_code == 0, result.output
        assert uvicorn_calls[0][0].state.settings.api_key == KEY and KEY not in result.output

    def test_a_loose_key_file_is_warned_about_but_served(self, uvicorn_calls, tmp_path, key_file):
        key_file.chmod(0o644)
        result = self.invoke("--model", str(tmp_path), "--api-key-file", str(key_file))
        assert result.exit_code == 0 and "accessible to group or others" in result.output, result.output
        assert uvicorn_calls

    def test_insecure_serves_without_a_key_and_warns(self, uvicorn_calls, tmp_path):
        result = self.invoke("--model", str(tmp_path), "--host", "0.0.0.0", "--insecure")
        assert result.exit_code == 0, result.output
        assert "warning:" in result.output and "WITHOUT an API key" in result.output
        assert uvicorn_calls[0][0].state.settings.api_key is None

    def test_loopback_serves_without_a_key_quietly(self, uvicorn_calls, tmp_path):
        result = self.invoke("--model", str(tmp_path))
        assert result.exit_code == 0 and "warning" not in result.output, result.output
        assert uvicorn_calls[0][1]["host"] == "127.0.0.1"

    @pytest.mark.parametrize("content", ["", "\n"])
    def test_an_empty_key_file_exits_with_what_to_do(self, monkeypatch, tmp_path, content):
        import uvicorn

        monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("uvicorn started"))
        path = tmp_path / "serve.key"
        path.write_text(content)
        result = self.invoke("--model", str(tmp_path), "--api-key-file", str(path))
        assert result.exit_code == 2 and "is empty" in result.output and "openssl rand" in result.output, result.output

    def test_a_missing_key_file_exits_with_what_to_do(self, uvicorn_calls, tmp_path):
        result = self.invoke("--model", str(tmp_path), "--api-key-file", str(tmp_path / "absent.key"))
        assert result.exit_code == 2 and "does not exist" in result.output, result.output
        assert not uvicorn_calls
