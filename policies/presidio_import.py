"""Import presidio without the machine-learning stacks its package imports for engines Warden never uses.

`import presidio_analyzer` (and `presidio_anonymizer`, which imports it) loads every NLP engine it ships:
the transformers engine brings `transformers`, `torch` and through them scikit-learn, pandas and
pyarrow — about 500 MB and 5 s in every worker, for a default policy that runs pattern recognizers
only. Those imports are guarded by presidio and thinc (`except ImportError`), so hiding the two
packages while presidio loads leaves them out and changes nothing Warden calls: its PII engine is
spaCy's (`policies.pii_spacy_model`), or none.

The cost of hiding is per process: thinc then believes torch absent, which only a spaCy transformer
pipeline (`en_core_web_trf`) needs. A process that configures a spaCy model imports presidio whole.
"""

from __future__ import annotations

import importlib
import sys
import threading

_HIDDEN = ("torch", "transformers")
_lock = threading.Lock()


def load_presidio(*, whole: bool = False) -> None:
    """Import presidio_analyzer and presidio_anonymizer once per process, lean unless `whole`."""
    with _lock:
        if "presidio_anonymizer" in sys.modules and "presidio_analyzer" in sys.modules:
            return
        hidden = [] if whole else [name for name in _HIDDEN if name not in sys.modules]
        for name in hidden:
            # None in sys.modules makes `import name` raise ImportError, which presidio handles.
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            importlib.import_module("presidio_analyzer")
            importlib.import_module("presidio_anonymizer")
        finally:
            for name in hidden:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]
