"""The local model behind a live Warden: the official SDK, policies, logging, and the demo default."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import openai
import pytest

from proxy.settings import DEMO_MARKER, load_settings
from proxy.upstreams.local.engine import OnnxEngine
from proxy.upstreams.local.sampling import SamplingParams
from tests.support import ADMIN_TOKEN, LiveWarden, make_settings, write_config


@pytest.fixture
def local(tmp_path: Path, tiny_model: Path) -> Iterator[LiveWarden]:
    settings = make_settings(
        tmp_path,
        "http://127.0.0.1:9/v1",
        auth={"admin_token": ADMIN_TOKEN},
        upstreams=[
            {"name": "tiny", "type": "onnx", "path": str(tiny_model), "models": ["tiny"], "provider": "cpu",
             "max_batch": 4, "max_tokens": 24}
        ],
    )  # fmt: skip
    live = LiveWarden(settings)
    yield live
    live.stop()


def test_sdk_json_and_stream_through_warden(local: LiveWarden, engine: OnnxEngine) -> None:
    client = openai.OpenAI(base_url=local.base_url, api_key=local.create_key(), max_retries=0)
    messages = [{"role": "user", "content": "def hello world"}]
    expected = engine.generate(
        engine.chat_prompt(messages), SamplingParams(temperature=0, max_tokens=24)
    ).text()
    answer = client.chat.completions.create(model="tiny", messages=messages, temperature=0)
    assert answer.choices[0].message.content == expected
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    streamed = client.chat.completions.create(model="tiny", messages=messages, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected
    rows = local.rows_dicts("SELECT upstream, status, completion_tokens, streamed FROM requests ORDER BY ts")
    assert [(r["upstream"], r["status"], r["streamed"]) for r in rows] == [
        ("tiny", 200, False),
        ("tiny", 200, True),
    ]
    assert all(r["completion_tokens"] > 0 for r in rows)


def test_a_self_hosted_model_costs_nothing_and_the_overview_says_so(local: LiveWarden) -> None:
    """Its spend is $0 because it runs here, which is known, not "unknown price"."""
    client = openai.OpenAI(base_url=local.base_url, api_key=local.create_key(), max_retries=0)
    for _ in range(3):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert [r["cost_micro_usd"] for r in local.rows_dicts("SELECT cost_micro_usd FROM requests")] == [0] * 3
    assert [r["self_hosted"] for r in local.rows_dicts("SELECT self_hosted FROM requests")] == [True] * 3
    admin = httpx.Client(
        base_url=local.base_url.removesuffix("/v1"), headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    overview = admin.get("/dashboards/overview.json").json()
    assert (overview["spend_usd"], overview["unpriced_requests"], overview["self_hosted_requests"]) == (
        0,
        0,
        3,
    )
    page = admin.get("/dashboards/overview").text
    assert "3 requests on self-hosted models" in page and "unknown price" not in page
    cost = admin.get("/dashboards/cost.json").json()
    assert (cost["unpriced_requests"], cost["self_hosted_requests"]) == (0, 3)


def test_a_price_in_the_config_overrides_self_hosting(tmp_path: Path, tiny_model: Path) -> None:
    settings = make_settings(
        tmp_path,
        None,
        auth={"admin_token": ADMIN_TOKEN},
        prices={"tiny": {"input": 2.0, "output": 3.0}},
        upstreams=[
            {"name": "tiny", "type": "onnx", "path": str(tiny_model), "models": ["tiny"], "provider": "cpu"}
        ],
    )
    live = LiveWarden(settings)
    try:
        client = openai.OpenAI(base_url=live.base_url, api_key=live.create_key(), max_retries=0)
        answer = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert answer.usage is not None
        (row,) = live.rows_dicts("SELECT cost_micro_usd, self_hosted FROM requests")
        expected = 2 * answer.usage.prompt_tokens + 3 * answer.usage.completion_tokens
        assert row == {"cost_micro_usd": expected, "self_hosted": True}
        admin = httpx.Client(
            base_url=live.base_url.removesuffix("/v1"), headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        overview = admin.get("/dashboards/overview.json").json()
        assert (
            overview["spend_usd"] == pytest.approx(expected / 1e6) and overview["self_hosted_requests"] == 0
        )
    finally:
        live.stop()


def test_policies_apply_to_the_local_model(local: LiveWarden) -> None:
    client = openai.OpenAI(base_url=local.base_url, api_key=local.create_key(), max_retries=0)
    with pytest.raises(openai.BadRequestError, match="blocked by policy default@2"):
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE"}]
        )
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "mail ann@example.org"}], max_tokens=4
    )
    assert raw.headers["x-warden-policy-decision"] == "mask"


def test_embedded_default_serves_the_demo_folder(tmp_path: Path, tiny_model: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(tiny_model, demo, ignore=shutil.ignore_patterns("hf"))
    config = write_config(tmp_path, {"demo": {"model_dir": str(demo)}})
    assert load_settings(config, environ={}).upstreams == ()  # not prepared: nothing routed
    (demo / DEMO_MARKER).write_text("1\n")
    (up,) = load_settings(config, environ={}).upstreams
    assert (up.type, up.models, up.path) == ("onnx", ("local", "smollm2-135m-instruct"), str(demo.resolve()))
    assert up.self_hosted, "the demo model costs nothing per token"
    # Sane sampling for a newcomer's first question: near-greedy and short, unless the request says more.
    assert (up.temperature, up.max_tokens) == (0.2, 128)
    configured = write_config(tmp_path, {"demo": {"model_dir": str(demo)}, "upstreams": []})
    assert load_settings(configured, environ={}).upstreams == ()  # an explicit list wins


def test_onnx_upstream_settings_are_checked(tmp_path: Path, tiny_model: Path) -> None:
    from proxy.settings import ConfigError

    base = {"name": "m", "type": "onnx", "models": ["m"]}
    for extra, message in (
        ({}, "needs 'path'"),
        ({"path": str(tmp_path)}, "no model.onnx"),
        ({"path": str(tiny_model), "provider": "tpu"}, "must be auto, cuda or cpu"),
        ({"path": str(tiny_model), "top_p": 0}, "must be in (0, 1]"),
    ):
        with pytest.raises(
            ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
        ):
            load_settings(write_config(tmp_path, {"upstreams": [{**base, **extra}]}), environ={})


def test_only_the_gpu_onnxruntime_is_installed() -> None:
    # onnxruntime and onnxruntime-gpu share a folder: with both, whichever was installed last wins.
    assert metadata.version("onnxruntime-gpu")
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("onnxruntime")
