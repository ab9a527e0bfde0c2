"""Settings: one YAML file plus WARDEN_* overrides, strictly validated with file:line: key errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.settings import ConfigError, load_settings

GOOD = """\
upstreams:
  - name: openai
    type: openai
    base_url: https://api.example.test/v1
    api_key: env:TEST_UPSTREAM_KEY
    models: [gpt-4o-mini, text-embedding-3-small]
storage:
  database_url: sqlite:///var/warden.db
  clickhouse_url: chdb:///var/clickhouse
prices:
  gpt-4o-mini: {input: 0.15, output: 0.6}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "warden.yaml"
    path.write_text(text)
    return path


def test_defaults_are_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.server.port == 8000 and settings.server.host == "127.0.0.1"
    assert settings.storage.database_url == f"sqlite:///{tmp_path / 'var' / 'warden.db'}"
    assert settings.storage.clickhouse_url == f"chdb://{tmp_path / 'var' / 'clickhouse'}"
    assert settings.upstreams == ()
    assert settings.policies.toxicity_model == "builtin"  # toxicity is checked out of the box, offline
    # Every core, the request log shared through a local ClickHouse process.
    assert settings.server.workers == "auto" and settings.storage.embedded_clickhouse == "process"


def test_full_config_and_secret_from_env(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), environ={"TEST_UPSTREAM_KEY": "sk-123"})
    (upstream,) = settings.upstreams
    assert upstream.api_key == "sk-123" and upstream.models == ("gpt-4o-mini", "text-embedding-3-small")
    assert settings.prices["gpt-4o-mini"].output == 0.6
    assert "sk-123" not in repr(upstream), "secrets must not leak through repr into logs"


def test_environment_overrides(tmp_path: Path) -> None:
    environ = {
        "TEST_UPSTREAM_KEY": "k",
        "WARDEN_SERVER__PORT": "9001",
        "WARDEN_STORAGE__DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
        "WARDEN_STORAGE__CLICKHOUSE_URL": "http://default:pw@127.0.0.1:8123/warden",
    }
    settings = load_settings(write(tmp_path, GOOD), environ=environ)
    assert settings.server.port == 9001
    assert settings.storage.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert settings.storage.clickhouse_url == "http://default:pw@127.0.0.1:8123/warden"


