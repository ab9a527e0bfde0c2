"""The tiny model is built once per session (about 10 s); engines on it are cheap to open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.upstreams.local.build import build_tiny
from proxy.upstreams.local.engine import OnnxEngine


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Building needs the `models` tools, which the dev extra installs (serving does not need them).
    return build_tiny(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def engine(tiny_model: Path) -> Iterator[OnnxEngine]:
    engine = OnnxEngine(tiny_model, provider="cpu", max_batch=8)
    yield engine
    engine.close()
