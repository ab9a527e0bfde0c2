"""Experiments in the SQL metadata database: per tenant, a split of the traffic for a prompt or a model
between named variants by integer weights.

Weights are percentages: positive integers that sum to exactly 100, so what an operator reads in
`warden experiments show` is the share each variant gets.

States: draft -> running -> stopped. Promoting names a winner and ends the split:

- a prompt experiment moves a label through the prompt registry (its approval rule and audit apply
  unchanged) and is `stopped`: the label is the route from then on, so there is nothing to retire;
- a model experiment becomes `promoted`: requests for its target are rewritten to the winner's model
  until `retire` makes it `retired` (terminal), when requests get what they ask for again.

Only one experiment per prompt or model of a tenant is `running` or `promoted` at a time, so a request
never has two rewrites to choose from. Every change commits with its audit record in one transaction.
Authorization is the caller's job, as for the directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from proxy.db import Clock, Experiment, Tenant, as_utc, utcnow
from proxy.identity.directory import Change, IdentityError, check_name, get_or_create_tenant
from proxy.prompts.store import PromptStore, check_label

KINDS = ("prompt", "model")
STICKY = ("user", "request")
# The states in which an experiment rewrites requests: a split, or a model route to the winner.
ROUTING = ("running", "promoted")
HEADER_PREFIX = "header:"
TOTAL_WEIGHT = 100
MAX_VARIANTS = 20


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm: a prompt version or label (prompt experiments), or a model name (model experiments)."""

    name: str
    weight: int
    version: int | None = None
    label: str | None = None
    model: str | None = None

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"name": self.name, "weight": self.weight}
        for key in ("version", "label", "model"):
            if getattr(self, key) is not None:
                shown[key] = getattr(self, key)
        return shown


@dataclass(frozen=True, slots=True)
class ExperimentInfo:
    id: str
    tenant: str
    name: str
    kind: str
    target: str
    variants: tuple[Variant, ...]
    sticky: str
    state: str
    winner: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise IdentityError(f"experiment {self.name!r} has no variant {name[:64]!r}", 404)


def describe(experiment: ExperimentInfo) -> dict[str, Any]:
    """The JSON form of an experiment (API answers, `warden experiments show`)."""

    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "experiment": experiment.name,
        "kind": experiment.kind,
        "target": experiment.target,
        "variants": [v.as_json() for v in experiment.variants],
        "sticky": experiment.sticky,
        "state": experiment.state,
        "winner": experiment.winner,
        "created_by": experiment.created_by,
        "created_at": when(experiment.created_at),
        "started_at": when(experiment.started_at),
        "stopped_at": when(experiment.stopped_at),
    }


