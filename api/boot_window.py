"""How long a boot's phone-home token is good, from the boot's start."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request


def boot_ttl(request: Request) -> timedelta:
    """The boot session TTL: a stateless node's session stays open while it is active, but
    each boot's token lasts only this long."""
    return timedelta(seconds=request.app.state.settings.boot_session_ttl_seconds)
