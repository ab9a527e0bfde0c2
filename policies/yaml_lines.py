"""Line numbers for YAML keys, so configuration and policy errors can say `file:line: key: problem`."""

from __future__ import annotations

import yaml

Path = tuple[str | int, ...]


def record_lines(node: yaml.Node | None, path: Path, out: dict[Path, int]) -> None:
    """Fill `out` with the 1-based line of every key and item under `node`."""
    if node is None:
        return
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _key = (*path, key_node.value)
            record_lines(value_node, _key, out)
            out[_key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            record_lines(item, (*path, index), out)


def dotted(path: Path) -> str:
    """('rules', 'input', 2, 'action') -> 'rules.input[2].action'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


class YamlSyntaxError(ValueError):
    """The text is not YAML; the message says where (`source:line: invalid YAML: problem`)."""


def load_with_lines(text: str, source: str) -> tuple[object, dict[Path, int]]:
    """The parsed document and the line of every key, from one parse of the text."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSyntaxError(f"{source}{where}: invalid YAML: {problem}") from None
    lines: dict[Path, int] = {}
    record_lines(node, (), lines)
    return data, lines
