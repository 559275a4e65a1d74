"""Redfish BMC simulator: sushy-tools' emulator in-process, backed by the lab's SimNodes.

One werkzeug server (threaded) serves every Redfish node of the lab as a ComputerSystem.
The stock emulator hard-codes BootSourceOverrideEnabled=Continuous and applies power after a
random delay; our systems driver applies power at once, and a request hook implements
Once/Continuous/Disabled boot overrides on the SimNode.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import bcrypt
import flask
from sushy_tools import error as fishy
from sushy_tools.emulator import main as emulator
from sushy_tools.emulator.resources.systems.base import AbstractSystemsDriver
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from lab.node import BootDev, SimNode, UnknownBiosAttribute

log = logging.getLogger(__name__)

_SYSTEM_PATH = re.compile(r"^/redfish/v1/Systems/([^/]+)")
_TO_REDFISH: dict[str, str] = {"network": "Pxe", "disk": "Hdd", "none": "None"}
_FROM_REDFISH: dict[str, BootDev] = {
    "Pxe": "network",
    "UefiHttp": "network",
    "Hdd": "disk",
    "None": "none",
}
DROP_HANG_SECONDS = 5.0  # a "dropped" request hangs this long, then the connection closes


class LabSystemsDriver(AbstractSystemsDriver):
    """sushy-tools systems driver over SimNodes (keyed by UUID)."""

    def __init__(self, nodes: Iterable[SimNode]) -> None:
        self.nodes: dict[str, SimNode] = {n.uuid: n for n in nodes}
        self._by_name = {n.node_id: n.uuid for n in self.nodes.values()}

    def _get(self, identity: str) -> SimNode:
        node = self.nodes.get(identity)
        if node is None:
            if identity in self._by_name:
                raise fishy.AliasAccessError(self._by_name[identity])
            raise fishy.NotFound(f"system {identity} not found")
        return node

    @property
    def driver(self) -> str:
        return "<metalplane-lab>"

    @property
    def systems(self) -> list[str]:
        return list(self.nodes)

    def uuid(self, identity: str) -> str:
        return self._get(identity).uuid

    def name(self, identity: str) -> str:
        return self._get(identity).node_id

    def get_power_state(self, identity: str) -> str:
        return "On" if self._get(identity).power == "on" else "Off"

    def set_power_state(self, identity: str, state: str) -> None:
        node = self._get(identity)
        if state in ("On", "ForceOn"):
            node.power_on()
        elif state == "ForceOff":
            node.power_off()
        elif state in ("GracefulShutdown", "PushPowerButton"):
            node.soft_off()
        elif state in ("ForceRestart", "GracefulRestart", "PowerCycle"):
            node.reset()
        else:
            raise fishy.NotSupportedError(f"Power state {state} is not supported", code=400)

    def get_boot_device(self, identity: str) -> str:
        return _TO_REDFISH[self._get(identity).boot_device]

    def set_boot_device(self, identity: str, boot_source: str) -> None:
        node = self._get(identity)
        device = _FROM_REDFISH.get(boot_source)
        if device is None:
            raise fishy.BadRequest(f"boot source {boot_source} not supported")
        node.set_boot(device, persistent=node.boot_persistent)

    def get_boot_mode(self, identity: str) -> str:
        return "UEFI"

    def set_boot_mode(self, identity: str, boot_mode: str) -> None:
        if boot_mode != "UEFI":
            raise fishy.BadRequest("only UEFI boot is supported")

    def get_total_memory(self, identity: str) -> int:
        return 2048  # GiB, an 8-GPU server

    def get_total_cpus(self, identity: str) -> int:
        return 2

    def get_bios(self, identity: str) -> dict[str, str]:
        return self._get(identity).bios_snapshot()

    def set_bios(self, identity: str, attributes: dict[str, Any]) -> None:
        if not isinstance(attributes, dict) or not attributes:
            raise fishy.BadRequest("PATCH needs a non-empty Attributes object")
        try:
            self._get(identity).patch_bios(attributes)
        except UnknownBiosAttribute as exc:
            raise fishy.BadRequest(str(exc)) from exc

    def reset_bios(self, identity: str) -> None:
        self._get(identity).reset_bios()

    def get_nics(self, identity: str) -> list[dict[str, str]]:
        return [{"id": mac, "mac": mac} for mac in self._get(identity).macs]

    def get_versions(self, identity: str) -> dict[str, str]:
        return {"BiosVersion": "2.1.0"}


def _install_driver(driver: LabSystemsDriver) -> None:
    """Make the emulator's memoized `app.systems` return our driver."""
    systems_getter = emulator.Application.systems.fget.__wrapped__  # type: ignore[attr-defined]
    cache: dict[Any, Any] = emulator.app.__dict__.setdefault("_cache", {})
    cache.setdefault(systems_getter, {})[(frozenset(), frozenset())] = driver
    # Managers and chassis were memoized with the previous driver (a lab restarted in-process).
    for name in ("managers", "chassis", "indicators"):
        getter = getattr(emulator.Application, name).fget.__wrapped__
        cache.pop(getter, None)


_hooks_installed = False


