"""Local models for policy tests, built once per session: a tiny random Detoxify checkpoint (and its
ONNX export) and a blank spaCy pipeline on disk. They test the code paths, not model accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.model_builders import build_blank_spacy, build_detoxify_checkpoint
from policies.runtime import ModelPaths, Runtime


@pytest.fixture(scope="session")
def toxicity_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_detoxify_checkpoint(tmp_path_factory.mktemp("detoxify"), "tiny", seed=0)


@pytest.fixture(scope="session")
def toxicity_onnx(tmp_path_factory: pytest.TempPathFactory, toxicity_checkpoint: Path) -> Path:
    from policies.toxicity_model import export_onnx

    return export_onnx(str(toxicity_checkpoint), "", str(tmp_path_factory.mktemp("detoxify-onnx")))


@pytest.fixture(scope="session")
def spacy_blank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_blank_spacy(tmp_path_factory.mktemp("spacy") / "en_blank")


@pytest.fixture(scope="session")
def runtime(toxicity_checkpoint: Path, spacy_blank: Path) -> Runtime:
    """Shared by the tests of this folder: presidio and the model load once."""
    return Runtime(ModelPaths(pii_spacy_model=str(spacy_blank), toxicity_model=str(toxicity_checkpoint)))
