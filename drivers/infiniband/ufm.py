"""Partitions through NVIDIA UFM's REST API (aiohttp, basic auth).

Request shapes come from the NVIDIA UFM Enterprise REST API Guide, "PKey GUIDs REST API"
(https://docs.nvidia.com/networking/display/UFMEnterpriseRESTAPILatest/PKey+GUIDs+Rest+API,
the /ufmRest/resources/ set that replaced the deprecated /ufmRest/actions/ one):

- GET    /ufmRest/resources/pkeys?guids_data=true          all PKeys, by PKey, with their GUIDs
- GET    /ufmRest/resources/pkeys/<pkey>?guids_data=true   one PKey ("Get a Specific PKey")
- POST   /ufmRest/resources/pkeys/add                      an empty PKey {pkey, index0, ip_over_ib,
                                                           mtu_limit, service_level, rate_limit}
- POST   /ufmRest/resources/pkeys                          add GUIDs {pkey, guids, membership,
                                                           index0, ip_over_ib}
- DELETE /ufmRest/resources/pkeys/<pkey>/guids/<g1>,<g2>   remove GUIDs
- DELETE /ufmRest/resources/pkeys/<pkey>                   remove the PKey

A PKey is a hex string in 0x0-0x7fff exclusive; a GUID a hex string of 16-20 characters. The
guide shows no answers: the listing's shape (an object keyed by PKey, each with `partition`,
`ip_over_ib` and `guids: [{guid, membership, index0}]`, GUIDs as bare hex) is the one published
UFM clients read (Mellanox/ib-kubernetes' UFM plugin, openBCE's ufmclient); a GET of a missing
PKey answers an empty object there, and a 404 is read the same way here.

Every call reads before it writes and writes only the difference, so a repeated call sends no
write. Errors carry `retryable`: refused credentials are not (UfmAuthError), nor are requests UFM
rejects as invalid (InvalidPartition); 5xx answers, timeouts and unreachable servers are. Retrying
is the caller's business (activity retry policies), not this client's.

UFM names partitions it creates over REST itself (`api_pkey_0x...`): the guide's /add has no name
field, so `ensure_pkey`'s name is not sent and `partitions()` reports UFM's names.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Mapping
from typing import Any

import aiohttp

from drivers.infiniband.base import (
    InvalidPartition,
    Member,
    Membership,
    Partition,
    PartitionError,
    check_pkey,
    normalize_guid,
)

log = logging.getLogger("metalplane.infiniband")

API_ROOT = "/ufmRest"
MANAGEMENT_PKEY = 0x7FFF  # UFM's read-only management partition, not one this client manages


class UfmAuthError(PartitionError):
    retryable = False


def _pkey_text(pkey: int) -> str:
    return f"{pkey:#06x}"


def _ufm_guid(guid: str) -> str:
    """0x0002c90300a1b2c3 -> 0002c90300a1b2c3, the form UFM lists GUIDs in."""
    return normalize_guid(guid)[2:]


def _guid_from_ufm(text: Any) -> str:
    try:
        return normalize_guid(f"{int(str(text), 16):016x}")
    except ValueError:
        raise PartitionError(f"UFM listed {text!r} as a GUID", retryable=False) from None


class UfmPartitions:
    """`PartitionManager` over one UFM server's REST API."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        timeout: float = 15.0,
        verify_tls: bool = True,
        ip_over_ib: bool = True,
        index0: bool = False,
        mtu_limit: int | None = None,
        service_level: int | None = None,
        rate_limit: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.ip_over_ib = ip_over_ib
        self.index0 = index0
        # The guide: only pkey is required; fields not sent take UFM's defaults.
        self._qos = {
            k: v
            for k, v in (
                ("mtu_limit", mtu_limit),
                ("service_level", service_level),
                ("rate_limit", rate_limit),
            )
            if v is not None
        }
        self._authorization = aiohttp.encode_basic_auth(username, password)
        self._verify_tls = verify_tls
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"UfmPartitions({self.url})"

    async def partitions(self) -> Mapping[int, Partition]:
        listing = await self._get("list PKeys", "/resources/pkeys", {"guids_data": "true"})
        found: dict[int, Partition] = {}
        for key, data in listing.items():
            try:
                pkey = int(key, 16)
            except ValueError:
                raise PartitionError(f"UFM listed {key!r} as a PKey", retryable=False) from None
            if pkey != MANAGEMENT_PKEY:
                found[pkey] = _partition(pkey, data)
        return found

    async def ensure_pkey(self, pkey: int, name: str) -> None:
        check_pkey(pkey)
        if await self._pkey(pkey) is not None:
            return
        body = {
            "pkey": _pkey_text(pkey),
            "index0": self.index0,
            "ip_over_ib": self.ip_over_ib,
            **self._qos,
        }
        try:
            await self._request(
                f"create PKey {_pkey_text(pkey)}", "POST", "/resources/pkeys/add", body
            )
        except InvalidPartition:
            # Another worker may have created it between our GET and POST.
            if await self._pkey(pkey) is None:
                raise
        log.info("%r: created PKey %s (for %s)", self, _pkey_text(pkey), name)

    async def add_members(self, pkey: int, members: Collection[Member]) -> None:
        check_pkey(pkey)
        wanted: dict[str, Membership] = {}
        for member in members:
            guid = normalize_guid(member.guid)
            membership = Membership(member.membership)
            if wanted.setdefault(guid, membership) != membership:
                raise InvalidPartition(f"{guid} is asked for as both full and limited member")
        if not wanted:
            return
        current = await self._pkey(pkey)
        if current is None:
            raise InvalidPartition(f"PKey {_pkey_text(pkey)} does not exist (ensure_pkey first)")
        have = {m.guid: m.membership for m in current.members}
        # One POST per membership: the body carries one membership for all its GUIDs.
        for membership in Membership:
            guids = sorted(
                g for g, m in wanted.items() if m is membership and have.get(g) is not membership
            )
            if not guids:
                continue
            body = {
                "pkey": _pkey_text(pkey),
                "guids": [_ufm_guid(g) for g in guids],
                "membership": membership.value,
                "index0": self.index0,
                "ip_over_ib": self.ip_over_ib,
            }
            what = f"add {len(guids)} {membership} member(s) to {_pkey_text(pkey)}"
            await self._request(what, "POST", "/resources/pkeys", body)
            log.info("%r: %s", self, what)

    async def remove_members(self, pkey: int, guids: Collection[str]) -> None:
        check_pkey(pkey)
        gone = {normalize_guid(g) for g in guids}
        current = await self._pkey(pkey) if gone else None
        if current is None:
            return
        present = sorted(m.guid for m in current.members if m.guid in gone)
        if not present:
            return
        path = f"/resources/pkeys/{_pkey_text(pkey)}/guids/" + ",".join(map(_ufm_guid, present))
        what = f"remove {len(present)} member(s) from {_pkey_text(pkey)}"
        await self._request(what, "DELETE", path, missing_ok=True)
        log.info("%r: %s", self, what)

    async def remove_pkey(self, pkey: int) -> None:
        check_pkey(pkey)
        if await self._pkey(pkey) is None:
            return
        what = f"delete PKey {_pkey_text(pkey)}"
        await self._request(what, "DELETE", f"/resources/pkeys/{_pkey_text(pkey)}", missing_ok=True)
        log.info("%r: %s", self, what)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- HTTP -------------------------------------------------------------------------------

    async def _pkey(self, pkey: int) -> Partition | None:
        what = f"get PKey {_pkey_text(pkey)}"
        data = await self._get(
            what, f"/resources/pkeys/{_pkey_text(pkey)}", {"guids_data": "true"}, missing_ok=True
        )
        return _partition(pkey, data) if data else None

    async def _get(
        self, what: str, path: str, params: dict[str, str], *, missing_ok: bool = False
    ) -> dict[str, Any]:
        body = await self._request(what, "GET", path, params=params, missing_ok=missing_ok)
        if body is None:
            return {}
        try:
            document = json.loads(body)
        except ValueError:
            raise PartitionError(f"{what}: UFM sent no JSON", retryable=False) from None
        if not isinstance(document, dict):
            raise PartitionError(f"{what}: UFM sent no JSON object", retryable=False)
        return document

    async def _request(
        self,
        what: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> bytes | None:
        """The answer's body; None for a 404 when `missing_ok`."""
        session = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                async with session.request(
                    method, f"{self.url}{API_ROOT}{path}", json=body, params=params
                ) as response:
                    status, content = response.status, await response.read()
        except TimeoutError as exc:
            raise PartitionError(f"{what}: no answer from {self.url} in {self.timeout}s") from exc
        except aiohttp.ClientError as exc:
            raise PartitionError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if status == 404 and missing_ok:
            return None
        if status < 400:
            return content
        detail = f"{what}: UFM answered {status} {content[:200].decode(errors='replace')}".rstrip()
        if status in (401, 403):
            raise UfmAuthError(f"{what}: UFM refused the credentials ({status})")
        if status >= 500 or status in (408, 429):
            raise PartitionError(detail)
        raise InvalidPartition(detail)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": self._authorization, "Accept": "application/json"},
                connector=aiohttp.TCPConnector(limit=8, ssl=None if self._verify_tls else False),
            )
        return self._session


def _partition(pkey: int, data: Any) -> Partition:
    if not isinstance(data, dict):
        raise PartitionError(f"UFM described PKey {pkey:#06x} as {data!r}", retryable=False)
    members = set()
    for entry in data.get("guids") or []:
        if not isinstance(entry, dict):
            raise PartitionError(f"UFM listed {entry!r} in {pkey:#06x}", retryable=False)
        membership = entry.get("membership", Membership.FULL.value)
        if membership not in (Membership.FULL, Membership.LIMITED):
            raise PartitionError(
                f"UFM lists {entry.get('guid')} in {pkey:#06x} as {membership!r}", retryable=False
            )
        members.add(Member(_guid_from_ufm(entry.get("guid")), Membership(membership)))
    return Partition(pkey, str(data.get("partition") or ""), frozenset(members))
