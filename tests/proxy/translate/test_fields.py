"""Field rules: what a translation maps, drops, accepts only when harmless, and how it refuses."""

from __future__ import annotations

import pytest

from proxy.translate import Untranslatable
from proxy.translate.fields import FieldRules

RULES = FieldRules(
    target="the Other API",
    mapped=frozenset({"model"}),
    dropped=frozenset({"seed"}),
    harmless={"n": (1,)},
    why={"n": "One answer only."},
)


def test_mapped_dropped_harmless_and_null_fields_pass() -> None:
    RULES.check({"model": "m", "seed": 3, "n": 1, "anything": None})


def test_a_harmful_value_gets_its_reason() -> None:
    with pytest.raises(Untranslatable) as refused:
        RULES.check({"n": 2})
    assert (refused.value.message, refused.value.param) == ("One answer only.", "n")


def test_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(Untranslatable) as refused:
        RULES.check({"vendor_x": True})
    assert refused.value.message == "'vendor_x' has no equivalent in the Other API."
    assert refused.value.param == "vendor_x"


@pytest.mark.parametrize("key", ["my secret prompt text", "x" * 65, "a\nb"])
def test_a_key_that_is_not_a_field_name_is_not_echoed(key: str) -> None:
    with pytest.raises(Untranslatable) as refused:
        RULES.check({key: 1})
    assert refused.value.param is None
    assert key not in refused.value.message
