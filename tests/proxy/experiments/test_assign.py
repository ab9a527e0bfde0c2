"""Picking a variant: the split follows the weights (chi-square), a user keeps their variant, a
per-request experiment varies, and two experiments split the same users independently."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime
from typing import cast

from sqlalchemy.exc import OperationalError

from proxy.experiments.assign import CACHE_S, Assignment, Experiments, pick
from proxy.experiments.store import ExperimentInfo, ExperimentStore, Variant

DRAWS = 2000
# For 2 degrees of freedom the chi-square tail is exactly exp(-x / 2): no statistics library needed.
P_FLOOR = 1e-6


def experiment(sticky: str = "user", id_: str = "exp-1") -> ExperimentInfo:
    return ExperimentInfo(
        id=id_,
        tenant="default",
        name="brevity",
        kind="prompt",
        target="support",
        variants=(
            Variant("a", 50, version=1),
            Variant("b", 30, version=2),
            Variant("c", 20, label="staging"),
        ),
        sticky=sticky,
        state="running",
        winner=None,
        created_by="session:ana",
        created_at=datetime(2026, 11, 29, tzinfo=UTC),
        started_at=None,
        stopped_at=None,
    )


def chi_square_p(counts: Counter[str], split: ExperimentInfo) -> float:
    total = sum(v.weight for v in split.variants)
    statistic = sum(
        (counts[v.name] - DRAWS * v.weight / total) ** 2 / (DRAWS * v.weight / total) for v in split.variants
    )
    assert len(split.variants) == 3  # the closed form below is for 2 degrees of freedom
    return math.exp(-statistic / 2)


def test_sticky_users_split_by_the_weights() -> None:
    split = experiment()
    counts = Counter(pick(split, f"user-{n}", random.Random(0)).name for n in range(DRAWS))
    assert chi_square_p(counts, split) > P_FLOOR, counts


def test_per_request_draws_split_by_the_weights() -> None:
    split = experiment("request")
    rng = random.Random(17)
    counts = Counter(pick(split, None, rng).name for _ in range(DRAWS))
    assert chi_square_p(counts, split) > P_FLOOR, counts


def test_a_user_keeps_their_variant() -> None:
    split = experiment()
    for n in range(200):
        first = pick(split, f"user-{n}", random.Random(n)).name
        # Whatever the random state: a sticky pick does not draw from it.
        assert {pick(split, f"user-{n}", random.Random(n + k)).name for k in range(5)} == {first}


def test_per_request_picks_vary_for_one_user() -> None:
    rng = random.Random(3)
    assert len({pick(experiment("request"), None, rng).name for _ in range(50)}) == 3


def test_two_experiments_split_the_same_users_independently() -> None:
    one, two = experiment(id_="exp-1"), experiment(id_="exp-2")
    rng = random.Random(0)
    same = sum(pick(one, f"user-{n}", rng).name == pick(two, f"user-{n}", rng).name for n in range(DRAWS))
    # Independent: P(same) = 0.5^2 + 0.3^2 + 0.2^2 = 0.38; the same hash would give 1.0.
    assert 0.3 < same / DRAWS < 0.46


class FlakyStore:
    """Stands in for the metadata database: counts reads, and fails when told to."""

    def __init__(self, listed: list[ExperimentInfo]) -> None:
        self.listed, self.reads, self.down = listed, 0, False

    def routing(self, tenant: str) -> list[ExperimentInfo]:
        self.reads += 1
        if self.down:
            raise OperationalError("SELECT", {}, Exception("database is gone"))
        return self.listed


def test_running_experiments_are_read_once_per_cache_period_and_kept_when_unreadable() -> None:
    now = [0.0]
    store = FlakyStore([experiment()])
    experiments = Experiments(cast(ExperimentStore, store), clock=lambda: now[0], rng=random.Random(0))

    def ask() -> Assignment | None:
        return experiments.assign_prompt("default", {"prompt": "support"}, {"user": "u-1"}, lambda _: None)

    first = ask()
    assert first is not None and first.experiment == "brevity"
    assert [ask() for _ in range(20)] == [first] * 20 and store.reads == 1
    now[0] += CACHE_S
    store.down = True
    assert ask() == first and store.reads == 2  # the last split known, not a failed request
    assert experiments.assign_prompt("acme", {"prompt": "support"}, {}, lambda _: None) is None
