"""What each upstream type says it speaks (`apis`), and which class the app builds for each type."""

from __future__ import annotations

from typing import Any

import pytest

from app import HTTP_UPSTREAMS, make_upstream
from proxy.settings import UPSTREAM_TYPES, UpstreamSettings
from proxy.upstreams.anthropic import AnthropicUpstream
from proxy.upstreams.azure import AzureOpenAIUpstream
from proxy.upstreams.http import HttpUpstream
from proxy.upstreams.local.upstream import OnnxUpstream

OPENAI = {"chat.completions", "completions", "embeddings", "responses"}


@pytest.mark.parametrize(
    ("kind", "cls", "apis"),
    [
        ("openai", HttpUpstream, OPENAI),
        ("anthropic", AnthropicUpstream, {"messages"}),
        ("azure_openai", AzureOpenAIUpstream, OPENAI),
    ],
)
def test_each_type_builds_its_class_with_its_default_apis(kind: str, cls: type, apis: set[str]) -> None:
    up = make_upstream(
        UpstreamSettings(name="u", type=kind, base_url="http://127.0.0.1:9/v1", models=("m",)), {}
    )
    try:
        assert type(up) is cls and up.apis == frozenset(apis)
    finally:
        up.close()


def test_every_type_is_built() -> None:
    assert set(HTTP_UPSTREAMS) | {"onnx"} == set(UPSTREAM_TYPES)


def test_the_setting_overrides_the_default() -> None:
    settings = UpstreamSettings(
        name="vllm",
        type="openai",
        base_url="http://127.0.0.1:9/v1",
        models=("m",),
        apis=("chat.completions",),
    )
    up = HttpUpstream(settings)
    up.close()
    assert up.apis == frozenset({"chat.completions"})


def test_a_local_model_speaks_chat_and_completions_only() -> None:
    engine: Any = object()  # never used: nothing is generated here
    assert OnnxUpstream("local", engine, "m").apis == frozenset({"chat.completions", "completions"})
    assert OnnxUpstream("local", engine, "m", apis=frozenset({"completions"})).apis == {"completions"}
    with pytest.raises(ValueError, match="cannot serve"):
        OnnxUpstream("local", engine, "m", apis=frozenset({"messages"}))
