"""A chat request names a prompt with `extra_body={"warden": {...}}`, from the official openai SDK: its
messages are rendered before the client's, the field never reaches the upstream, the row records the
prompt and version, and bad references are errors that name them."""

from __future__ import annotations

import openai
import pytest

from proxy.identity.directory import Change
from proxy.upstreams.fake import FakeUpstream
from tests.support import LiveWarden

ANA = Change("session:ana", "default")


def client(live: LiveWarden) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=live.create_key(team="alpha"), max_retries=0)


@pytest.fixture
def live(warden_chdb: LiveWarden) -> LiveWarden:
    store = warden_chdb.services.prompts
    store.create_version(
        "default",
        "support",
        {
            "template": {"messages": [{"role": "system", "content": "You answer for {{ company }}."}]},
            "model": "gpt-fake",
            "params": {"temperature": 0.3},
        },
        ANA,
    )
    store.create_version(
        "default",
        "support",
        {"template": {"messages": [{"role": "system", "content": "Be brief, {{ company }} agent."}]}},
        ANA,
    )
    store.set_label("default", "support", "production", 1, ANA)
    store.create_version("default", "unsafe", {"template": {"text": "{{ company.__class__.__mro__ }}"}}, ANA)
    return warden_chdb


def test_the_prompt_is_rendered_before_the_clients_messages(
    live: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    raw = client(live).chat.completions.with_raw_response.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": "Opening hours?"}],
        extra_body={"warden": {"prompt": "support", "label": "production", "variables": {"company": "Acme"}}},
    )
    assert raw.parse().choices[0].message.content
    _, body, _ = fake_upstream.requests[-1]
    assert "warden" not in body
    assert body["messages"] == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "Opening hours?"},
    ]
    assert body["temperature"] == 0.3  # the version's parameter, the client having sent none
    row = live.row_for(raw.headers["x-warden-request-id"])
    assert (row["prompt_name"], row["prompt_version"], row["status"]) == ("support", 1, 200)


def test_a_version_by_number_and_the_model_from_the_prompt(
    live: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    client(live).chat.completions.create(
        model="gpt-fake",
        messages=[],
        temperature=1.0,
        extra_body={
            "warden": {"prompt": "support", "version": 2, "variables": {"company": "Acme"}, "cache": False}
        },
    )
    _, body, _ = fake_upstream.requests[-1]
    assert body["messages"] == [{"role": "system", "content": "Be brief, Acme agent."}]
    assert body["temperature"] == 1.0 and "warden" not in body


@pytest.mark.parametrize(
    ("warden", "status", "named"),
    [
        ({"prompt": "nope", "variables": {}}, 404, "no prompt 'nope'"),
        ({"prompt": "support", "label": "canary"}, 404, "has no label 'canary'"),
        ({"prompt": "support", "version": 9}, 404, "has no version 9"),
        ({"prompt": "support", "label": "production"}, 400, "missing variable: company"),
        ({"prompt": "unsafe", "variables": {"company": "x"}}, 400, "unsafe"),
        ({"prompt": "support", "label": "production", "version": 1}, 400, "not both"),
    ],
)
def test_bad_references_are_named(
    live: LiveWarden, warden: dict[str, object], status: int, named: str
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client(live).chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "hi"}], extra_body={"warden": warden}
        )
    assert caught.value.status_code == status
    error = caught.value.body
    assert isinstance(error, dict) and named in error["message"]
    assert error["param"].startswith("warden.")


def test_a_client_that_sets_only_headers_names_the_prompt_there(
    live: LiveWarden, fake_upstream: FakeUpstream
) -> None:
    headers = {
        "x-warden-prompt": "support",
        "x-warden-prompt-label": "production",
        "x-warden-prompt-variables": '{"company": "Acme"}',
    }
    raw = client(live).chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": "Hi"}], extra_headers=headers
    )
    _, body, sent = fake_upstream.requests[-1]
    assert body["messages"][0] == {"role": "system", "content": "You answer for Acme."}
    assert not any(name.lower().startswith("x-warden") for name in sent)  # nothing of it goes upstream
    assert live.row_for(raw.headers["x-warden-request-id"])["prompt_version"] == 1
    with pytest.raises(openai.BadRequestError, match="x-warden-prompt-variables"):
        client(live).chat.completions.create(
            model="gpt-fake",
            messages=[],
            extra_headers={"x-warden-prompt": "support", "x-warden-prompt-variables": "{not json"},
        )
    with pytest.raises(openai.BadRequestError, match="x-warden-prompt-version"):
        client(live).chat.completions.create(
            model="gpt-fake",
            messages=[],
            extra_headers={"x-warden-prompt": "support", "x-warden-prompt-version": "2b"},
        )
    with pytest.raises(openai.NotFoundError, match="nope"):
        client(live).chat.completions.create(
            model="gpt-fake", messages=[], extra_headers={"x-warden-prompt": "nope"}
        )
