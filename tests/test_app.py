"""The application factory: what the app serves besides its blueprints (nothing from the cwd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app
from tests.support import make_settings


def test_nothing_is_served_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask's default static route served `./static/` and looked up `./templates/` first."""
    cwd = tmp_path / "cwd"
    (cwd / "static").mkdir(parents=True)
    (cwd / "static" / "warden.yaml").write_text("api_key: sk-secret\n")
    (cwd / "pyproject.toml").write_text("[project]\n")
    (cwd / "templates").mkdir()
    (cwd / "templates" / "login.html").write_text("planted template")
    monkeypatch.chdir(cwd)
    app = create_app(make_settings(tmp_path, None))
    try:
        client = app.test_client()
        for path in ("/static/warden.yaml", "/static/pyproject.toml", "/static/../pyproject.toml"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json is not None and response.json["error"]["code"] == "not_found"
        assert "static" not in app.view_functions
        login = client.get("/login")
        assert login.status_code == 200 and b"planted template" not in login.data
    finally:
        app.extensions["warden"].close()


def test_paths_with_doubled_slashes_are_not_redirected(tmp_path: Path) -> None:
    """Found by the fuzzer: Werkzeug merged the slashes of `%2F%2F` in a path value and answered with a
    308 to another object, at an absolute URL built from the Host header (empty for a duplicated one)."""
    app = create_app(make_settings(tmp_path, None, auth={"admin_token": "t" * 32}))
    try:
        client = app.test_client()
        admin = {"authorization": "Bearer " + "t" * 32}
        for path in ("/api/users/%2F%2Fevil.example%2F/roles", "//api/teams", "/v1//models"):
            response = client.post(path, headers=admin, json={"role": "viewer"})
            assert response.status_code in (401, 404, 405), (path, response.status_code)
            assert "location" not in response.headers
    finally:
        app.extensions["warden"].close()