def test_config_file_from_warden_config_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8123\n")
    assert load_settings(environ={"WARDEN_CONFIG": str(path)}).server.port == 8123


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  port: 80000\n", "warden.yaml:2: server.port: must be between 0 and 65535"),
        ("server:\n  prot: 8000\n", "warden.yaml:2: server.prot: unknown key"),
        ("sever:\n  port: 1\n", "warden.yaml:1: sever: unknown section"),
        ("server:\n  threads: many\n", "warden.yaml:2: server.threads: must be an integer"),
        ("server:\n  workers: many\n", "warden.yaml:2: server.workers: must be a number or auto, got 'many'"),
        ("server:\n  workers: 0\n", "warden.yaml:2: server.workers: must be > 0"),
        ("server:\n  workers: yes\n", "warden.yaml:2: server.workers: must be a number or a keyword"),
        (
            "storage:\n  embedded_clickhouse: thread\n",
            "warden.yaml:2: storage.embedded_clickhouse: must be process (a local ClickHouse process",
        ),
        ("server:\n  trusted_proxies: -1\n", "warden.yaml:2: server.trusted_proxies: must be between 0 and"),
        ("server:\n  trusted_proxies: yes\n", "warden.yaml:2: server.trusted_proxies: must be an integer"),
        ("storage:\n  database_url: mysql://x\n", "warden.yaml:2: storage.database_url: must be a sqlite"),
        ("storage:\n  clickhouse_url: tcp://x\n", "warden.yaml:2: storage.clickhouse_url: must be chdb"),
        (
            "upstreams:\n  - name: a\n    type: openai\n    base_url: http://x/v1\n",
            "warden.yaml:2: upstreams[0].models: is required",
        ),
        (
            "upstreams:\n  - name: a\n    type: grpc\n    base_url: http://x\n    models: [m]\n",
            "warden.yaml:3: upstreams[0].type: unknown upstream type",
        ),
        (
            "upstreams:\n  - name: a\n    type: openai\n    base_url: ftp://x\n    models: [m]\n",
            "warden.yaml:4: upstreams[0].base_url: must be an http(s):// URL",
        ),
        (
            "upstreams:\n  - name: a\n    type: openai\n    base_url: http://x\n    models: [m]\n"
            "    api_key: env:NOT_SET_ANYWHERE\n",
            "warden.yaml:6: upstreams[0].api_key: environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            "upstreams:\n  - name: a\n    type: openai\n    base_url: http://x\n    models: [m]\n"
            "    apis: [chat.completions, chat]\n",
            "warden.yaml:6: upstreams[0].apis[1]: unknown API 'chat' (known: chat.completions, completions,",
        ),
        (
            "upstreams:\n  - name: a\n    type: openai\n    base_url: http://x\n    models: [m]\n"
            "    apis: []\n",
            "warden.yaml:6: upstreams[0].apis: must name at least one API",
        ),
        (
            "upstreams:\n  - name: a\n    type: onnx\n    path: /nowhere\n    models: [m]\n"
            "    apis: [messages]\n",
            "upstreams[0].apis[0]: a local model cannot serve 'messages' (only chat.completions,",
        ),
        (
            "policies:\n  toxicity_model: builtn\n",
            "warden.yaml:2: policies.toxicity_model: no such file or folder: builtn "
            "(or one of: builtin, none)",
        ),
        ("prices:\n  m: {input: -1, output: 1}\n", "warden.yaml:2: prices.m.input: must be >= 0"),
        (
            "prompts:\n  require_approval: [production, Prod Label]\n",
            "warden.yaml:2: prompts.require_approval[1]: 'Prod Label' is not a label name",
        ),
        ("prompts:\n  require_approval: production\n", "prompts.require_approval: must be a list"),
        ("server: [1, 2]\n", "warden.yaml:1: server: must be a mapping"),
        ("server:\n  port: 1\n   bad: indent\n", "warden.yaml:3: invalid YAML"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert expected in str(caught.value)


def test_bad_environment_override_is_named() -> None:
    with pytest.raises(ConfigError, match="WARDEN_SERVR__PORT: unknown section"):
        load_settings(environ={"WARDEN_SERVR__PORT": "1"})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_secrets_can_stay_unresolved_for_commands_that_do_not_call_upstreams(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), environ={}, resolve_secrets=False)
    assert settings.upstreams[0].api_key == "env:TEST_UPSTREAM_KEY"


def test_apis_override_the_type_default(tmp_path: Path) -> None:
    text = GOOD.replace("    models:", "    apis: [chat.completions, completions]\n    models:")
    settings = load_settings(write(tmp_path, text), environ={"TEST_UPSTREAM_KEY": "k"})
    assert settings.upstreams[0].apis == ("chat.completions", "completions")
    assert load_settings(write(tmp_path, GOOD), environ={"TEST_UPSTREAM_KEY": "k"}).upstreams[0].apis == ()


