"""Conventions: every setting and every CLI command is documented in the README."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from proxy.cli.main import main
from proxy.settings import (
    AnalyticsSettings,
    AuthSettings,
    CacheSettings,
    ComplianceSettings,
    CryptoSettings,
    DemoSettings,
    ExportSettings,
    PolicySettings,
    Price,
    PromptSettings,
    RetentionSettings,
    ServerSettings,
    StorageSettings,
    TranscriptSettings,
    UpstreamSettings,
)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    sections = {
        "server": ServerSettings,
        "storage": StorageSettings,
        "auth": AuthSettings,
        "analytics": AnalyticsSettings,
        "upstreams[]": UpstreamSettings,
        "prices.<model>": Price,
        "crypto": CryptoSettings,
        "transcripts": TranscriptSettings,
        "retention": RetentionSettings,
        "compliance": ComplianceSettings,
        "exports": ExportSettings,
        "policies": PolicySettings,
        "demo": DemoSettings,
        "cache": CacheSettings,
        "prompts": PromptSettings,
    }
    missing = [
        f"{prefix}.{field.name}"
        for prefix, cls in sections.items()
        for field in fields(cls)
        if f"`{prefix}.{field.name}`" not in README
    ]
    assert missing == []


def test_every_permission_is_in_the_permission_table() -> None:
    from analytics.access import Permission

    assert [p.value for p in Permission if f"| `{p.value}`" not in README] == []
    # And the other way: no row for a permission the code no longer has.
    rows = re.findall(r"^\| `([a-z]+:[a-z]+)`", README, re.MULTILINE)
    assert sorted(rows) == sorted(p.value for p in Permission)


def test_every_command_is_documented() -> None:
    names = [f"warden {name}" for name in main.commands]
    assert [name for name in names if name not in README] == []