class ExperimentStore:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        prompts: PromptStore,
        model_exists: Callable[[str], bool],
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._prompts = prompts
        self._model_exists = model_exists
        self._clock = clock

    # -- writing -------------------------------------------------------------------------------

    def create(self, tenant: str, name: str, fields: Mapping[str, Any], change: Change) -> ExperimentInfo:
        """Write a draft experiment after checking its variants against the registry or the router."""
        check_name("an experiment name", name)
        kind = fields.get("kind")
        if kind not in KINDS:
            raise IdentityError("field 'kind' must be 'prompt' or 'model'")
        target = fields.get("target")
        if not isinstance(target, str) or not 0 < len(target) <= 256:
            raise IdentityError(f"field 'target' must name the {kind} the experiment splits")
        sticky = _check_sticky(fields.get("sticky", "user"))
        variants = self._check_variants(tenant, kind, target, fields.get("variants"))
        try:
            with self._sessions.begin() as session:
                tenant_row = get_or_create_tenant(session, tenant)
                if kind == "model":
                    # A draft for a model that a promoted experiment routes could never start; say so
                    # now rather than at `start`.
                    _refuse_if_busy(session, tenant_row.id, kind, target, None)
                row = Experiment(
                    id=uuid.uuid4().hex,
                    tenant_id=tenant_row.id,
                    name=name,
                    kind=kind,
                    target=target,
                    variants=[v.as_json() for v in variants],
                    sticky=sticky,
                    state="draft",
                    winner=None,
                    created_by=change.actor[:256],
                    created_at=self._clock(),
                )
                session.add(row)
                session.flush()
                info = _info(tenant, row)
                change.record(
                    session,
                    tenant,
                    "experiment.create",
                    f"experiment:{name}",
                    after=describe(info),
                )
        except IntegrityError:
            raise IdentityError(f"experiment {name!r} already exists", 409) from None
        return info

    def start(self, tenant: str, name: str, change: Change) -> ExperimentInfo:
        """Run a draft; refused while another experiment runs for the same prompt or model."""
        try:
            with self._sessions.begin() as session:
                row = self._row(session, tenant, name)
                if row.state != "draft":
                    raise IdentityError(f"experiment {name!r} is {row.state}: only a draft starts", 409)
                _refuse_if_busy(session, row.tenant_id, row.kind, row.target, row.id)
                row.state, row.started_at = "running", self._clock()
                return self._record(session, tenant, row, "experiment.start", change, {"state": "draft"})
        except IntegrityError:
            raise _raced(name) from None

    def stop(self, tenant: str, name: str, change: Change) -> ExperimentInfo:
        with self._sessions.begin() as session:
            row = self._row(session, tenant, name)
            if row.state == "promoted":
                raise IdentityError(
                    f"experiment {name!r} is promoted and routes {row.target!r} to its winner "
                    f"{row.winner!r}: retire it to end that",
                    409,
                )
            if row.state != "running":
                raise IdentityError(f"experiment {name!r} is {row.state}: only a running one stops", 409)
            row.state, row.stopped_at = "stopped", self._clock()
            return self._record(session, tenant, row, "experiment.stop", change, {"state": "running"})

    def promote(
        self, tenant: str, name: str, variant_name: str, change: Change, label: str = "production"
    ) -> ExperimentInfo:
        """Make a variant the winner and end the split. For a prompt experiment `label` moves to the
        variant's version first, through the registry (its approval rule and audit), and the
        experiment is stopped; if the registry refuses, the experiment is left as it was. A model
        experiment becomes `promoted`: its target is routed to the winner's model until `retire`."""
        current = self.get(tenant, name)
        if current.state == "draft":
            raise IdentityError(f"experiment {name!r} is a draft: start it before promoting a variant", 409)
        if current.winner is not None:
            raise IdentityError(f"experiment {name!r} already promoted {current.winner!r}", 409)
        variant = current.variant(variant_name)
        if current.kind == "prompt":
            check_label(label)
            number = variant.version
            if number is None:
                assert variant.label is not None
                number = self._prompts.get(tenant, current.target, label=variant.label).number
            self._prompts.set_label(tenant, current.target, label, number, change)
        try:
            return self._promote(tenant, name, variant, change)
        except IntegrityError:
            raise _raced(name) from None

    def _promote(self, tenant: str, name: str, variant: Variant, change: Change) -> ExperimentInfo:
        with self._sessions.begin() as session:
            row = self._row(session, tenant, name)
            before = {"state": row.state, "winner": row.winner}
            if row.winner is not None:
                raise IdentityError(f"experiment {name!r} already promoted {row.winner!r}", 409)
            if row.state not in ("running", "stopped"):
                raise IdentityError(f"experiment {name!r} is {row.state}: it cannot be promoted", 409)
            if row.kind == "model":
                # A stopped experiment may be promoted after another started for its model: two
                # rewrites of one model would leave a request with two answers.
                _refuse_if_busy(session, row.tenant_id, row.kind, row.target, row.id)
            row.winner = variant.name
            if row.state == "running":
                row.stopped_at = self._clock()
            row.state = "promoted" if row.kind == "model" else "stopped"
            return self._record(session, tenant, row, "experiment.promote", change, before)

    def retire(self, tenant: str, name: str, change: Change) -> ExperimentInfo:
        """End a promoted model experiment's route to its winner: requests get what they ask for
        again. A prompt experiment's promotion moved a label, which is undone by moving it back."""
        with self._sessions.begin() as session:
            row = self._row(session, tenant, name)
            if row.kind == "prompt":
                raise IdentityError(
                    f"experiment {name!r} splits a prompt: its promotion moved a label and routes nothing; "
                    "move the label back (`warden prompts label`) to undo it",
                    409,
                )
            if row.state != "promoted":
                raise IdentityError(
                    f"experiment {name!r} is {row.state}: only a promoted model experiment retires", 409
                )
            before = {"state": row.state, "winner": row.winner}
            row.state = "retired"
            return self._record(session, tenant, row, "experiment.retire", change, before)

    # -- reading -------------------------------------------------------------------------------

    def experiments(self, tenant: str) -> list[ExperimentInfo]:
        with self._sessions() as session:
            rows = session.execute(
                select(Experiment)
                .join(Tenant, Experiment.tenant_id == Tenant.id)
                .where(Tenant.name == tenant)
                .order_by(Experiment.name)
            ).scalars()
            return [_info(tenant, row) for row in rows]

    def get(self, tenant: str, name: str) -> ExperimentInfo:
        with self._sessions() as session:
            return _info(tenant, self._row(session, tenant, name))

    def running(self, tenant: str) -> list[ExperimentInfo]:
        return [e for e in self.routing(tenant) if e.state == "running"]

    def routing(self, tenant: str) -> list[ExperimentInfo]:
        """The experiments that rewrite requests: running splits and promoted model experiments."""
        with self._sessions() as session:
            rows = session.execute(
                select(Experiment)
                .join(Tenant, Experiment.tenant_id == Tenant.id)
                .where(Tenant.name == tenant, Experiment.state.in_(ROUTING))
            ).scalars()
            return [_info(tenant, row) for row in rows]

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _row(session: Session, tenant: str, name: str) -> Experiment:
        found = session.execute(
            select(Experiment)
            .join(Tenant, Experiment.tenant_id == Tenant.id)
            .where(Tenant.name == tenant, Experiment.name == name)
        ).scalar_one_or_none()
        if found is None:
            raise IdentityError(f"no experiment {name[:128]!r}", 404)
        return found

    @staticmethod
    def _record(
        session: Session, tenant: str, row: Experiment, action: str, change: Change, before: Any
    ) -> ExperimentInfo:
        session.flush()
        info = _info(tenant, row)
        change.record(
            session,
            tenant,
            action,
            f"experiment:{row.name}",
            before=before,
            after={"state": info.state, "winner": info.winner},
        )
        return info

    def _check_variants(self, tenant: str, kind: str, target: str, raw: Any) -> tuple[Variant, ...]:
        if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
            raise IdentityError(f"field 'variants' must be a list of 2 to {MAX_VARIANTS} variants")
        if kind == "prompt":
            self._prompts.get(tenant, target)  # a 404 naming the prompt
        elif not self._model_exists(target):
            raise IdentityError(f"no model {target[:256]!r} is routed by Warden", 404)
        checked = []
        for index, item in enumerate(raw):
            where = f"variant {index + 1}"
            if not isinstance(item, dict):
                raise IdentityError(f"{where} must be an object with 'name' and 'weight'")
            name = item.get("name")
            if not isinstance(name, str) or not 0 < len(name) <= 64:
                raise IdentityError(f"{where}: 'name' must be 1-64 characters")
            weight = item.get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise IdentityError(f"variant {name!r}: 'weight' must be a positive integer")
            checked.append((name, weight, item))
        names = [name for name, _, _ in checked]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise IdentityError(f"variant names must be unique: {', '.join(map(repr, repeated))} repeated")
        total = sum(weight for _, weight, _ in checked)
        if total != TOTAL_WEIGHT:
            raise IdentityError(
                f"variant weights are percentages and must sum to {TOTAL_WEIGHT}; these sum to {total}"
            )
        # Last: these read the registry or the router.
        variants = [self._check_arm(tenant, kind, target, name, w, item) for name, w, item in checked]
        return tuple(variants)

    def _check_arm(
        self, tenant: str, kind: str, target: str, name: str, weight: int, item: Mapping[str, Any]
    ) -> Variant:
        if kind == "model":
            model = item.get("model")
            if not isinstance(model, str) or not model:
                raise IdentityError(f"variant {name!r}: 'model' must name a model")
            if not self._model_exists(model):
                raise IdentityError(f"variant {name!r}: no model {model[:256]!r} is routed by Warden", 404)
            return Variant(name, weight, model=model)
        version, label = item.get("version"), item.get("label")
        if (version is None) == (label is None):
            raise IdentityError(f"variant {name!r}: give a prompt 'version' or a 'label', one of them")
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise IdentityError(f"variant {name!r}: 'version' must be a version number")
            self._prompts.get(tenant, target, number=version)
            return Variant(name, weight, version=version)
        self._prompts.get(tenant, target, label=check_label(label))
        return Variant(name, weight, label=label)


