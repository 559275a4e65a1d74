"""Key material the API needs, from settings or (embedded stack) created in the data dir."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import SecretStr

from core.settings import Settings


def boot_token_secret(settings: Settings) -> bytes:
    return _secret(settings.boot_token_secret, settings, "boot-token-secret")


def console_relay_secret(settings: Settings) -> bytes:
    """Shared by the API and the console relay: the relay opens a node's console only for a
    ticket made with it."""
    return _secret(settings.console_relay_secret, settings, "console-relay-secret")


def console_ticket(secret: bytes, node_id: str) -> str:
    return hmac.new(secret, f"console:{node_id}".encode(), hashlib.sha256).hexdigest()


def _secret(configured: SecretStr | None, settings: Settings, name: str) -> bytes:
    if configured is not None:
        return configured.get_secret_value().encode()
    path = settings.data_dir / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()
