"""A contract simulator of NVIDIA UFM's PKey REST API (aiohttp), for the UFM driver's tests.

No UFM can run here (it is licensed appliance software), so this is not UFM: it implements the
PKey part of the contract in the NVIDIA UFM Enterprise REST API Guide, "PKey GUIDs REST API"
(https://docs.nvidia.com/networking/display/UFMEnterpriseRESTAPILatest/PKey+GUIDs+Rest+API),
with real state in memory, over real HTTP with basic auth, so that the driver talks to a peer
speaking UFM's wire protocol. It manages no fabric: PKeys and their GUIDs are only recorded.

- GET    /ufmRest/resources/pkeys[?guids_data=true][&qos_conf=true]   {"0x101": {...}, ...}
- GET    /ufmRest/resources/pkeys/<pkey>[?guids_data=true]            one PKey, {} when absent
- POST   /ufmRest/resources/pkeys/add          {pkey, index0, ip_over_ib, mtu_limit,
                                                service_level, rate_limit}: an empty PKey
- POST   /ufmRest/resources/pkeys              {pkey, guids, membership | memberships, index0,
                                                ip_over_ib}: add GUIDs (creates the PKey)
- PUT    /ufmRest/resources/pkeys              same body: the PKey's GUIDs become exactly these
- DELETE /ufmRest/resources/pkeys/<pkey>                 the PKey
- DELETE /ufmRest/resources/pkeys/<pkey>/guids/<g1>,<g2>  GUIDs (ones not in the PKey ignored)

Validation follows the guide's parameter tables: PKey a hex string between 0x0 and 0x7fff
exclusive, GUIDs hex strings of 16-20 characters, membership "full" or "limited". Statuses:
200 on success, 401 (with a Basic challenge) without valid credentials, 400 for a request the
tables reject, for /add of a PKey that exists and for changes to the read-only management PKey
0x7fff, 404 for DELETE of a PKey that does not exist. Where the guide names no status for a
case, these are the simulator's choices; the driver reads any 4xx other than 401/403/404 as
"invalid, do not retry".

`inject()` makes the next requests fail (a status, a delay, or both) so that the driver's error
handling meets real HTTP failures; `requests` records every request received.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

UFM_SIM_PORT = 18760  # pinned range 18760-18769
USERNAME, PASSWORD = "admin", "123456"  # UFM's factory defaults, lab only
MANAGEMENT_PKEY = 0x7FFF

_PKEY = re.compile(r"0x[0-9a-fA-F]{1,4}")
_GUID = re.compile(r"(?:0x)?([0-9a-fA-F]{16})")
_MEMBERSHIPS = ("full", "limited")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    pass


@dataclass
class SimGuid:
    membership: str
    index0: bool


@dataclass
class SimPkey:
    name: str
    ip_over_ib: bool = True
    index0: bool = False
    mtu_limit: int = 2
    service_level: int = 0
    rate_limit: float = 2.5
    guids: dict[str, SimGuid] = field(default_factory=dict)

    def describe(self, *, guids_data: bool, qos_conf: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"partition": self.name, "ip_over_ib": self.ip_over_ib}
        if guids_data:
            out["guids"] = [
                {"guid": guid, "membership": g.membership, "index0": g.index0}
                for guid, g in sorted(self.guids.items())
            ]
        if qos_conf:
            out["qos_conf"] = {
                "mtu_limit": self.mtu_limit,
                "service_level": self.service_level,
                "rate_limit": self.rate_limit,
            }
        return out


@dataclass
class Fault:
    status: int | None
    delay: float
    count: int


class UfmSimulator:
    def __init__(self, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.pkeys: dict[int, SimPkey] = {MANAGEMENT_PKEY: SimPkey("management")}
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self._credentials = (username, password)
        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None

    def inject(self, *, status: int | None = None, delay: float = 0.0, count: int = 1) -> None:
        """The next `count` requests wait `delay` seconds, then answer `status` (if given)."""
        self._faults.append(Fault(status, delay, count))

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._authenticate, self._fail])
        pkeys = "/ufmRest/resources/pkeys"
        app.router.add_get(pkeys, self._list)
        app.router.add_get(pkeys + "/", self._list)
        app.router.add_post(pkeys + "/add", self._add_pkey)
        app.router.add_post(pkeys, self._add_guids)
        app.router.add_post(pkeys + "/", self._add_guids)
        app.router.add_put(pkeys, self._set_guids)
        app.router.add_put(pkeys + "/", self._set_guids)
        app.router.add_get(pkeys + "/{pkey}", self._get)
        app.router.add_delete(pkeys + "/{pkey}", self._delete_pkey)
        app.router.add_delete(pkeys + "/{pkey}/guids/{guids}", self._delete_guids)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = UFM_SIM_PORT) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middlewares ------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        try:
            return await handler(request)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if _basic_credentials(request.headers.get("Authorization", "")) != self._credentials:
            return web.json_response(
                {"error": "Unauthorized"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="UFM"'},
            )
        return await handler(request)

    @web.middleware
    async def _fail(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._faults:
            fault = self._faults[0]
            fault.count -= 1
            if fault.count <= 0:
                self._faults.pop(0)
            await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return web.json_response({"error": "injected fault"}, status=fault.status)
        return await handler(request)

    # -- handlers ---------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        guids, qos = _flag(request, "guids_data"), _flag(request, "qos_conf")
        return web.json_response(
            {
                f"{k:#x}": p.describe(guids_data=guids, qos_conf=qos)
                for k, p in sorted(self.pkeys.items())
            }
        )

    async def _get(self, request: web.Request) -> web.Response:
        pkey = _pkey(request.match_info["pkey"], allow_management=True)
        found = self.pkeys.get(pkey)
        if found is None:
            return web.json_response({})
        return web.json_response(
            found.describe(
                guids_data=_flag(request, "guids_data"), qos_conf=_flag(request, "qos_conf")
            )
        )

    async def _add_pkey(self, request: web.Request) -> web.Response:
        body = await _body(request)
        pkey = _pkey(body.get("pkey"))
        if pkey in self.pkeys:
            raise BadRequest(f"PKey {pkey:#x} already exists")
        self.pkeys[pkey] = SimPkey(
            name=f"api_pkey_{pkey:#x}",
            ip_over_ib=_bool(body, "ip_over_ib", True),
            index0=_bool(body, "index0", False),
            mtu_limit=_int(body, "mtu_limit", 2, 1, 5),
            service_level=_int(body, "service_level", 0, 0, 15),
            rate_limit=_rate(body),
        )
        return web.json_response({})

    async def _add_guids(self, request: web.Request) -> web.Response:
        pkey, members, body = await self._members(request)
        target = self.pkeys.setdefault(pkey, SimPkey(name=f"api_pkey_{pkey:#x}"))
        target.ip_over_ib = _bool(body, "ip_over_ib", target.ip_over_ib)
        target.guids.update(members)
        return web.json_response({})

    async def _set_guids(self, request: web.Request) -> web.Response:
        pkey, members, body = await self._members(request)
        target = self.pkeys.setdefault(pkey, SimPkey(name=f"api_pkey_{pkey:#x}"))
        target.ip_over_ib = _bool(body, "ip_over_ib", target.ip_over_ib)
        target.guids = members
        return web.json_response({})

    async def _delete_pkey(self, request: web.Request) -> web.Response:
        pkey = _pkey(request.match_info["pkey"])
        if self.pkeys.pop(pkey, None) is None:
            return web.json_response({"error": f"PKey {pkey:#x} not found"}, status=404)
        return web.json_response({})

    async def _delete_guids(self, request: web.Request) -> web.Response:
        pkey = _pkey(request.match_info["pkey"])
        guids = [_guid(g) for g in request.match_info["guids"].split(",") if g]
        target = self.pkeys.get(pkey)
        if target is None:
            return web.json_response({"error": f"PKey {pkey:#x} not found"}, status=404)
        for guid in guids:
            target.guids.pop(guid, None)
        return web.json_response({})

    async def _members(self, request: web.Request) -> tuple[int, dict[str, SimGuid], dict]:
        body = await _body(request)
        pkey = _pkey(body.get("pkey"))
        raw = body.get("guids")
        if not isinstance(raw, list) or not raw:
            raise BadRequest("guids must be a non-empty list of GUIDs")
        guids = [_guid(g) for g in raw]
        memberships = body.get("memberships")
        if memberships is None:
            memberships = [body.get("membership", "full")] * len(guids)
        if not isinstance(memberships, list) or len(memberships) != len(guids):
            raise BadRequest("memberships must give one membership per GUID")
        if any(m not in _MEMBERSHIPS for m in memberships):
            raise BadRequest("membership must be full or limited")
        index0 = _bool(body, "index0", False)
        return pkey, {g: SimGuid(m, index0) for g, m in zip(guids, memberships, strict=True)}, body


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon else None


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _pkey(value: Any, *, allow_management: bool = False) -> int:
    if not isinstance(value, str) or not _PKEY.fullmatch(value):
        raise BadRequest(f"pkey {value!r} is not a hexadecimal string such as 0x1a")
    pkey = int(value, 16)
    if pkey == MANAGEMENT_PKEY and allow_management:
        return pkey
    if pkey == MANAGEMENT_PKEY:
        raise BadRequest("the management PKey 0x7fff is read-only")
    if not 0 < pkey < MANAGEMENT_PKEY:
        raise BadRequest(f"pkey {value} is not between 0x0 and 0x7fff exclusive")
    return pkey


def _guid(value: Any) -> str:
    match = _GUID.fullmatch(value) if isinstance(value, str) and 16 <= len(value) <= 20 else None
    if match is None:
        raise BadRequest(f"GUID {value!r} is not a hexadecimal string of 16-20 characters")
    return match.group(1).lower()


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def _int(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer in {low}-{high}")
    return value


def _rate(body: dict[str, Any]) -> float:
    value = body.get("rate_limit", 2.5)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BadRequest("rate_limit must be a positive number")
    return float(value)
