"""The built-in toxicity tier: the linear model that ships inside `alt-profanity-check` (MIT).

It is a TF-IDF vectorizer and five calibrated linear SVMs, trained with scikit-learn on labelled
toxic comments. Warden reads their weights and scores texts itself, in numpy:
- importing scikit-learn and unpickling the model the usual way costs about 200 MB of resident
  memory in every worker; the weights themselves are under 1 MB;
- the files are read with an unpickler that accepts only the classes these files contain (stand-ins
  for scikit-learn's, numpy arrays), so a tampered file cannot run code.

Scores equal the package's own `predict_prob` on a short text (tests compare them). A longer text
is scored sentence by sentence and the highest score wins, like Detoxify's windows, so one abusive
sentence in a long text is not diluted by the rest.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import pickle
import re
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

PACKAGE = "profanity_check"  # alt-profanity-check's import name
LABELS = ["toxicity"]
# Texts of up to WHOLE_WORDS known words are scored whole, longer ones sentence by sentence, and
# sentences longer than WINDOW_WORDS in overlapping windows of that many: tf-idf over more words
# dilutes three abusive words below any useful threshold.
WHOLE_WORDS = 16
WINDOW_WORDS = 8
WINDOW_STRIDE = 4
# Linear: one run of word characters, then a boundary that always holds after a maximal run.
TOKEN = re.compile(r"(?u)\b\w\w+\b")
# Linear: two disjoint character classes.
SENTENCE = re.compile(r"[^.!?\n]+[.!?\n]*")

_SKLEARN_CLASSES = {
    ("sklearn.feature_extraction.text", "TfidfVectorizer"),
    ("sklearn.feature_extraction.text", "TfidfTransformer"),
    ("sklearn.calibration", "CalibratedClassifierCV"),
    ("sklearn.calibration", "_CalibratedClassifier"),
    ("sklearn.calibration", "_SigmoidCalibration"),
    ("sklearn.svm._classes", "LinearSVC"),
}
_NUMPY_CLASSES = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy", "float64"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
}


class ModelFileError(ValueError):
    """The package's files are missing, or not the model this reader knows."""


