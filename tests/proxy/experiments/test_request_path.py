"""A running experiment on a live Warden, called with the official openai SDK: the variant's prompt
version is rendered or its model is routed, a user keeps their variant, and the row records both the
experiment and the variant; a promoted model experiment routes its model to the winner until retired."""

from __future__ import annotations

import random
import time

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from proxy.experiments.assign import CACHE_S, pick
from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import LiveWarden

ANA = Change("session:ana", "default")
ASK = {"prompt": "support", "label": "production", "variables": {"company": "Acme"}, "cache": False}


def client(live: LiveWarden) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=live.create_key(team="alpha"), max_retries=0)


@pytest.fixture
def live(warden_chdb: LiveWarden) -> LiveWarden:
    prompts = warden_chdb.services.prompts
    for text in ("You answer for {{ company }}.", "Be brief, {{ company }} agent."):
        prompts.create_version(
            "default", "support", {"template": {"messages": [{"role": "system", "content": text}]}}, ANA
        )
    prompts.set_label("default", "support", "production", 1, ANA)
    experiments = warden_chdb.services.experiments
    experiments.create(
        "default",
        "brevity",
        {
            "kind": "prompt",
            "target": "support",
            "variants": [
                {"name": "control", "weight": 50, "label": "production"},
                {"name": "brief", "weight": 50, "version": 2},
            ],
        },
        ANA,
    )
    experiments.create(
        "default",
        "tools",
        {
            "kind": "model",
            "target": "text-embed-fake",
            "sticky": "header:x-end-user",
            "variants": [
                {"name": "same", "weight": 1, "model": "text-embed-fake"},
                {"name": "other", "weight": 99, "model": "gpt-fake"},
            ],
        },
        ANA,
    )
    experiments.start("default", "brevity", ANA)
    experiments.start("default", "tools", ANA)
    return warden_chdb


HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
SYSTEM = {"control": "You answer for Acme.", "brief": "Be brief, Acme agent."}


def test_a_prompt_variant_is_rendered_sticky_per_user_and_recorded(
    live: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    sdk = client(live)
    brevity = live.services.experiments.get("default", "brevity")
    seen: dict[str, set[str]] = {}
    for user in ("u-1", "u-2", "u-3", "u-4", "u-5", "u-6") * 2:
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "Opening hours?"}],
            user=user,
            extra_body={"warden": ASK},
        )
        _, body, _ = fake_upstream.requests[-1]
        row = live.row_for(raw.headers["x-warden-request-id"])
        assert row["experiment"] == "brevity" and row["status"] == 200
        variant = row["variant"]
        assert variant == pick(brevity, user, random.Random()).name  # the hash, not a draw
        assert body["messages"][0] == {"role": "system", "content": SYSTEM[variant]}
        assert row["prompt_version"] == (1 if variant == "control" else 2)
        seen.setdefault(user, set()).add(variant)
    assert all(len(variants) == 1 for variants in seen.values())  # each user kept their variant


def test_a_pinned_version_is_left_out(live: LiveWarden, fake_upstream: FakeUpstream) -> None:
    ask = {key: value for key, value in ASK.items() if key != "label"}
    raw = client(live).chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[], extra_body={"warden": {**ask, "version": 2}}
    )
    row = live.row_for(raw.headers["x-warden-request-id"])
    assert (row["experiment"], row["variant"], row["prompt_version"]) == ("", "", 2)


def test_a_model_variant_is_routed_and_recorded(live: LiveWarden, fake_upstream: FakeUpstream) -> None:
    tools = live.services.experiments.get("default", "tools")
    # The experiment's id is random, so find a user the hash sends to the rewritten model.
    user = next(
        u for u in (f"customer-{n}" for n in range(1000)) if pick(tools, u, random.Random()).name == "other"
    )
    raw = client(live).chat.completions.with_raw_response.create(
        model="text-embed-fake",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-end-user": user},
    )
    _, body, _ = fake_upstream.requests[-1]
    row = live.row_for(raw.headers["x-warden-request-id"])
    assert (row["experiment"], row["variant"]) == ("tools", "other")
    assert body["model"] == row["model"] == "gpt-fake"


def wait_for_model(sdk: openai.OpenAI, upstream: FakeUpstream, model: str, expected: str, user: str) -> str:
    """Ask for `model` as `user` until the upstream receives `expected`: a promote or a retire reaches
    a worker when its experiments cache next refreshes (`CACHE_S`). Returns the last request id."""
    deadline = time.monotonic() + CACHE_S + 3
    while True:
        raw = sdk.chat.completions.with_raw_response.create(
            model=model, messages=HI, extra_headers={"x-end-user": user}
        )
        if upstream.requests[-1][1]["model"] == expected:
            return raw.headers["x-warden-request-id"]
        assert time.monotonic() < deadline, f"still not routed to {expected} after {CACHE_S + 3} s"
        time.sleep(0.2)


def test_a_promoted_model_routes_every_request_to_the_winner_until_retired(
    live: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    sdk = client(live)
    experiments = live.services.experiments
    tools = experiments.get("default", "tools")
    # A user the split sends to `same`: after the promotion they get the winner all the same.
    user = next(
        u for u in (f"customer-{n}" for n in range(1000)) if pick(tools, u, random.Random()).name == "same"
    )
    sdk.chat.completions.create(model="text-embed-fake", messages=HI, extra_headers={"x-end-user": user})
    experiments.promote("default", "tools", "other", ANA)
    wait_for_model(sdk, fake_upstream, "text-embed-fake", "gpt-fake", user)
    for headers in ({"x-end-user": user}, {}):
        raw = sdk.chat.completions.with_raw_response.create(
            model="text-embed-fake", messages=HI, extra_headers=headers
        )
        _, body, _ = fake_upstream.requests[-1]
        row = live.row_for(raw.headers["x-warden-request-id"])
        assert body["model"] == row["model"] == "gpt-fake"
        assert (row["experiment"], row["variant"]) == ("tools", "other")  # still counted on the dashboard

    # A request in the prompt experiment gets the promoted model too; its row records the prompt's.
    raw = sdk.chat.completions.with_raw_response.create(
        model="text-embed-fake", messages=HI, user="u-1", extra_body={"warden": ASK}
    )
    row = live.row_for(raw.headers["x-warden-request-id"])
    assert fake_upstream.requests[-1][1]["model"] == row["model"] == "gpt-fake"
    assert row["experiment"] == "brevity"

    # A key not allowed the winner's model is refused it, as any other model.
    narrow = openai.OpenAI(
        base_url=live.base_url,
        api_key=live.create_key(team="alpha", models=["text-embed-fake"]),
        max_retries=0,
    )
    with pytest.raises(openai.PermissionDeniedError):
        narrow.chat.completions.create(model="text-embed-fake", messages=HI)

    experiments.retire("default", "tools", ANA)
    request_id = wait_for_model(sdk, fake_upstream, "text-embed-fake", "text-embed-fake", user)
    row = live.row_for(request_id)
    assert (row["model"], row["experiment"], row["variant"]) == ("text-embed-fake", "", "")
    assert narrow.chat.completions.create(model="text-embed-fake", messages=HI).model
    narrow.close()
