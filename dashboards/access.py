"""The dashboards' side of the choke point: the actor comes from the request (identified once for the
whole app), the check from `analytics.access`."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, jsonify, redirect, request

from analytics.access import Permission, held_anywhere


def page(permission: Permission) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the view only for a signed-in actor holding `permission` in some scope."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            actor = g.get("warden_actor")
            wants_json = request.path.endswith(".json")
            if actor is None:
                if wants_json:
                    return _error(401, "Sign in, or send an admin token.", "unauthenticated")
                return redirect(f"/login?next={request.full_path.rstrip('?')}")
            if not held_anywhere(actor, permission):
                return _error(403, f"permission {permission.value!r} is required", "permission_denied")
            return view(*args, **kwargs)

        guarded.warden_permission = permission.value  # type: ignore[attr-defined]
        return guarded

    return decorate


def _error(status: int, message: str, code: str) -> Any:
    response = jsonify({"error": {"message": message, "type": "access_error", "param": None, "code": code}})
    response.status_code = status
    return response
