"""The built-in toxicity tier: alt-profanity-check's model, read without scikit-learn, on by default."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import toxicity_corpus
from bench.toxicity_quality import rates
from policies.linear_toxicity import WINDOW_WORDS, LinearToxicity, ModelFileError, package_folder
from policies.runtime import ModelPaths, Runtime

CORPUS = Path(__file__).parents[2] / "bench" / "corpus" / "toxicity.jsonl"


@pytest.fixture(scope="module")
def model() -> LinearToxicity:
    return LinearToxicity()


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, str]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines()]


def test_scores_are_the_packages_own(model: LinearToxicity, corpus: list[dict[str, str]]) -> None:
    from profanity_check import predict_prob  # imports scikit-learn: here only, never in Warden

    texts = [row["text"] for row in corpus] + ["", "the of and", "ÄÖÜ straße 123", "a" * 3000]
    theirs = predict_prob(texts)
    ours = [model.scores(text)["toxicity"] for text in texts]
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 1e-9


def test_loading_it_never_imports_scikit_learn() -> None:
    """The package's own import loads scikit-learn and scipy (about 200 MB in every worker)."""
    code = (
        "import sys\n"
        "from policies.toxicity_model import load_toxicity_model\n"
        "before = set(sys.modules)\n"
        "model = load_toxicity_model('builtin')  # what Runtime.toxicity_model() calls\n"
        "assert model.scores('you worthless idiot')['toxicity'] > 0.5\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('sklearn', 'scipy')))\n"
        "print('sklearn' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["[]", "False"]


def test_one_abusive_sentence_in_a_long_text_is_not_diluted(model: LinearToxicity) -> None:
    abuse = "Shut up, you worthless idiot."
    filler = "The quarterly report covers revenue, hiring and the roadmap for the next release. " * 40
    alone = model.scores(abuse)["toxicity"]
    assert alone > 0.9
    run_on = filler.replace(".", "")  # one long sentence: scored in windows
    for text in (
        filler + abuse,
        abuse + filler,
        filler + abuse + filler,
        run_on + abuse,
        run_on + abuse + run_on,
    ):
        assert len(text.split()) > 10 * WINDOW_WORDS
        assert model.scores(text)["toxicity"] > 0.9
    assert model.scores(filler)["toxicity"] < 0.2


class _Trap:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("the trap ran",))


def test_a_tampered_model_file_cannot_run_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "data"
    shutil.copytree(package_folder(), folder)
    (folder / "vectorizer.joblib").write_bytes(pickle.dumps({"vocabulary_": _Trap()}))
    with pytest.raises(ModelFileError, match=r"refused to load builtins\.print"):
        LinearToxicity(folder)
    assert "the trap ran" not in capsys.readouterr().out


def test_a_model_file_it_does_not_know_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(package_folder(), folder)
    (folder / "model.joblib").unlink()
    with pytest.raises(ModelFileError, match="not the model this reader knows"):
        LinearToxicity(folder)


def test_quality_at_the_default_threshold(model: LinearToxicity, corpus: list[dict[str, str]]) -> None:
    """The figures in the README (bench/toxicity_quality.py), with a margin: a regression fails here."""
    measured = rates(corpus, [model.scores(row["text"])["toxicity"] for row in corpus], 0.5)
    assert measured["precision"] >= 0.95
    assert measured["recall"] >= 0.55
    assert measured["hard_negatives_flagged"] <= 0.10
    assert measured["benign_flagged"] <= 0.05


def test_the_corpus_is_the_generator_s(corpus: list[dict[str, str]]) -> None:
    assert toxicity_corpus.build() == corpus


def test_none_turns_the_scanner_off_and_builtin_is_the_default() -> None:
    from policies.scanners import ScannerUnavailable

    assert ModelPaths().toxicity_model == "builtin"
    with pytest.raises(ScannerUnavailable, match="builtin, or a model's path"):
        Runtime(ModelPaths(toxicity_model="none")).toxicity_model()
