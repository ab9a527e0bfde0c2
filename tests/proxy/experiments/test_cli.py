"""`warden experiments`: create from --variant options, list, show, start, stop, promote and retire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli.main import main as cli
from proxy.db import make_engine, make_sessions
from proxy.identity import audit
from proxy.identity.directory import Change
from proxy.migrate import upgrade_sql
from proxy.prompts.store import PromptStore
from tests.support import write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade_sql(url)
    prompts = PromptStore(make_sessions(make_engine(url)))
    for text in ("Be brief.", "Be very brief."):
        prompts.create_version(
            "default",
            "support",
            {"template": {"text": text}},
            Change("session:bob", "default"),
        )
    upstream = {
        "name": "fake",
        "type": "openai",
        "base_url": "http://127.0.0.1:9",
        "models": ["big", "small"],
    }
    return write_config(tmp_path, {"storage": {"database_url": url}, "upstreams": [upstream]})


def run(config: Path, *args: str) -> str:
    env = {"LOGNAME": "ana", "USER": "ana", "LNAME": "ana", "USERNAME": "ana"}
    result = CliRunner().invoke(cli, ["experiments", args[0], "--config", str(config), *args[1:]], env=env)
    if result.exit_code != 0:
        raise AssertionError(result.output)
    return result.output


def test_the_whole_cycle(config: Path) -> None:
    made = json.loads(
        run(config, "create", "brevity", "--prompt", "support", "--variant", "a=50:1", "--variant", "b=50:2")
    )
    assert made["variants"] == [
        {"name": "a", "weight": 50, "version": 1},
        {"name": "b", "weight": 50, "version": 2},
    ]
    assert made["created_by"] == "cli:ana" and made["state"] == "draft"
    model = json.loads(
        run(
            config,
            "create",
            "cheaper",
            "--model",
            "big",
            "--sticky",
            "header:X-End-User",
            "--variant",
            "now=90:big",
            "--variant",
            "mini=10:small",
        )
    )
    assert model["sticky"] == "header:x-end-user" and model["variants"][1]["model"] == "small"
    assert json.loads(run(config, "start", "brevity"))["state"] == "running"
    assert run(config, "list").splitlines() == [
        "brevity  running  prompt:support  a=50 b=50",
        "cheaper  draft  model:big  now=90 mini=10",
    ]
    assert json.loads(run(config, "promote", "brevity", "b", "--label", "staging"))["winner"] == "b"
    assert json.loads(run(config, "show", "brevity"))["state"] == "stopped"
    url = f"sqlite:///{config.parent / 'w.db'}"
    assert PromptStore(make_sessions(make_engine(url))).get("default", "support", label="staging").number == 2
    assert json.loads(run(config, "start", "cheaper"))["state"] == "running"
    assert json.loads(run(config, "promote", "cheaper", "mini"))["state"] == "promoted"
    assert "cheaper  promoted  model:big  now=90 mini=10  winner=mini" in run(config, "list")
    assert json.loads(run(config, "retire", "cheaper"))["state"] == "retired"
    result = CliRunner().invoke(cli, ["experiments", "retire", "--config", str(config), "brevity"])
    assert result.exit_code == 1 and "move the label back" in result.output
    entries = audit.entries(make_sessions(make_engine(url)), tenant="default")
    assert (entries[0].action, entries[0].actor) == ("experiment.retire", "cli:ana")
    assert audit.verify(make_sessions(make_engine(url))).ok


def test_bad_input_is_a_clear_error(config: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "experiments",
            "create",
            "x",
            "--config",
            str(config),
            "--model",
            "big",
            "--variant",
            "a=60:big",
            "--variant",
            "b=60:small",
        ],
    )
    assert result.exit_code == 1 and "must sum to 100; these sum to 120" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "experiments",
            "create",
            "x",
            "--config",
            str(config),
            "--prompt",
            "support",
            "--variant",
            "a=50:big",
        ],
    )
    assert result.exit_code == 2 and "a version number or label:NAME" in result.output