def test_the_clickhouse_password_comes_from_a_file_even_when_secrets_stay_unresolved(tmp_path: Path) -> None:
    """`warden clickhouse-serve` writes the password to a file; every command reaching storage needs it."""
    secret = tmp_path / "clickhouse.password"
    secret.write_text("p@ss/word:with-odd#chars\n")
    text = f"storage:\n  clickhouse_url: http://127.0.0.1:8123/warden\n  clickhouse_password: file:{secret}\n"
    for resolve in (True, False):
        settings = load_settings(write(tmp_path, text), environ={}, resolve_secrets=resolve)
        url = settings.storage.clickhouse_url
        assert url == "http://default:p%40ss%2Fword%3Awith-odd%23chars@127.0.0.1:8123/warden"
        assert "p@ss" not in repr(settings.storage.clickhouse_password)
    from urllib.parse import unquote, urlparse

    assert unquote(urlparse(url).password or "") == "p@ss/word:with-odd#chars"
    named = text.replace("http://", "http://writer@")
    assert load_settings(write(tmp_path, named), environ={}).storage.clickhouse_url.startswith(
        "http://writer:"
    )
    for bad, message in (
        (text.replace("http://", "http://default:pw@"), "not both"),
        (text.replace("http://127.0.0.1:8123/warden", "chdb:///var/ch"), "http(s) clickhouse_url"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_settings(write(tmp_path, bad), environ={})


def test_self_hosted_defaults_to_local_models_and_can_be_declared(tmp_path: Path) -> None:
    """A vLLM or Ollama server behind `type: openai` is self-hosted too, when the operator says so."""
    (upstream,) = load_settings(write(tmp_path, GOOD), environ={"TEST_UPSTREAM_KEY": "k"}).upstreams
    assert upstream.self_hosted is False
    declared = GOOD.replace("    type: openai\n", "    type: openai\n    self_hosted: true\n")
    (upstream,) = load_settings(write(tmp_path, declared), environ={"TEST_UPSTREAM_KEY": "k"}).upstreams
    assert upstream.self_hosted is True


ONE_UPSTREAM = "upstreams:\n  - name: a\n    type: openai\n    base_url: http://x\n    models: [m]\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ONE_UPSTREAM + "    weight: 0\n", "warden.yaml:6: upstreams[0].weight: must be from 1 to 1000"),
        (ONE_UPSTREAM + "    max_in_flight: -1\n", "warden.yaml:6: upstreams[0].max_in_flight: must be >= 0"),
        (
            ONE_UPSTREAM + "routing:\n  strategy: fastest\n",
            "warden.yaml:7: routing.strategy: unknown strategy 'fastest' (known: ordered, weighted,",
        ),
        (
            ONE_UPSTREAM + "routing:\n  models:\n    m: random\n",
            "warden.yaml:8: routing.models.m: unknown strategy 'random'",
        ),
        (
            ONE_UPSTREAM + "routing:\n  models:\n    other: latency\n",
            "warden.yaml:8: routing.models.other: no upstream serves the model 'other'",
        ),
        (ONE_UPSTREAM + "routing:\n  deadline_s: -1\n", "warden.yaml:7: routing.deadline_s: must be >= 0"),
        (
            ONE_UPSTREAM + "routing:\n  breaker_failure_rate: 1.5\n",
            "warden.yaml:7: routing.breaker_failure_rate: must be between 0 and 1",
        ),
        (
            ONE_UPSTREAM + "routing:\n  breaker_window: 5\n  breaker_min_calls: 6\n",
            "warden.yaml:8: routing.breaker_min_calls: must be <= breaker_window",
        ),
        (
            ONE_UPSTREAM + "routing:\n  breaker_cooldown_s: 10\n  breaker_max_cooldown_s: 5\n",
            "warden.yaml:8: routing.breaker_max_cooldown_s: must be >= breaker_cooldown_s",
        ),
        (ONE_UPSTREAM + "routing:\n  backoff_s: 0\n", "warden.yaml:7: routing.backoff_s: must be > 0"),
        (ONE_UPSTREAM + "routing:\n  latency_alpha: 0\n", "warden.yaml:7: routing.latency_alpha: must be in"),
        (ONE_UPSTREAM + "routing:\n  breaker: {}\n", "warden.yaml:7: routing.breaker: unknown key"),
    ],
)
def test_routing_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert expected in str(caught.value)


def test_routing_settings_and_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), environ={"TEST_UPSTREAM_KEY": "k"})
    assert settings.routing.strategy == "ordered" and settings.routing.deadline_s == 0
    assert (settings.upstreams[0].weight, settings.upstreams[0].max_in_flight) == (1, 0)
    text = GOOD.replace("    models:", "    weight: 3\n    max_in_flight: 8\n    models:")
    text += "routing:\n  strategy: least_busy\n  models: {gpt-4o-mini: latency}\n  deadline_s: 30\n"
    settings = load_settings(
        write(tmp_path, text), environ={"TEST_UPSTREAM_KEY": "k", "WARDEN_ROUTING__BREAKER_FAILURES": "3"}
    )
    assert (settings.upstreams[0].weight, settings.upstreams[0].max_in_flight) == (3, 8)
    routing = settings.routing
    assert (routing.strategy, dict(routing.models), routing.deadline_s) == (
        "least_busy",
        {"gpt-4o-mini": "latency"},
        30.0,
    )
    assert routing.breaker_failures == 3
