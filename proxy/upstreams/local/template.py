"""Chat templates: the model folder's Jinja template, rendered in a sandbox (it is data, not code)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class ChatTemplateError(ValueError):
    """The messages cannot be rendered (the template rejected them, or it is broken)."""


def _raise_exception(message: str) -> NoReturn:
    # Templates call this to reject conversations (e.g. roles out of order); it reaches the client as 400.
    raise ChatTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now(UTC).strftime(fmt)


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json spells special tokens either as strings or as AddedToken dicts.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class ChatTemplate:
    """Renders a conversation the way `transformers.apply_chat_template` does (same Jinja settings)."""

    def __init__(self, source: str, special_tokens: Mapping[str, str | None]) -> None:
        # Same options as transformers, so templates written for it render identically.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda value, indent=None: json.dumps(
            value, ensure_ascii=False, indent=indent
        )
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template does not compile: {exc}") from None
        self._special = dict(special_tokens)

    @classmethod
    def from_folder(cls, folder: Path) -> ChatTemplate | None:
        config_path = folder / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_path.exists():
            config = json.loads(config_path.read_text(encoding="utf-8"))
        source: Any = None
        if (folder / "chat_template.jinja").exists():
            source = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        else:
            source = config.get("chat_template")
            if isinstance(source, list):  # named templates: [{"name": "default", "template": ...}, ...]
                named = {item.get("name"): item.get("template") for item in source if isinstance(item, dict)}
                source = named.get("default")
        if not isinstance(source, str) or not source:
            return None
        special = {
            key: _token_text(config.get(key)) for key in ("bos_token", "eos_token", "pad_token", "unk_token")
        }
        return cls(source, special)

    def render(self, messages: Sequence[Mapping[str, Any]], **extra: Any) -> str:
        context = {**self._special, **extra, "messages": list(messages), "add_generation_prompt": True}
        try:
            return self._template.render(**context)
        except ChatTemplateError:
            raise
        except (TemplateError, TypeError, ValueError, KeyError) as exc:
            raise ChatTemplateError(f"chat template failed: {exc}") from None
