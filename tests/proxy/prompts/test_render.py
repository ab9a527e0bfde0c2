"""Templates in the jinja2 sandbox: strict variables, and every failure a RenderError, never an escape."""

from __future__ import annotations

import pytest

from proxy.prompts.render import Message, RenderError, check_variables, parse_template, render

CHAT = parse_template(
    {
        "messages": [
            {"role": "system", "content": "You answer for {{ company }}."},
            {"role": "user", "content": "{{ question }}"},
        ]
    }
)


def test_messages_are_rendered_with_the_variables() -> None:
    assert render(CHAT, ("company", "question"), {"company": "Acme", "question": "Hours?"}) == [
        Message("system", "You answer for Acme."),
        Message("user", "Hours?"),
    ]


def test_a_text_template_is_one_user_message() -> None:
    text = parse_template({"text": "Summarise: {{ doc }}"})
    assert render(text, ("doc",), {"doc": "x"}) == [Message("user", "Summarise: x")]


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(RenderError, match="missing variable: question"):
        render(CHAT, ("company", "question"), {"company": "Acme"})


def test_an_undeclared_name_read_at_render_time_is_named() -> None:
    template = parse_template({"text": "{{ a.b }}"})
    with pytest.raises(RenderError, match="'dict object' has no attribute 'b'"):
        render(template, ("a",), {"a": {}})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ x.append(1) }}",  # immutable: a template cannot change what it is given
        "{{ 1 / 0 }}",
        "{{ x | int('nope', 'nope', 'nope') }}",
    ],
)
def test_a_failing_template_is_a_render_error(source: str) -> None:
    template = parse_template({"text": source})
    with pytest.raises(RenderError):
        render(template, (), {"x": [1]})


def test_variables_are_found_and_checked_when_written() -> None:
    assert check_variables(CHAT, None) == ("company", "question")
    with pytest.raises(RenderError, match="undeclared variables: question"):
        check_variables(CHAT, ["company"])
    with pytest.raises(RenderError, match="syntax error"):
        check_variables(parse_template({"text": "{{ unclosed"}), None)


@pytest.mark.parametrize(
    "value",
    [
        None,
        {},
        {"text": ""},
        {"text": "a", "messages": []},
        {"messages": []},
        {"messages": [{"role": "wizard", "content": "x"}]},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "user", "content": 3}]},
    ],
)
def test_malformed_templates_are_refused(value: object) -> None:
    with pytest.raises(RenderError):
        parse_template(value)
