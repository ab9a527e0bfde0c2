"""The prompt registry in the SQL metadata database: per tenant, prompts with immutable numbered
versions, labels that point at a version, and approvals.

Every change (a version written, a label moved, an approval) commits with its audit record in one
transaction. A label named in `prompts.require_approval` moves only to a version that a person other
than its author approved. People are compared by name, whatever they acted through: `session:ana` and
`cli:ana` are the same person, so nobody approves their own version by switching from the web to the CLI.
Authorization is the caller's job, as for the directory.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from proxy.db import Clock, Prompt, PromptApproval, PromptLabel, PromptVersion, Tenant, as_utc, utcnow
from proxy.identity.directory import Change, IdentityError, check_name, get_or_create_tenant
from proxy.prompts.render import Message, RenderError, Template, check_variables, parse_template, render
from proxy.settings import PROMPT_LABEL

# Not a stored label: always the newest version.
LATEST = "latest"
MAX_PARAMS_CHARS = 10_000


@dataclass(frozen=True, slots=True)
class Version:
    """One immutable version of a prompt, with the labels pointing at it and who approved it."""

    prompt: str
    number: int
    template: Template
    variables: tuple[str, ...]
    model: str | None
    params: Mapping[str, Any]
    author: str
    created_at: datetime
    labels: tuple[str, ...] = ()
    approved_by: tuple[str, ...] = ()

    @property
    def etag(self) -> str:
        """A hash of what a client renders from: the same for the same content, whatever the labels."""
        content = json.dumps(
            [self.prompt, self.number, self.template.as_json(), self.variables, self.model, self.params],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(content.encode()).hexdigest()[:32]

    def render(self, variables: Mapping[str, Any]) -> list[Message]:
        return render(self.template, self.variables, variables)


@dataclass(frozen=True, slots=True)
class Summary:
    name: str
    versions: int
    labels: Mapping[str, int]


def person(actor: str) -> str:
    """The person behind an actor label (`session:ana`, `cli:ana`, `token:admin-token`)."""
    return actor.partition(":")[2] or actor


def check_label(label: Any) -> str:
    if not isinstance(label, str) or not PROMPT_LABEL.match(label) or label == LATEST:
        raise IdentityError(
            "a label is 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit "
            f"(and not {LATEST!r})"
        )
    return label


class PromptStore:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        require_approval: Sequence[str] = (),
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._require_approval = frozenset(require_approval)
        self._clock = clock

    # -- writing -------------------------------------------------------------------------------

    def create_version(self, tenant: str, name: str, fields: Mapping[str, Any], change: Change) -> Version:
        """Write the next version of `name` (the prompt is created with its first version)."""
        check_name("a prompt name", name)
        try:
            template = parse_template(fields.get("template"))
            declared = fields.get("variables")
            if declared is not None and not isinstance(declared, list):
                raise RenderError("field 'variables' must be a list of names")
            variables = check_variables(template, declared)
        except RenderError as exc:
            raise IdentityError(str(exc)) from None
        model = fields.get("model")
        if model is not None and (not isinstance(model, str) or not 0 < len(model) <= 256):
            raise IdentityError("field 'model' must be a model name (1-256 characters)")
        params = fields.get("params") or {}
        try:
            size = len(json.dumps(params)) if isinstance(params, dict) else MAX_PARAMS_CHARS + 1
        except (TypeError, ValueError):
            size = MAX_PARAMS_CHARS + 1
        if size > MAX_PARAMS_CHARS:
            raise IdentityError(
                f"field 'params' must be a JSON object of at most {MAX_PARAMS_CHARS} characters"
            )
        try:
            with self._sessions.begin() as session:
                tenant_row = get_or_create_tenant(session, tenant)
                prompt = session.execute(
                    select(Prompt).where(Prompt.tenant_id == tenant_row.id, Prompt.name == name)
                ).scalar_one_or_none()
                if prompt is None:
                    prompt = Prompt(
                        id=uuid.uuid4().hex, tenant_id=tenant_row.id, name=name, created_at=self._clock()
                    )
                    session.add(prompt)
                    session.flush()
                newest = session.execute(
                    select(func.max(PromptVersion.number)).where(PromptVersion.prompt_id == prompt.id)
                ).scalar_one()
                row = PromptVersion(
                    id=uuid.uuid4().hex,
                    prompt_id=prompt.id,
                    number=(newest or 0) + 1,
                    template=template.as_json(),
                    variables=list(variables),
                    model=model,
                    params=params,
                    author=change.actor[:256],
                    created_at=self._clock(),
                )
                session.add(row)
                session.flush()
                version = _version(name, row)
                change.record(
                    session,
                    tenant,
                    "prompt.version",
                    f"prompt:{name}@{row.number}",
                    after=_describe(version),
                )
        except IntegrityError:
            # Two writers took the same number: the unique constraint kept the versions immutable.
            raise IdentityError(f"prompt {name!r} changed meanwhile; send the version again", 409) from None
        return version

    def approve(self, tenant: str, name: str, number: int, change: Change) -> Version:
        """Record that `change.actor` approved a version; nobody approves their own."""
        with self._sessions.begin() as session:
            prompt = self._prompt(session, tenant, name)
            row = self._version_row(session, prompt, name, number)
            if person(row.author) == person(change.actor):
                raise IdentityError(
                    f"{person(change.actor)!r} wrote version {number} of {name!r}: someone else approves it",
                    403,
                )
            approvers = self._approvers(session, row.id)
            if change.actor[:256] not in approvers:
                session.add(
                    PromptApproval(
                        id=uuid.uuid4().hex,
                        version_id=row.id,
                        approver=change.actor[:256],
                        created_at=self._clock(),
                    )
                )
                session.flush()
                change.record(
                    session,
                    tenant,
                    "prompt.approve",
                    f"prompt:{name}@{number}",
                )
            return self._load(session, prompt, name, row)

    def set_label(self, tenant: str, name: str, label: str, number: int, change: Change) -> Version:
        """Point `label` at a version; a label under the approval rule needs another person's approval."""
        check_label(label)
        with self._sessions.begin() as session:
            prompt = self._prompt(session, tenant, name)
            row = self._version_row(session, prompt, name, number)
            if label in self._require_approval:
                others = [a for a in self._approvers(session, row.id) if person(a) != person(row.author)]
                if not others:
                    raise IdentityError(
                        f"label {label!r} needs version {number} of {name!r} approved by someone other "
                        f"than its author ({person(row.author)!r}) first",
                        409,
                    )
            current = session.execute(
                select(PromptLabel).where(PromptLabel.prompt_id == prompt.id, PromptLabel.name == label)
            ).scalar_one_or_none()
            before = None
            if current is None:
                current = PromptLabel(id=uuid.uuid4().hex, prompt_id=prompt.id, name=label)
                session.add(current)
            else:
                before = {"version": self._number(session, current.version_id)}
            current.version_id, current.moved_by, current.moved_at = row.id, change.actor[:256], self._clock()
            session.flush()
            change.record(
                session,
                tenant,
                "prompt.label",
                f"prompt:{name}#{label}",
                before=before,
                after={"version": number},
            )
            return self._load(session, prompt, name, row)

    # -- reading -------------------------------------------------------------------------------

    def summaries(self, tenant: str) -> list[Summary]:
        with self._sessions() as session:
            prompts = session.execute(
                select(Prompt)
                .join(Tenant, Prompt.tenant_id == Tenant.id)
                .where(Tenant.name == tenant)
                .order_by(Prompt.name)
            ).scalars()
            found = []
            for prompt in prompts:
                count = session.execute(
                    select(func.count()).where(PromptVersion.prompt_id == prompt.id)
                ).scalar_one()
                labels = session.execute(
                    select(PromptLabel.name, PromptVersion.number)
                    .join(PromptVersion, PromptLabel.version_id == PromptVersion.id)
                    .where(PromptLabel.prompt_id == prompt.id)
                    .order_by(PromptLabel.name)
                ).all()
                found.append(Summary(prompt.name, count, {label: number for label, number in labels}))
            return found

    def get(self, tenant: str, name: str, *, label: str | None = None, number: int | None = None) -> Version:
        """A version by number, by label, or (neither) the newest; unknown ones are a 404 naming them."""
        with self._sessions() as session:
            prompt = self._prompt(session, tenant, name)
            if number is not None:
                row = self._version_row(session, prompt, name, number)
            elif label is not None and label != LATEST:
                found = session.execute(
                    select(PromptVersion)
                    .join(PromptLabel, PromptLabel.version_id == PromptVersion.id)
                    .where(PromptLabel.prompt_id == prompt.id, PromptLabel.name == label)
                ).scalar_one_or_none()
                if found is None:
                    raise IdentityError(f"prompt {name!r} has no label {label[:64]!r}", 404)
                row = found
            else:
                row = session.execute(
                    select(PromptVersion)
                    .where(PromptVersion.prompt_id == prompt.id)
                    .order_by(PromptVersion.number.desc())
                    .limit(1)
                ).scalar_one()
            return self._load(session, prompt, name, row)

    def versions(self, tenant: str, name: str) -> list[Version]:
        with self._sessions() as session:
            prompt = self._prompt(session, tenant, name)
            rows = session.execute(
                select(PromptVersion)
                .where(PromptVersion.prompt_id == prompt.id)
                .order_by(PromptVersion.number)
            ).scalars()
            return [self._load(session, prompt, name, row) for row in rows]

    def diff(self, tenant: str, name: str, old: int, new: int) -> str:
        return diff(self.get(tenant, name, number=old), self.get(tenant, name, number=new))

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _prompt(session: Session, tenant: str, name: str) -> Prompt:
        found = session.execute(
            select(Prompt)
            .join(Tenant, Prompt.tenant_id == Tenant.id)
            .where(Tenant.name == tenant, Prompt.name == name)
        ).scalar_one_or_none()
        if found is None:
            raise IdentityError(f"no prompt {name[:128]!r}", 404)
        return found

    @staticmethod
    def _version_row(session: Session, prompt: Prompt, name: str, number: int) -> PromptVersion:
        found = session.execute(
            select(PromptVersion).where(PromptVersion.prompt_id == prompt.id, PromptVersion.number == number)
        ).scalar_one_or_none()
        if found is None:
            raise IdentityError(f"prompt {name!r} has no version {number}", 404)
        return found

    @staticmethod
    def _approvers(session: Session, version_id: str) -> list[str]:
        return list(
            session.execute(
                select(PromptApproval.approver)
                .where(PromptApproval.version_id == version_id)
                .order_by(PromptApproval.created_at)
            ).scalars()
        )

    @staticmethod
    def _number(session: Session, version_id: str) -> int:
        return int(
            session.execute(select(PromptVersion.number).where(PromptVersion.id == version_id)).scalar_one()
        )

    def _load(self, session: Session, prompt: Prompt, name: str, row: PromptVersion) -> Version:
        labels = session.execute(
            select(PromptLabel.name)
            .where(PromptLabel.prompt_id == prompt.id, PromptLabel.version_id == row.id)
            .order_by(PromptLabel.name)
        ).scalars()
        return _version(name, row, tuple(labels), tuple(self._approvers(session, row.id)))