def _refuse_if_busy(session: Session, tenant_id: str, kind: str, target: str, own_id: str | None) -> None:
    """409 naming the experiment that already rewrites this prompt or model, if one does."""
    found = session.execute(
        select(Experiment.name, Experiment.state).where(
            Experiment.tenant_id == tenant_id,
            Experiment.kind == kind,
            Experiment.target == target,
            Experiment.state.in_(ROUTING),
            Experiment.id != (own_id or ""),
        )
    ).first()
    if found is None:
        return
    busy, state = found
    if state == "running":
        raise IdentityError(f"experiment {busy!r} already runs for {kind} {target!r}; stop it first", 409)
    raise IdentityError(
        f"experiment {busy!r} is promoted and routes {kind} {target!r} to its winner; retire it first", 409
    )


def _raced(name: str) -> IdentityError:
    # `_refuse_if_busy` names the experiment in the way; this is the database's word when another
    # one got there between that check and the commit (uq_experiments_routing_target).
    return IdentityError(
        f"experiment {name!r} cannot run: another experiment for its prompt or model started or was "
        "promoted at the same moment",
        409,
    )


def _check_sticky(value: Any) -> str:
    if value in STICKY:
        return str(value)
    if isinstance(value, str) and value.startswith(HEADER_PREFIX):
        header = value.removeprefix(HEADER_PREFIX).strip().lower()
        if 0 < len(header) <= 128 and all(c.isalnum() or c in "-_" for c in header):
            return HEADER_PREFIX + header
    raise IdentityError("field 'sticky' must be 'user', 'request' or 'header:<header-name>'")


def _info(tenant: str, row: Experiment) -> ExperimentInfo:
    return ExperimentInfo(
        id=row.id,
        tenant=tenant,
        name=row.name,
        kind=row.kind,
        target=row.target,
        variants=tuple(_variant(v) for v in row.variants),
        sticky=row.sticky,
        state=row.state,
        winner=row.winner,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        started_at=None if row.started_at is None else as_utc(row.started_at),
        stopped_at=None if row.stopped_at is None else as_utc(row.stopped_at),
    )


def _variant(raw: Mapping[str, Any]) -> Variant:
    return Variant(
        name=str(raw["name"]),
        weight=int(raw["weight"]),
        version=raw.get("version"),
        label=raw.get("label"),
        model=raw.get("model"),
    )
