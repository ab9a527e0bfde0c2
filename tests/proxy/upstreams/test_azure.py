"""`type: azure_openai`: deployment URLs with api-version, the v1 Responses URL with the deployment as
`model`, and the key in `api-key`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.settings import ConfigError, UpstreamSettings, load_settings
from proxy.upstreams.azure import AzureOpenAIUpstream
from proxy.upstreams.fake import FakeUpstream


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> Iterator[AzureOpenAIUpstream]:
    settings = UpstreamSettings(
        name="azure",
        type="azure_openai",
        base_url=fake_upstream.root_url,  # the fake answers by path suffix, whatever comes before
        api_key="azure-key",
        models=("gpt-4o", "text-embedding-3-small"),
        deployments={"gpt-4o": "prod-4o"},
    )
    up = AzureOpenAIUpstream(settings)
    yield up
    up.close()


def body(model: str, **extra: object) -> bytes:
    return json.dumps({"model": model, **extra}).encode()


CHAT = {"messages": [{"role": "user", "content": "hi azure"}]}


@pytest.mark.parametrize(
    ("route", "model", "path", "extra"),
    [
        ("chat/completions", "gpt-4o", "/openai/deployments/prod-4o/chat/completions", CHAT),
        ("completions", "gpt-4o", "/openai/deployments/prod-4o/completions", {"prompt": "p"}),
        (
            "embeddings",
            "text-embedding-3-small",  # not in `deployments`: its own name is the deployment
            "/openai/deployments/text-embedding-3-small/embeddings",
            {"input": "e"},
        ),
    ],
)
def test_deployment_routes(
    upstream: AzureOpenAIUpstream,
    fake_upstream: FakeUpstream,
    route: str,
    model: str,
    path: str,
    extra: dict[str, object],
) -> None:
    reply = upstream.complete(route, body(model, **extra), "req-1")
    assert reply.status == 200
    sent_path, sent, headers = fake_upstream.requests[-1]
    assert sent_path == f"{path}?api-version=2024-10-21"
    assert sent == {"model": model, **extra}, "the body is sent as it came"
    assert headers["api-key"] == "azure-key" and "authorization" not in headers


def test_responses_go_to_the_v1_api_with_the_deployment_as_model(
    upstream: AzureOpenAIUpstream, fake_upstream: FakeUpstream
) -> None:
    reply = upstream.complete("responses", body("gpt-4o", input="ünïcode stays", store=False), "req-2")
    assert reply.status == 200 and json.loads(reply.body)["model"] == "prod-4o"
    path, sent, headers = fake_upstream.requests[-1]
    assert path == "/openai/v1/responses" and "api-version" not in path
    assert sent == {"model": "prod-4o", "input": "ünïcode stays", "store": False}
    assert headers["api-key"] == "azure-key"
    stream = upstream.stream("responses", body("gpt-4o", input="streamed", stream=True), "req-3")
    try:
        raw = stream.read_all()
    finally:
        stream.close()
    assert b"event: response.completed" in raw
    assert fake_upstream.requests[-1][1]["model"] == "prod-4o"


def test_stream_on_a_deployment_route(upstream: AzureOpenAIUpstream, fake_upstream: FakeUpstream) -> None:
    stream = upstream.stream("chat/completions", body("gpt-4o", stream=True, **CHAT), "req-4")
    try:
        assert stream.read_all().endswith(b"data: [DONE]\n\n")
    finally:
        stream.close()
    assert fake_upstream.requests[-1][0].startswith("/openai/deployments/prod-4o/chat/completions?")


def test_a_body_without_a_model_goes_to_the_v1_api_untouched(
    upstream: AzureOpenAIUpstream, fake_upstream: FakeUpstream
) -> None:
    upstream.complete("chat/completions", json.dumps(CHAT).encode(), "req-5")
    path, sent, _ = fake_upstream.requests[-1]
    assert path == "/openai/v1/chat/completions" and sent == CHAT


def test_api_version_and_apis(fake_upstream: FakeUpstream) -> None:
    settings = UpstreamSettings(
        name="a",
        type="azure_openai",
        base_url=fake_upstream.root_url,
        models=("m",),
        api_version="2025-04-01-preview",
        apis=("chat.completions",),
    )
    up = AzureOpenAIUpstream(settings)
    up.complete("chat/completions", body("m", **CHAT), "r")
    up.close()
    assert (
        fake_upstream.requests[-1][0]
        == "/openai/deployments/m/chat/completions?api-version=2025-04-01-preview"
    )
    assert up.apis == frozenset({"chat.completions"})
    assert "api-key" not in fake_upstream.requests[-1][2], "no key configured, none sent"


CONFIG = (
    "upstreams:\n  - name: azure\n    type: azure_openai\n    base_url: https://res.openai.azure.com\n"
    "    models: [gpt-4o, gpt-4o-mini]\n"
)


def test_settings(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(CONFIG + "    deployments:\n      gpt-4o: prod-4o\n")
    (up,) = load_settings(tmp_path / "w.yaml", environ={}).upstreams
    assert (up.api_version, dict(up.deployments)) == ("2024-10-21", {"gpt-4o": "prod-4o"})
    # Unquoted, YAML reads the version as a date: it still means the version.
    (tmp_path / "w.yaml").write_text(CONFIG + "    api_version: 2024-06-01\n")
    assert load_settings(tmp_path / "w.yaml", environ={}).upstreams[0].api_version == "2024-06-01"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "    deployments:\n      gpt-5: d\n",
            "upstreams[0].deployments.gpt-5: 'gpt-5' is not in this upstream's models",
        ),
        (
            "    deployments: [a, b]\n",
            "w.yaml:6: upstreams[0].deployments: must be a mapping of names to names",
        ),
        (
            "    deployments:\n      gpt-4o: ''\n",
            "upstreams[0].deployments.gpt-4o: must map a name to a non-empty string",
        ),
        (
            "    deployments:\n      gpt-4o: 3\n",
            "upstreams[0].deployments.gpt-4o: must map a name to a non-empty string",
        ),
        ("    api_version: latest\n", "w.yaml:6: upstreams[0].api_version: must look like 2024-10-21"),
        (
            "    anthropic_version: 2023-06-01\n",
            "upstreams[0].anthropic_version: applies to type anthropic only",
        ),
    ],
)
def test_settings_errors(tmp_path: Path, extra: str, expected: str) -> None:
    (tmp_path / "w.yaml").write_text(CONFIG + extra)
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "w.yaml", environ={})
    assert expected in str(caught.value)


def test_base_url_is_the_resource_root(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(CONFIG.replace("azure.com", "azure.com/openai/v1"))
    with pytest.raises(ConfigError, match=r"base_url: must be the resource root"):
        load_settings(tmp_path / "w.yaml", environ={})


def test_deployments_only_on_azure(tmp_path: Path) -> None:
    text = (
        "upstreams:\n  - {name: o, type: openai, base_url: 'http://x/v1', models: [m], deployments: {m: d}}\n"
    )
    (tmp_path / "w.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"deployments: applies to type azure_openai only, not openai"):
        load_settings(tmp_path / "w.yaml", environ={})
