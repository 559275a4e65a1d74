"""Hooks for the `st run` in test_api_schema.py.

The stateful phase replays whole requests (Hypothesis repeats and shrinks its draws), and a POST
repeated with the same `Idempotency-Key` and body is, by design, answered with the first
response (api/idempotency.py). A create, delete and repeated create then looks to the
`ensure_resource_availability` check like a 201 for a resource that is not there. Stateful
sequences model fresh requests, so each of their POSTs gets a fresh key; the other phases keep
fuzzing the header itself (tests/integration/test_boundary.py covers replays).
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis
from schemathesis.generation.meta import TestPhase


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]
) -> None:
    if case.meta is None or case.meta.phase.name != TestPhase.STATEFUL or not case.headers:
        return
    for name in case.headers:
        if name.lower() == "idempotency-key":
            case.headers[name] = str(uuid.uuid4())
