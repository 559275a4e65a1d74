"""The simulated node's phone-home goes on through a platform restart (no answer, or 5xx) and
stops at a refusal of its token, as an agent does."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from core.facts import NodeFacts
from lab import boot

FACTS = NodeFacts(kernel_cmdline="console=ttyS0")


async def _serve(answers: list[int]) -> tuple[web.AppRunner, str, list[int]]:
    seen: list[int] = []

    async def phone_home(request: web.Request) -> web.Response:
        status = answers[min(len(seen), len(answers) - 1)]
        seen.append(status)
        return web.Response(status=status, text="x")

    app = web.Application()
    app.router.add_post("/boot/phone-home", phone_home)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/boot/phone-home", seen


async def test_a_phone_home_is_tried_again_while_the_platform_answers_5xx() -> None:
    runner, url, seen = await _serve([503, 502, 202])
    try:
        async with aiohttp.ClientSession() as client:
            await boot._phone_home(client, {"url": url, "token": "t"}, FACTS)
    finally:
        await runner.cleanup()
    assert seen == [503, 502, 202]


async def test_a_refused_token_is_final() -> None:
    runner, url, seen = await _serve([401])
    try:
        async with aiohttp.ClientSession() as client:
            with pytest.raises(boot.BootConfigError, match="phone-home refused: 401"):
                await boot._phone_home(client, {"url": url, "token": "t"}, FACTS)
    finally:
        await runner.cleanup()
    assert seen == [401]


async def test_no_answer_is_tried_again_until_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(boot, "PHONE_HOME_RETRY_SECONDS", 1.0)
    async with aiohttp.ClientSession() as client:
        with pytest.raises(boot.BootConfigError, match="phone-home POST failed"):
            await boot._phone_home(
                client, {"url": "http://127.0.0.1:9/boot/phone-home", "token": "t"}, FACTS
            )
