"""The prompt registry on SQLite and PostgreSQL: immutable numbered versions, labels that move, the
approval rule, the audit trail, and diffs."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from proxy.identity import audit
from proxy.identity.directory import Change, IdentityError
from proxy.prompts.store import PromptStore, describe

ANA = Change("session:ana", "default", "127.0.0.1")
BOB = Change("session:bob", "default", "127.0.0.1")
ANA_CLI = Change("cli:ana", "default", "local")

FIRST = {
    "template": {"messages": [{"role": "system", "content": "Be brief about {{ topic }}."}]},
    "model": "gpt-fake",
    "params": {"temperature": 0.2},
}
SECOND = {
    "template": {"messages": [{"role": "system", "content": "Be very brief about {{ topic }}."}]},
    "variables": ["topic"],
    "model": "gpt-fake",
    "params": {"temperature": 0.0},
}


def test_versions_are_numbered_and_immutable(db: sessionmaker[Session]) -> None:
    store = PromptStore(db)
    one = store.create_version("default", "support", FIRST, ANA)
    two = store.create_version("default", "support", SECOND, BOB)
    assert (one.number, two.number) == (1, 2)
    assert one.variables == ("topic",) and one.author == "session:ana"
    again = store.get("default", "support", number=1)
    assert describe(again) == describe(one) and again.etag == one.etag != two.etag
    assert store.get("default", "support").number == 2  # no label, no number: the newest
    (summary,) = store.summaries("default")
    assert (summary.name, summary.versions) == ("support", 2)
    assert store.summaries("acme") == []
    with pytest.raises(IdentityError, match="no prompt 'support'"):
        store.get("acme", "support")  # another tenant's prompt is not there


def test_labels_move_between_versions(db: sessionmaker[Session]) -> None:
    store = PromptStore(db)
    store.create_version("default", "support", FIRST, ANA)
    store.create_version("default", "support", SECOND, ANA)
    assert store.set_label("default", "support", "staging", 1, ANA).labels == ("staging",)
    assert store.get("default", "support", label="staging").number == 1
    store.set_label("default", "support", "staging", 2, ANA)
    assert store.get("default", "support", label="staging").number == 2
    assert store.get("default", "support", number=1).labels == ()
    assert store.summaries("default")[0].labels == {"staging": 2}
    with pytest.raises(IdentityError, match="has no label 'production'") as missing:
        store.get("default", "support", label="production")
    assert missing.value.status == 404
    with pytest.raises(IdentityError, match="has no version 7"):
        store.set_label("default", "support", "staging", 7, ANA)
    with pytest.raises(IdentityError, match="a label is"):
        store.set_label("default", "support", "Bad Label", 1, ANA)


def test_production_needs_another_persons_approval(db: sessionmaker[Session]) -> None:
    store = PromptStore(db, require_approval=("production",))
    store.create_version("default", "support", FIRST, ANA)
    with pytest.raises(IdentityError, match="approved by someone other than its author") as unapproved:
        store.set_label("default", "support", "production", 1, ANA)
    assert unapproved.value.status == 409
    for self_approval in (ANA, ANA_CLI):  # the same person through another door
        with pytest.raises(IdentityError, match="someone else approves it") as refused:
            store.approve("default", "support", 1, self_approval)
        assert refused.value.status == 403
    store.set_label("default", "support", "staging", 1, ANA)  # labels outside the rule need nothing
    assert store.approve("default", "support", 1, BOB).approved_by == ("session:bob",)
    assert store.set_label("default", "support", "production", 1, ANA).labels == ("production", "staging")


def test_every_change_is_audited_and_the_chain_verifies(db: sessionmaker[Session]) -> None:
    store = PromptStore(db, require_approval=("production",))
    store.create_version("default", "support", FIRST, ANA)
    store.approve("default", "support", 1, BOB)
    store.set_label("default", "support", "production", 1, BOB)
    store.create_version("default", "support", SECOND, ANA)
    store.approve("default", "support", 2, BOB)
    store.set_label("default", "support", "production", 2, BOB)
    entries = audit.entries(db, tenant="default")
    assert [(e.action, e.target) for e in reversed(entries)] == [
        ("prompt.version", "prompt:support@1"),
        ("prompt.approve", "prompt:support@1"),
        ("prompt.label", "prompt:support#production"),
        ("prompt.version", "prompt:support@2"),
        ("prompt.approve", "prompt:support@2"),
        ("prompt.label", "prompt:support#production"),
    ]
    assert entries[0].before == {"version": 1} and entries[0].after == {"version": 2}
    assert entries[-1].after["template"] == FIRST["template"] and entries[-1].actor == "session:ana"
    assert audit.verify(db).ok


def test_a_diff_shows_the_template_and_the_settings(db: sessionmaker[Session]) -> None:
    store = PromptStore(db)
    store.create_version("default", "support", FIRST, ANA)
    store.create_version("default", "support", SECOND, ANA)
    text = store.diff("default", "support", 1, 2)
    assert "--- support@1/template\n+++ support@2/template\n" in text
    assert "-Be brief about {{ topic }}.\n+Be very brief about {{ topic }}.\n" in text
    assert '-    "temperature": 0.2\n+    "temperature": 0.0\n' in text
    assert store.diff("default", "support", 1, 1) == ""


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"template": {"text": "{{ a }}"}, "variables": ["b"]}, "undeclared variables: a"),
        ({"template": {"text": "{% if %}"}}, "syntax error"),
        ({"template": {"text": "x"}, "params": [1]}, "'params' must be a JSON object"),
        ({"template": {"text": "x"}, "model": ""}, "'model' must be"),
        ({"template": {"text": "x"}, "variables": "a"}, "'variables' must be a list"),
    ],
)
def test_bad_versions_are_refused_and_nothing_is_written(
    db: sessionmaker[Session], fields: dict[str, object], message: str
) -> None:
    store = PromptStore(db)
    with pytest.raises(IdentityError, match=message):
        store.create_version("default", "support", fields, ANA)
    assert store.summaries("default") == [] and audit.entries(db) == []
