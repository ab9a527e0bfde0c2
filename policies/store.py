"""Which policy applies to a request, from the configured files, reloaded when they change.

A request gets the most specific policy whose scope matches it (more scope keys = more specific;
on a tie the earlier file wins); with none, the unscoped policy of the files, else the built-in
`policies/default.yaml`. Files are checked for changes at most once per `reload_interval`: a file
that fails to parse, validate, compile or pass its own tests is rejected as a whole, the previous
policies stay active, and the error is logged and counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from time import monotonic

from policies.document import Policy, PolicyError, load_policy_file, merge
from policies.engine import CompiledPolicy
from policies.runtime import Runtime
from policies.scanners import ScannerUnavailable, checkers

log = logging.getLogger(__name__)

BUILTIN = Path(__file__).with_name("default.yaml")


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str = ""
    team: str = ""
    project: str = ""
    key: str = ""
    model: str = ""
    route: str = ""


@dataclass(frozen=True, slots=True)
class _State:
    policies: tuple[CompiledPolicy, ...]
    fallback: CompiledPolicy
    fingerprint: tuple[tuple[object, ...], ...]


class PolicyStore:
    def __init__(
        self, sources: list[str] | tuple[str, ...], runtime: Runtime, reload_interval: float = 1.0
    ) -> None:
        self._sources = [Path(s) for s in sources]
        self._runtime = runtime
        self._interval = reload_interval
        self._lock = threading.Lock()
        self.reload_failures = 0
        self.last_error = ""
        self._state = self._load()  # a broken file at start is an error, not a warning
        self._checked = monotonic()

    @property
    def policies(self) -> tuple[CompiledPolicy, ...]:
        return self._state.policies

    @property
    def fallback(self) -> CompiledPolicy:
        return self._state.fallback

    def by_name(self, name: str) -> CompiledPolicy | None:
        state = self._state
        return next((p for p in (*state.policies, state.fallback) if p.policy.name == name), None)

    def select(self, caller: Caller) -> CompiledPolicy:
        if self._interval >= 0 and monotonic() - self._checked >= self._interval:
            self.reload_if_changed()
        state = self._state
        best, best_rank = state.fallback, -1
        for compiled in state.policies:
            policy = compiled.policy
            if policy.specificity > best_rank and _matches(policy, caller):
                best, best_rank = compiled, policy.specificity
        return best

    def reload_if_changed(self) -> bool:
        """Reload when a file changed; True when new policies became active."""
        if not self._lock.acquire(blocking=False):
            return False  # another thread is reloading; keep serving the current policies
        try:
            self._checked = monotonic()
            if self._fingerprint() == self._state.fingerprint:
                return False
            try:
                self._state = self._load()
            except (PolicyError, ScannerUnavailable, OSError) as exc:
                self.reload_failures += 1
                self.last_error = str(exc)
                # Keep the old fingerprint: the file is retried after its next change or the next tick.
                log.error("policy reload rejected, previous policies stay active: %s", exc)
                return False
            self.last_error = ""
            log.info(
                "policies reloaded: %s", ", ".join(p.label for p in self._state.policies) or "(built-in)"
            )
            return True
        finally:
            self._lock.release()

    # -- loading -------------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        files: list[Path] = []
        for source in self._sources:
            if source.is_dir():
                files += sorted(p for p in source.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            else:
                files.append(source)
        return files

    def _fingerprint(self) -> tuple[tuple[object, ...], ...]:
        marks: list[tuple[object, ...]] = []
        for path in self._files():
            try:
                stat = path.stat()
            except OSError:
                marks.append((str(path), None))
                continue
            marks.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(marks)

    def _load(self) -> _State:
        fingerprint = self._fingerprint()
        resolved, builtin = read(self._files())
        compiled = []
        for policy in resolved:
            compiled_policy, failures = compile_and_test(policy, self._runtime)
            if failures:
                raise PolicyError(f"{policy.source}: its own tests fail: " + "; ".join(failures))
            compiled.append(compiled_policy)
        unscoped = [c for c in compiled if c.policy.specificity == 0]
        if len(unscoped) > 1:
            names = ", ".join(c.policy.name for c in unscoped)
            raise PolicyError(f"more than one policy has no scope ({names}): which one is the default?")
        if unscoped:
            fallback = unscoped[0]
        else:
            fallback, failures = compile_and_test(builtin, self._runtime)
            if failures:
                raise PolicyError("the built-in policy's tests fail: " + "; ".join(failures))
        scoped = tuple(c for c in compiled if c.policy.specificity > 0)
        return _State(scoped, fallback, fingerprint)


def read(files: Iterable[Path]) -> tuple[list[Policy], Policy]:
    """The policies of `files` with `extends` applied, and the built-in policy; raises PolicyError."""
    known = checkers()
    parsed = [load_policy_file(path, known) for path in files]
    builtin = load_policy_file(BUILTIN, known)
    return resolve(parsed, builtin), builtin


def compile_and_test(policy: Policy, runtime: Runtime) -> tuple[CompiledPolicy, list[str]]:
    """`policy` compiled with the runtime's models, and its own failing `tests:` (none: it may go live).

    The store refuses a policy with failures; `warden policy test` reports them.
    Raises ScannerUnavailable when a rule needs a model the runtime lacks.
    """
    compiled = CompiledPolicy(policy, runtime)
    return compiled, run_cases(compiled)


def resolve(policies: list[Policy], builtin: Policy) -> list[Policy]:
    """Apply `extends` (by policy name; `default` is the built-in unless a file defines one)."""
    names: dict[str, Policy] = {}
    for policy in policies:
        if policy.name in names:
            raise PolicyError(
                f"{policy.source}: metadata.name: policy {policy.name!r} is also defined in "
                f"{names[policy.name].source}"
            )
        names[policy.name] = policy
    pool = {builtin.name: builtin, **names}

    def flat(policy: Policy, seen: tuple[str, ...]) -> Policy:
        if not policy.extends:
            return policy
        if policy.extends in seen:
            raise PolicyError(f"{policy.source}: extends: a cycle ({' -> '.join((*seen, policy.extends))})")
        parent = pool.get(policy.extends)
        if parent is None:
            raise PolicyError(f"{policy.source}: extends: no policy named {policy.extends!r}")
        return merge(flat(parent, (*seen, policy.name)), policy)

    return [flat(p, (p.name,)) for p in policies]


def _matches(policy: Policy, caller: Caller) -> bool:
    scope = policy.scope
    checks = (
        ("tenants", caller.tenant),
        ("teams", caller.team),
        ("projects", caller.project),
        ("keys", caller.key),
        ("routes", caller.route),
    )
    for key, value in checks:
        if scope[key] and value not in scope[key]:
            return False
    return not scope["models"] or any(fnmatchcase(caller.model, p) for p in scope["models"])


def run_cases(compiled: CompiledPolicy) -> list[str]:
    """Run the policy's own `tests:`; one message per failing case."""
    from policies.evaluate import evaluate_text

    failures = []
    for case in compiled.policy.tests:
        result = evaluate_text(compiled, case.stage, case.text)
        problems = []
        if result["decision"] != case.decision:
            problems.append(f"decision {result['decision']!r}, expected {case.decision!r}")
        if case.expect_text is not None and result["text"] != case.expect_text:
            problems.append(f"text {result['text']!r}, expected {case.expect_text!r}")
        kinds = {f["kind"] for f in result["findings"]}
        missing = [k for k in case.kinds if k not in kinds]
        if missing:
            problems.append(f"no finding {', '.join(missing)} (found: {', '.join(sorted(kinds)) or 'none'})")
        if problems:
            where = f"{compiled.policy.source}:{case.line}" if case.line else compiled.policy.source
            failures.append(f"{where}: test {case.name!r}: " + ", ".join(problems))
    return failures
