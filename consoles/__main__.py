"""`python -m consoles` (and `metalplane console-relay`): serve the console relay."""

from __future__ import annotations

import uvicorn

from core.settings import get_settings

from .app import create_app


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        create_app(settings), host=settings.console_relay_host, port=settings.console_relay_port,
        log_level="warning",
    )  # fmt: skip


if __name__ == "__main__":
    main()