def _install_boot_hooks(driver_ref: Callable[[], LabSystemsDriver]) -> None:
    """PATCH Boot with Once/Continuous/Disabled, and report it back on GET."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True

    @emulator.app.before_request
    def _patch_boot() -> Any:
        request = flask.request
        match = _SYSTEM_PATH.match(request.path.rstrip("/"))
        if request.method != "PATCH" or not match or request.path.rstrip("/") != match.group(0):
            return None
        boot = (request.get_json(silent=True) or {}).get("Boot")
        if not isinstance(boot, dict):
            return None
        try:
            node = driver_ref()._get(match.group(1))
        except fishy.FishyError:
            return None  # let the emulator answer 404 / redirect
        enabled = boot.get("BootSourceOverrideEnabled")
        target = boot.get("BootSourceOverrideTarget")
        if enabled not in (None, "Once", "Continuous", "Disabled"):
            return flask.Response(f"bad BootSourceOverrideEnabled {enabled}", status=400)
        if enabled == "Disabled":
            node.set_boot("none", persistent=False)
            return flask.Response(status=204)
        device = _FROM_REDFISH.get(target) if target else node.boot_device
        if device is None:
            return flask.Response(f"unsupported BootSourceOverrideTarget {target}", status=400)
        persistent = (enabled == "Continuous") if enabled else node.boot_persistent
        node.set_boot(device, persistent=persistent)
        return flask.Response(status=204)

    @emulator.app.after_request
    def _report_boot(response: flask.Response) -> flask.Response:
        request = flask.request
        match = _SYSTEM_PATH.match(request.path.rstrip("/"))
        if request.method != "GET" or response.status_code != 200 or not match:
            return response
        if request.path.rstrip("/") != match.group(0):
            return response
        try:
            node = driver_ref()._get(match.group(1))
        except fishy.FishyError:
            return response
        doc = json.loads(response.get_data())
        boot = doc.setdefault("Boot", {})
        if node.boot_device == "none":
            boot["BootSourceOverrideEnabled"] = "Disabled"
            boot["BootSourceOverrideTarget"] = "None"
        else:
            boot["BootSourceOverrideEnabled"] = "Continuous" if node.boot_persistent else "Once"
            boot["BootSourceOverrideTarget"] = _TO_REDFISH[node.boot_device]
        allowed = boot.setdefault("BootSourceOverrideTarget@Redfish.AllowableValues", [])
        for value in ("None", "Pxe", "Hdd"):
            if value not in allowed:
                allowed.append(value)
        doc["Manufacturer"] = node.vendor
        doc["Model"] = node.model
        response.set_data(json.dumps(doc))
        return response


class FaultMiddleware:
    """WSGI wrapper: per-node delay, 503 for fail_next, and hang-then-close drops."""

    def __init__(self, app: Any, driver_ref: Callable[[], LabSystemsDriver]) -> None:
        self.app = app
        self.driver_ref = driver_ref

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        match = _SYSTEM_PATH.match(environ.get("PATH_INFO", ""))
        node = self.driver_ref().nodes.get(match.group(1)) if match else None
        if node is not None:
            if node.roll_drop():
                time.sleep(DROP_HANG_SECONDS)
                sock = environ.get("werkzeug.socket")
                if isinstance(sock, socket.socket):
                    sock.shutdown(socket.SHUT_RDWR)
                raise ConnectionAbortedError("lab: request dropped")
            if node.delay:
                time.sleep(node.delay)
            if node.take_failure():
                body = json.dumps(
                    {
                        "error": {
                            "code": "Base.1.0.ServiceTemporarilyUnavailable",
                            "message": "lab: BMC busy",
                        }
                    }
                ).encode()
                start_response(
                    "503 Service Unavailable",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))),
                        ("Retry-After", "1"),
                    ],
                )
                return [body]
        return self.app(environ, start_response)


def write_htpasswd(path: Path, users: dict[str, str]) -> None:
    # bcrypt cost 4: the emulator checks the hash on every request (cost 12 costs ~250 ms).
    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for user, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")


class _KeepAliveHandler(WSGIRequestHandler):
    # Real BMCs keep HTTP/1.1 connections open; werkzeug's default HTTP/1.0 makes every
    # Redfish call pay a new TCP connection.
    protocol_version = "HTTP/1.1"


class RedfishLab:
    """The Redfish server of a lab: one port, one ComputerSystem per Redfish node."""

    def __init__(
        self,
        nodes: Iterable[SimNode],
        users: dict[str, str],
        state_dir: Path,
        port: int,
        address: str = "127.0.0.1",
    ) -> None:
        self.driver = LabSystemsDriver(nodes)
        self.users = users
        self.state_dir = state_dir
        self.port = port
        self.address = address
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def system_url(self, node: SimNode) -> str:
        return f"http://{self.address}:{self.port}/redfish/v1/Systems/{node.uuid}"

    def add(self, node: SimNode) -> None:
        self.driver.nodes[node.uuid] = node
        self.driver._by_name[node.node_id] = node.uuid

    def start(self) -> None:
        auth_file = self.state_dir / "redfish.htpasswd"
        write_htpasswd(auth_file, self.users)
        emulator.app.config.update(SUSHY_EMULATOR_FEATURE_SET="full")
        _install_driver(self.driver)
        current_driver[0] = self.driver
        _install_boot_hooks(lambda: current_driver[0])
        wsgi = FaultMiddleware(
            emulator.RedfishAuthMiddleware(emulator.app, str(auth_file)), lambda: current_driver[0]
        )
        self._server = make_server(
            self.address, self.port, wsgi, threaded=True, request_handler=_KeepAliveHandler
        )
        # Requests hung by a drop fault must not hold up stop().
        self._server.daemon_threads = True
        self._server.block_on_close = False  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lab-redfish", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


# The emulator app is a module singleton; hooks look the active lab's driver up here.
current_driver: list[LabSystemsDriver] = [LabSystemsDriver(())]
