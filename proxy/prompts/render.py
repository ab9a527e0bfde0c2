"""Prompt templates: checked when a version is written, rendered in a jinja2 sandbox.

A template is either chat messages (`[{"role", "content"}, ...]`, each content a template) or one text
(rendered as a single user message). The sandbox is immutable (a template cannot change the values it is
given) and its undefined values are strict, so a missing variable is an error that names it rather than
an empty string in a prompt. Nothing a template does may escape as an exception: every failure is a
`RenderError` whose message is safe to show to the caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROLES = ("system", "developer", "user", "assistant")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_TEMPLATE_CHARS = 100_000
# A loop can still build a huge text; refusing it afterwards keeps it out of a request.
MAX_RENDERED_CHARS = 1_000_000

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class RenderError(ValueError):
    """A template that cannot be written or rendered; the message names the cause and is safe to show."""


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Template:
    """Validated template sources: messages, or one text (then `messages` is empty)."""

    messages: tuple[Message, ...] = ()
    text: str | None = None

    def sources(self) -> list[str]:
        return [m.content for m in self.messages] if self.text is None else [self.text]

    def as_json(self) -> dict[str, Any]:
        if self.text is not None:
            return {"text": self.text}
        return {"messages": [{"role": m.role, "content": m.content} for m in self.messages]}

    def source_text(self) -> str:
        """The template as one text, the form a diff compares."""
        if self.text is not None:
            return _line_ended(self.text)
        return "".join(f"[{m.role}]\n{_line_ended(m.content)}" for m in self.messages)


def _line_ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def parse_template(value: Any) -> Template:
    """A `Template` from its JSON form, or a `RenderError` saying what is wrong."""
    if not isinstance(value, Mapping) or len(set(value) & {"messages", "text"}) != 1:
        raise RenderError("a template is {'messages': [{'role', 'content'}, ...]} or {'text': '...'}")
    if "text" in value:
        text = value["text"]
        if not isinstance(text, str) or not text.strip():
            raise RenderError("field 'text' must be a non-empty string")
        template = Template(text=text)
    else:
        raw = value["messages"]
        if not isinstance(raw, list) or not raw:
            raise RenderError("field 'messages' must be a non-empty list of {'role', 'content'}")
        messages = []
        for index, item in enumerate(raw):
            if not isinstance(item, Mapping) or set(item) != {"role", "content"}:
                raise RenderError(f"message {index} must have exactly 'role' and 'content'")
            if item["role"] not in ROLES:
                raise RenderError(f"message {index}: role must be one of {', '.join(ROLES)}")
            if not isinstance(item["content"], str):
                raise RenderError(f"message {index}: content must be a string")
            messages.append(Message(item["role"], item["content"]))
        template = Template(messages=tuple(messages))
    if sum(len(s) for s in template.sources()) > MAX_TEMPLATE_CHARS:
        raise RenderError(f"a template is at most {MAX_TEMPLATE_CHARS} characters")
    return template


def referenced(template: Template) -> set[str]:
    """The variables the template reads; a syntax error is a `RenderError` with its line."""
    found: set[str] = set()
    for index, source in enumerate(template.sources()):
        try:
            found |= meta.find_undeclared_variables(_ENV.parse(source))
        except TemplateError as exc:
            where = "" if template.text is not None else f"message {index}, "
            raise RenderError(
                f"template syntax error ({where}line {getattr(exc, 'lineno', '?')}): {exc}"
            ) from None
    return found


def check_variables(template: Template, declared: Sequence[str] | None) -> tuple[str, ...]:
    """The declared variables (those the template reads when none are declared); every variable the
    template reads must be declared."""
    used = referenced(template)
    if declared is None:
        return tuple(sorted(used))
    for name in declared:
        if not isinstance(name, str) or not VARIABLE.match(name):
            raise RenderError(
                f"variable name {str(name)[:64]!r} must be an identifier (letters, digits, '_')"
            )
    undeclared = sorted(used - set(declared))
    if undeclared:
        raise RenderError(f"the template reads undeclared variables: {', '.join(undeclared)}")
    return tuple(dict.fromkeys(declared))


def render(template: Template, declared: Sequence[str], variables: Mapping[str, Any]) -> list[Message]:
    """The messages with the variables filled in; every failure is a `RenderError` naming its cause."""
    missing = [name for name in declared if name not in variables]
    if missing:
        raise RenderError(f"missing variable{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    rendered = [_render_one(source, variables) for source in template.sources()]
    if sum(len(text) for text in rendered) > MAX_RENDERED_CHARS:
        raise RenderError(f"the rendered prompt is longer than {MAX_RENDERED_CHARS} characters")
    if template.text is not None:
        return [Message("user", rendered[0])]
    return [Message(m.role, text) for m, text in zip(template.messages, rendered, strict=True)]


def _render_one(source: str, variables: Mapping[str, Any]) -> str:
    try:
        return _ENV.from_string(source).render(dict(variables))
    except UndefinedError as exc:
        raise RenderError(f"undefined in the template: {exc}") from None
    except SecurityError as exc:
        raise RenderError(f"the template did something unsafe: {exc}") from None
    except TemplateError as exc:
        raise RenderError(f"the template failed to render: {exc}") from None
    except Exception as exc:
        # A template's own error (1/0, a bad filter argument) is the caller's mistake, not a 500.
        raise RenderError(f"the template failed to render: {type(exc).__name__}: {exc}") from None
