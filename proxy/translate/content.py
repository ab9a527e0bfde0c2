"""Message content between Chat Completions parts and Anthropic blocks: text and images.

| Chat part                                   | Anthropic block                                           |
|---------------------------------------------|-----------------------------------------------------------|
| `"text"` (a string content)                  | `{"type": "text", "text"}`                               |
| `{"type": "text", "text"}`                  | `{"type": "text", "text"}` (`cache_control` is dropped)    |
| `image_url` with a `data:<type>;base64,` URL | `image` with a `base64` source                          |
| `image_url` with an http(s) URL             | `image` with a `url` source                               |

Anything else (audio, files, documents, other URL schemes, Anthropic `file` sources) is Untranslatable.
Anthropic rejects empty text blocks, so empty texts are left out on the way there. On the way back one
text becomes a plain string and several stay a list of parts, so no text is joined with a separator
it did not have.
"""

from __future__ import annotations

from typing import Any

from proxy.translate.base import Untranslatable


def to_blocks(content: Any, param: str, *, images: bool = True) -> list[dict[str, Any]]:
    """Anthropic blocks for a chat message's content (a string or a list of parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise Untranslatable("Message content must be a string or a list of parts.", param)
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise Untranslatable("A text part needs a string text.", where)
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url" and images:
            blocks.append(_image_block(part.get("image_url"), where))
        else:
            raise Untranslatable(
                "Only text" + (" and image" if images else "") + " parts can be sent to this model.", where
            )
    return blocks


def _image_block(image: Any, param: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if comma and encoding == "base64" and media_type.startswith("image/"):
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    elif isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise Untranslatable("Images can be sent to this model as base64 data: URLs or http(s) URLs only.", param)


def from_blocks(blocks: Any, param: str, *, images: bool = True) -> str | list[dict[str, Any]]:
    """Chat content for Anthropic content (a string or a list of text and image blocks)."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise Untranslatable("Message content must be a string or a list of blocks.", param)
    return simplest(
        [part_of(block, f"{param}[{index}]", images=images) for index, block in enumerate(blocks)]
    )


def part_of(block: Any, param: str, *, images: bool = True) -> dict[str, Any]:
    """The chat part for one Anthropic text or image block."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text" and isinstance(block.get("text"), str):
        return {"type": "text", "text": block["text"]}
    if kind == "image" and images:
        return {"type": "image_url", "image_url": {"url": _image_url(block.get("source"), param)}}
    raise Untranslatable(
        "Only text" + (" and image" if images else "") + " blocks can be sent to this model.", param
    )


def _image_url(source: Any, param: str) -> str:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source.get("media_type"), str) and isinstance(source.get("data"), str):
        return f"data:{source['media_type']};base64,{source['data']}"
    if kind == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise Untranslatable("Images can be sent to this model as base64 data or URLs only.", param)


def simplest(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text part as a plain string (what every server accepts); anything else as parts."""
    if not parts:
        return ""
    if len(parts) == 1 and parts[0].get("type") == "text":
        return str(parts[0]["text"])
    return parts


def joined_text(content: Any) -> str:
    """All text of chat or Anthropic content, in order (for fields that hold one string)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        str(part.get("text") or part.get("refusal") or "")
        for part in content
        if isinstance(part, dict) and part.get("type") in ("text", "refusal")
    )
