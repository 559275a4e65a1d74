"""Key material the API needs, from settings or (embedded stack) created in the data dir."""

from __future__ import annotations

import secrets

from core.settings import Settings


def boot_token_secret(settings: Settings) -> bytes:
    if settings.boot_token_secret is not None:
        return settings.boot_token_secret.get_secret_value().encode()
    path = settings.data_dir / "boot-token-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()