def _version(
    name: str, row: PromptVersion, labels: tuple[str, ...] = (), approved_by: tuple[str, ...] = ()
) -> Version:
    return Version(
        prompt=name,
        number=row.number,
        template=parse_template(row.template),
        variables=tuple(row.variables),
        model=row.model,
        params=dict(row.params),
        author=row.author,
        created_at=as_utc(row.created_at),
        labels=labels,
        approved_by=approved_by,
    )


def _describe(version: Version) -> dict[str, Any]:
    return {
        "number": version.number,
        "template": version.template.as_json(),
        "variables": list(version.variables),
        "model": version.model,
        "params": dict(version.params),
    }


def describe(version: Version) -> dict[str, Any]:
    """The JSON form of a version (API answers, `warden prompts show`)."""
    return {
        "prompt": version.prompt,
        "version": version.number,
        **{k: v for k, v in _describe(version).items() if k != "number"},
        "author": version.author,
        "created_at": version.created_at.isoformat(),
        "labels": list(version.labels),
        "approved_by": list(version.approved_by),
        "etag": version.etag,
    }


def diff(old: Version, new: Version) -> str:
    """A unified diff of the template text, then of the variables, model and parameters."""
    label_old, label_new = f"{old.prompt}@{old.number}", f"{new.prompt}@{new.number}"
    text = difflib.unified_diff(
        old.template.source_text().splitlines(keepends=True),
        new.template.source_text().splitlines(keepends=True),
        f"{label_old}/template",
        f"{label_new}/template",
    )

    def settings(version: Version) -> list[str]:
        shown = {"variables": list(version.variables), "model": version.model, "params": dict(version.params)}
        return (json.dumps(shown, indent=2, sort_keys=True, default=str) + "\n").splitlines(keepends=True)

    rest = difflib.unified_diff(
        settings(old), settings(new), f"{label_old}/settings", f"{label_new}/settings"
    )
    return "".join(text) + "".join(rest)
