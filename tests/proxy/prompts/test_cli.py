"""`warden prompts`: create from a file or options, list, show, diff, label, approve, render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli.main import main as cli
from proxy.db import make_engine, make_sessions
from proxy.identity import audit
from proxy.migrate import upgrade_sql
from tests.support import write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade_sql(url)
    return write_config(
        tmp_path, {"storage": {"database_url": url}, "prompts": {"require_approval": ["production"]}}
    )


def run(config: Path, *args: str, user: str = "ana") -> str:
    # getpass names the operator from these variables: the CLI acts as `cli:<user>`.
    env = {"LOGNAME": user, "USER": user, "LNAME": user, "USERNAME": user}
    result = CliRunner().invoke(cli, ["prompts", args[0], "--config", str(config), *args[1:]], env=env)
    if result.exit_code != 0:
        raise AssertionError(result.output)
    return result.output


def test_the_whole_cycle(config: Path, tmp_path: Path) -> None:
    source = tmp_path / "support.yaml"
    source.write_text(
        "messages:\n"
        "  - role: system\n    content: 'You answer for {{ company }}.'\n"
        "  - role: user\n    content: '{{ question }}'\n"
        "model: gpt-fake\nparams: {temperature: 0.2}\n"
    )
    first = json.loads(run(config, "create", "support", "--file", str(source)))
    assert (first["version"], first["variables"], first["author"]) == (1, ["company", "question"], "cli:ana")
    second = json.loads(
        run(
            config,
            "create",
            "support",
            "--message",
            "system=You answer briefly for {{ company }}.",
            "--message",
            "user={{ question }}",
            "--param",
            "temperature=0",
        )
    )
    assert second["version"] == 2 and second["params"] == {"temperature": 0}
    diff = run(config, "diff", "support", "1", "2")
    assert "-You answer for {{ company }}.\n+You answer briefly for {{ company }}.\n" in diff
    assert '-  "model": "gpt-fake",\n+  "model": null,\n' in diff

    refused = CliRunner().invoke(
        cli,
        ["prompts", "approve", "--config", str(config), "support", "2"],
        env={"LOGNAME": "ana", "USER": "ana"},
    )
    assert refused.exit_code == 1 and "someone else approves it" in refused.output
    unapproved = CliRunner().invoke(
        cli,
        ["prompts", "label", "--config", str(config), "support", "production", "2"],
        env={"LOGNAME": "ana"},
    )
    assert unapproved.exit_code == 1 and "approved by someone other than its author" in unapproved.output
    assert run(config, "approve", "support", "2", user="bob") == "support: version 2 approved\n"
    assert run(config, "label", "support", "production", "2") == "support: production -> version 2\n"
    run(config, "label", "support", "staging", "1")

    assert run(config, "list") == "support  versions=2  production=2 staging=1\n"
    assert json.loads(run(config, "list", "--json")) == {
        "prompt": "support",
        "versions": 2,
        "labels": {"production": 2, "staging": 1},
    }
    shown = json.loads(run(config, "show", "support", "--label", "production"))
    assert shown["approved_by"] == ["cli:bob"] and shown["labels"] == ["production"]
    rendered = json.loads(
        run(
            config,
            "render",
            "support",
            "--label",
            "staging",
            "--var",
            "company=Acme",
            "--var",
            "question=Hours?",
        )
    )
    assert rendered == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "Hours?"},
    ]
    db = make_sessions(make_engine(f"sqlite:///{tmp_path / 'w.db'}"))
    assert audit.verify(db).ok and len(audit.entries(db)) == 5


def test_errors_are_named(config: Path) -> None:
    run(config, "create", "greeting", "--text", "Hello {{ name }}")
    missing = CliRunner().invoke(cli, ["prompts", "render", "--config", str(config), "greeting"])
    assert missing.exit_code == 1 and "missing variable: name" in missing.output
    unknown = CliRunner().invoke(cli, ["prompts", "show", "--config", str(config), "nope"])
    assert unknown.exit_code == 1 and "no prompt 'nope'" in unknown.output
    no_label = CliRunner().invoke(
        cli, ["prompts", "show", "--config", str(config), "greeting", "--label", "prod"]
    )
    assert no_label.exit_code == 1 and "has no label 'prod'" in no_label.output
    twice = CliRunner().invoke(
        cli, ["prompts", "create", "--config", str(config), "greeting", "--text", "a", "--message", "user=b"]
    )
    assert twice.exit_code == 2 and "give the template once" in twice.output
    unsafe = CliRunner().invoke(
        cli, ["prompts", "create", "--config", str(config), "bad", "--text", "{{ ''.__class__.__mro__ }}"]
    )
    assert unsafe.exit_code == 0  # written: the sandbox refuses it when rendered
    refused = CliRunner().invoke(cli, ["prompts", "render", "--config", str(config), "bad"])
    assert refused.exit_code == 1 and "unsafe" in refused.output


def test_a_json_file_with_declared_variables(config: Path, tmp_path: Path) -> None:
    source = tmp_path / "p.json"
    source.write_text(json.dumps({"text": "Hi {{ who }}", "variables": ["who", "unused"], "model": "m"}))
    made = json.loads(run(config, "create", "hello", "--file", str(source)))
    assert made["variables"] == ["who", "unused"] and made["template"] == {"text": "Hi {{ who }}"}
    missing = CliRunner().invoke(
        cli, ["prompts", "render", "--config", str(config), "hello", "--var", "who=x"]
    )
    assert missing.exit_code == 1 and "missing variable: unused" in missing.output
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps({"who": "Ana", "unused": 1}))
    assert json.loads(run(config, "render", "hello", "--vars-file", str(vars_file))) == [
        {"role": "user", "content": "Hi Ana"}
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("txt: nope\n")
    refused = CliRunner().invoke(cli, ["prompts", "create", "--config", str(config), "x", "--file", str(bad)])
    assert refused.exit_code == 1 and "unknown key 'txt'" in refused.output
