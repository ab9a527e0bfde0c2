"""Assignment on the request path: a request for a prompt or a model that a running experiment splits
gets one of its variants, and the row records which.

A sticky experiment hashes the end user's id (the request's `user` field, or the header the experiment
names) with the experiment's id: the same user gets the same variant for the experiment's whole life,
on every replica and after restarts, while two experiments split the same users independently. A
request without that id is assigned at random, like a per-request experiment. The running experiments of
a tenant are kept for `CACHE_S`, so a request never waits on the metadata database and a start or stop
reaches every replica within that time. An experiment is not a safety check: when the database cannot be
read, requests keep the last split known (or none) rather than fail.

At most one experiment applies to a request: a prompt experiment when the request names the prompt
(without pinning a `version`, which is how one asks for a variant on purpose), else a model experiment
for the model the request asks for, the prompt's model included.

A promoted model experiment is a route, not a split: every request for its target gets the winner's
model, on the same cache as the splits (so a promote or a retire reaches every replica within
`CACHE_S`). A request in a prompt experiment is rewritten too, since the operator moved the model for
everyone, but its row keeps recording the prompt experiment, the one it takes part in.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from proxy.experiments.store import HEADER_PREFIX, ExperimentInfo, ExperimentStore, Variant

log = logging.getLogger(__name__)

# A request header by name (case-insensitive, as werkzeug's `request.headers.get`).
Header = Callable[[str], str | None]
CACHE_S = 2.0
_MAX_CACHED = 4096


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the request's row records."""

    experiment: str
    variant: str


def pick(experiment: ExperimentInfo, subject: str | None, rng: random.Random) -> Variant:
    """The variant for an end user (`subject`), or a random one when there is none to stick to."""
    total = sum(v.weight for v in experiment.variants)
    if subject is None:
        point = rng.randrange(total)
    else:
        digest = hashlib.sha256(f"{experiment.id}\x00{subject}".encode()).digest()
        # 64 bits modulo a total of 100: the bias is below 1e-17, far under any measurable split.
        point = int.from_bytes(digest[:8], "big") % total
    for variant in experiment.variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("weights are positive, so the point falls in one of them")


def subject_of(experiment: ExperimentInfo, payload: Mapping[str, Any], header: Header) -> str | None:
    """The id an experiment sticks to, or None (per-request experiments, or no id sent)."""
    if experiment.sticky == "user":
        user = payload.get("user")
        return user if isinstance(user, str) and user else None
    if experiment.sticky.startswith(HEADER_PREFIX):
        return header(experiment.sticky.removeprefix(HEADER_PREFIX)) or None
    return None


@dataclass(frozen=True, slots=True)
class _Running:
    prompts: Mapping[str, ExperimentInfo]
    models: Mapping[str, ExperimentInfo]
    # Target model -> (promoted experiment, its winner).
    promoted: Mapping[str, tuple[ExperimentInfo, Variant]]


_NONE = _Running(prompts={}, models={}, promoted={})


def _winners(listed: list[ExperimentInfo]) -> dict[str, tuple[ExperimentInfo, Variant]]:
    found = {}
    for experiment in listed:
        if experiment.kind != "model" or experiment.state != "promoted":
            continue
        winner = next((v for v in experiment.variants if v.name == experiment.winner), None)
        if winner is None or winner.model is None:
            # The store never writes this; a hand-edited row must not fail every request of the tenant.
            log.warning("promoted experiment %r has no usable winner; not routing", experiment.name)
            continue
        found[experiment.target] = (experiment, winner)
    return found


class Experiments:
    """Running experiments per tenant, each tenant's kept for `CACHE_S`."""

    def __init__(
        self,
        store: ExperimentStore,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._rng = rng or random.SystemRandom()
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, _Running]] = {}

    def _running(self, tenant: str) -> _Running:
        now = self._clock()
        found = self._cached.get(tenant)
        if found is not None and found[0] > now:
            return found[1]
        try:
            listed = self._store.routing(tenant)
        except SQLAlchemyError:
            # Every request of the tenant passes here, not only those naming a prompt: an unreachable
            # metadata database must not stop the traffic, so the last split known (or none) stays.
            log.warning("experiments of tenant %r unreadable; keeping the last known", tenant, exc_info=True)
            running = found[1] if found is not None else _NONE
            with self._lock:
                self._cached[tenant] = (now + CACHE_S, running)
            return running
        running = _Running(
            prompts={e.target: e for e in listed if e.kind == "prompt" and e.state == "running"},
            models={e.target: e for e in listed if e.kind == "model" and e.state == "running"},
            promoted=_winners(listed),
        )
        with self._lock:
            if len(self._cached) >= _MAX_CACHED:
                self._cached.clear()
            self._cached[tenant] = (now + CACHE_S, running)
        return running

    def assign_prompt(
        self,
        tenant: str,
        options: dict[str, Any],
        payload: Mapping[str, Any],
        header: Header,
    ) -> Assignment | None:
        """Point the request's `warden` options (changed in place) at a variant's version or label."""
        name = options.get("prompt")
        if not isinstance(name, str) or "version" in options:
            return None
        experiment = self._running(tenant).prompts.get(name)
        if experiment is None:
            return None
        variant = pick(experiment, subject_of(experiment, payload, header), self._rng)
        options.pop("label", None)
        if variant.version is not None:
            options["version"] = variant.version
        else:
            options["label"] = variant.label
        return Assignment(experiment.name, variant.name)

    def assign_model(self, tenant: str, payload: dict[str, Any], header: Header) -> Assignment | None:
        """Rewrite the request's `model` (in place) to a variant's model, or to the winner's model of
        a promoted experiment."""
        model = payload.get("model")
        if not isinstance(model, str):
            return None
        running = self._running(tenant)
        promoted = running.promoted.get(model)
        if promoted is not None:
            experiment, variant = promoted
        else:
            found = running.models.get(model)
            if found is None:
                return None
            experiment, variant = found, pick(found, subject_of(found, payload, header), self._rng)
        payload["model"] = variant.model
        return Assignment(experiment.name, variant.name)

    def route_promoted(self, tenant: str, payload: dict[str, Any]) -> bool:
        """Rewrite `model` (in place) to a promoted winner's, for a request already in a prompt
        experiment; True if it changed."""
        model = payload.get("model")
        if not isinstance(model, str):
            return False
        promoted = self._running(tenant).promoted.get(model)
        if promoted is None or promoted[1].model == model:
            return False
        payload["model"] = promoted[1].model
        return True