class _Fitted:
    """Stands in for a fitted scikit-learn object: its state, no behaviour."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _read(path: Path) -> Any:
    from joblib.numpy_pickle import NumpyUnpickler

    class Restricted(NumpyUnpickler):  # type: ignore[misc]  # joblib ships no type information
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _SKLEARN_CLASSES:
                return type(name, (_Fitted,), {})
            if (module, name) in _NUMPY_CLASSES:
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"{path.name}: refused to load {module}.{name}")

    handle: BinaryIO
    with path.open("rb") as handle:
        return Restricted(str(path), handle, False).load()


def package_folder() -> Path:
    """The package's data folder, found without importing it (its import loads scikit-learn)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "the built-in toxicity model needs the alt-profanity-check package "
            "(pip install alt-profanity-check)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class LinearToxicity:
    """Scores one label, `toxicity`, from 0 to 1."""

    def __init__(self, folder: Path | None = None) -> None:
        import numpy as np

        folder = folder or package_folder()
        try:
            vectorizer = _read(folder / "vectorizer.joblib")
            model = _read(folder / "model.joblib")
            tfidf = vectorizer._tfidf
            vocabulary: dict[str, int] = dict(vectorizer.vocabulary_)
            parts = model.calibrated_classifiers_
            coef = np.stack([part.estimator.coef_[0] for part in parts], axis=1)
            intercept = np.array([part.estimator.intercept_[0] for part in parts])
            slope = np.array([part.calibrators[0].a_ for part in parts], dtype=np.float64)
            offset = np.array([part.calibrators[0].b_ for part in parts], dtype=np.float64)
            idf = np.asarray(tfidf.idf_, dtype=np.float64)
        except (OSError, AttributeError, IndexError, KeyError, pickle.UnpicklingError) as exc:
            raise ModelFileError(f"{folder}: not the model this reader knows ({exc})") from exc
        self._check(vectorizer, tfidf, model, coef, idf, vocabulary)
        self.labels = list(LABELS)
        self._vocabulary = vocabulary
        self._idf = idf
        # A term's idf, and its idf folded into each SVM's coefficient.
        self._rows = [
            (float(i), tuple(float(w) for w in row)) for i, row in zip(idf, coef * idf[:, None], strict=True)
        ]
        self._intercept_list = [float(v) for v in intercept]
        self._slope_list = [float(v) for v in slope]
        self._offset_list = [float(v) for v in offset]
        log.info(
            "built-in toxicity model loaded: %d terms, %d calibrated classifiers", len(vocabulary), len(parts)
        )

    @staticmethod
    def _check(
        vectorizer: Any, tfidf: Any, model: Any, coef: Any, idf: Any, vocabulary: dict[str, int]
    ) -> None:
        """Refuse a file whose settings this reader does not reproduce, rather than score it wrong."""
        expected = {
            "lowercase": True,
            "analyzer": "word",
            "ngram_range": (1, 1),
            "token_pattern": TOKEN.pattern,
            "strip_accents": None,
            "preprocessor": None,
            "tokenizer": None,
        }
        for name, value in expected.items():
            if getattr(vectorizer, name, None) != value:
                raise ModelFileError(
                    f"unsupported vectorizer setting {name}={getattr(vectorizer, name, None)!r}"
                )
        if tfidf.norm != "l2" or not tfidf.use_idf or tfidf.sublinear_tf:
            raise ModelFileError("unsupported tf-idf settings")
        if model.method != "sigmoid" or list(model.classes_) != [0, 1]:
            raise ModelFileError("unsupported calibration")
        if coef.shape[0] != len(vocabulary) or idf.shape[0] != len(vocabulary):
            raise ModelFileError("weights and vocabulary differ in size")

    def _window(self, counts: Counter[int]) -> float:
        # Plain Python: a sentence has a handful of known words, below numpy's per-call overhead.
        squares = 0.0
        dots = [0.0] * len(self._intercept_list)
        for row, count in counts.items():
            idf, weights = self._rows[row]
            squares += (count * idf) ** 2
            for j, weight in enumerate(weights):
                dots[j] += count * weight
        norm = math.sqrt(squares)
        total = 0.0
        for dot, intercept, slope, offset in zip(
            dots, self._intercept_list, self._slope_list, self._offset_list, strict=True
        ):
            total += 1.0 / (1.0 + math.exp(slope * (dot / norm + intercept) + offset))
        return total / len(dots)

    def _empty(self) -> float:
        """The score of a text with no known word: the intercepts alone."""
        return sum(
            1.0 / (1.0 + math.exp(a * b + c))
            for a, b, c in zip(self._slope_list, self._intercept_list, self._offset_list, strict=True)
        ) / len(self._intercept_list)

    def _terms(self, text: str) -> list[int]:
        vocabulary = self._vocabulary
        return [row for row in map(vocabulary.get, TOKEN.findall(text.lower())) if row is not None]

    def scores(self, text: str) -> dict[str, float]:
        """The package's score for a short text; for a longer one, the highest over its sentences
        (long sentences in windows), since tf-idf over a whole page drowns one abusive sentence."""
        terms = self._terms(text)
        if not terms:
            return {"toxicity": self._empty()}
        if len(terms) <= WHOLE_WORDS:
            return {"toxicity": self._window(Counter(terms))}
        best = 0.0
        for sentence in SENTENCE.findall(text):
            terms = self._terms(sentence)
            if not terms:
                continue
            last = max(len(terms) - WINDOW_WORDS, 0)
            for start in (*range(0, last, WINDOW_STRIDE), last):
                best = max(best, self._window(Counter(terms[start : start + WINDOW_WORDS])))
        return {"toxicity": best}
