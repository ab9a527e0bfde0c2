"""The tiny model's folder layout and its determinism; the demo model's idempotence marker."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.upstreams.local.build import DEMO_MARKER, DEMO_MARKER_VERSION, IM_END, main, prepare_demo


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_tiny_model_folder_has_everything_serving_needs(tiny_model: Path) -> None:
    for name in (
        "model.onnx",
        "tokenizer.json",
        "tokenizer_config.json",
        "config.json",
        "generation_config.json",
        "chat_template.jinja",
    ):
        assert (tiny_model / name).is_file(), name
    tok_config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    assert tok_config["chat_template"] == (tiny_model / "chat_template.jinja").read_text()
    assert tok_config["eos_token"] == IM_END
    vocab = json.loads((tiny_model / "tokenizer.json").read_text())["added_tokens"]
    im_end = next(t["id"] for t in vocab if t["content"] == IM_END)
    assert json.loads((tiny_model / "generation_config.json").read_text())["eos_token_id"] == im_end
    config = json.loads((tiny_model / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (64, 2, 4)
    assert 1000 <= config["vocab_size"] <= 2000


def test_same_seed_builds_the_same_bytes(tiny_model: Path, tmp_path: Path, capsys) -> None:
    assert main(["tiny", str(tmp_path / "again"), "--seed", "0"]) == 0
    assert str(tmp_path / "again") in capsys.readouterr().out
    assert _files(tmp_path / "again") == _files(tiny_model)


def test_prepared_demo_folder_is_not_rebuilt(tmp_path: Path) -> None:
    (tmp_path / DEMO_MARKER).write_text(DEMO_MARKER_VERSION + "\n")
    stages: list[tuple[str, float]] = []
    assert prepare_demo(tmp_path, lambda stage, fraction: stages.append((stage, fraction))) == tmp_path
    assert stages == [("already prepared", 1.0)]
