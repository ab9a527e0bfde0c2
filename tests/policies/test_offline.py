"""Offline by construction: from app start through full requests with pii and toxicity on, Warden
resolves no host name (every address it looks up is a loopback IP literal)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.upstreams.fake import FakeUpstream
from tests.support import LiveWarden, make_settings, write_config

POLICY = """apiVersion: warden/v1
metadata: {name: everything, version: '1'}
rules:
  input:
    - {id: pii, scanner: pii, action: mask}
    - {id: secrets, scanner: secrets, action: block}
    - {id: tox, scanner: toxicity, action: flag, params: {threshold: 0.0}}
  output:
    - {id: pii-out, scanner: pii, action: mask}
    - {id: tox-out, scanner: toxicity, action: flag, params: {threshold: 0.0}}
"""


def test_no_name_lookups_from_start_through_a_request(
    tmp_path: Path,
    fake_upstream: FakeUpstream,
    toxicity_checkpoint: Path,
    spacy_blank: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[Any] = []
    real = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    policy = write_config(tmp_path, {}).with_name("everything.yaml")
    policy.write_text(POLICY)
    settings = make_settings(
        tmp_path,
        fake_upstream.base_url,
        policies={
            "files": [str(policy)],
            "pii_spacy_model": str(spacy_blank),
            "toxicity_model": str(toxicity_checkpoint),
        },
    )
    live = LiveWarden(settings)
    try:
        key = live.create_key("alpha")
        headers = {"authorization": f"Bearer {key}"}
        body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "mail me at a@example.org"}]}
        for stream in (False, True):
            reply = httpx.post(
                f"{live.base_url}/chat/completions", json={**body, "stream": stream}, headers=headers
            )
            assert reply.status_code == 200
            assert "a@example.org" in reply.text
        row = live.rows_dicts("SELECT finding_kind FROM requests ORDER BY ts")[0]
        assert "toxicity:toxicity" in row["finding_kind"]  # the toxicity model really ran
    finally:
        live.stop()
    assert looked_up, "the spy saw no connection at all: it is not in the path"
    for host in looked_up:
        assert ipaddress.ip_address(host).is_loopback, f"a name was resolved: {host!r}"
