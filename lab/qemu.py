"""QEMU virtual machines standing in for GPU servers: a lab node's power and boot device, set
through its BMC simulator (IPMI or Redfish), drive a QEMU process (TCG: no KVM here).

Power on starts QEMU, off quits it over QMP, the ACPI power button is QMP `system_powerdown`
(the lab image handles none: the BMC driver escalates to a hard off), and a reset is QMP
`system_reset` after setting the NIC's and the disk's boot indexes for the boot device of this
boot (SeaBIOS reads the boot order at every reset; with `-boot strict=on` a device without an
index does not boot): a network boot boots the NIC only, a disk boot (or no override) the disk
only, whose MBR holds what a deploy installed (a wiped disk boots nothing). The node's disk (a
virtio-blk raw file kept across boots) holds what its tenant wrote until a cleaning boot wipes
it. The serial port is a socket (console.sock, for the platform's console relay) whose output
QEMU also logs to console.log. Network
boot is real PXE: QEMU's iPXE ROM gets DHCP and a TFTP script from QEMU's user-mode network,
which chains to the platform's per-node iPXE script over HTTP (a read: Debian's ipxe-qemu ROM
cannot POST, so the image's agent posts the boot start once the kernel runs); the guest
reaches the host's loopback at 10.0.2.2. The guest's SSH server (port 22) is forwarded from a
host port on 127.0.0.1 (the lab's --ssh-base-port, 0: none), as a tenant's route to its node.
The node's BIOS settings and DMI identity reach the guest as SMBIOS tables (OEM strings
`metalplane.bios.NAME=VALUE`), where the node agent reads them as on a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lab.node import BootDev, SimNode

log = logging.getLogger(__name__)

GUEST_HOST = "10.0.2.2"  # the host's loopback as QEMU user networking shows it to the guest
PHONED_HOME = b"metalplane-agent: phoned home"
QEMU = "qemu-system-x86_64"
NIC = "nic0"  # the VM's NIC, as QOM names it under /machine/peripheral
DISK_DEVICE = "disk0"
DISK = "disk.img"
CONSOLE_SOCKET = "console.sock"  # the serial port, for the platform's console relay
# SeaBIOS's console redirection (as a server's BIOS redirects to its serial port): the port
# (COM1, 0x3f8) as the little-endian integer SeaBIOS reads from fw_cfg; iPXE and the
# bootloader print through the BIOS, so the serial console shows the firmware's boot too.
SERCON = "sercon-port"
SERCON_PORT = (0x3F8).to_bytes(2, "little")
DISK_BYTES = 64 * 2**20  # small: a wipe by zeroing takes seconds under TCG
MEMORY = "19G"  # 16 x 1 GiB huge pages of the tuning profile fit (lazily backed: ~0.7 GB RSS)


def guest_url(boot_url: str) -> str:
    """The boot service's URL as the guest reaches it."""
    parts = urlsplit(boot_url)
    if parts.hostname in ("127.0.0.1", "localhost"):
        netloc = f"{GUEST_HOST}:{parts.port}" if parts.port else GUEST_HOST
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts).rstrip("/")


def _escape(value: str) -> str:
    return value.replace(",", ",,")  # QEMU's option syntax


def disk_path(run_dir: Path) -> Path:
    return run_dir / DISK


def ensure_disk(run_dir: Path) -> Path:
    """The node's disk: a sparse raw file made at its first power-on and kept across boots,
    as a server's disk keeps what its last tenant wrote."""
    path = disk_path(run_dir)
    if not path.exists():
        with path.open("wb") as disk:
            disk.truncate(DISK_BYTES)
    return path


def command(
    node: SimNode, device: BootDev, run_dir: Path, memory: str = MEMORY, ssh_port: int = 0
) -> list[str]:
    """`ssh_port`: the host port (127.0.0.1) forwarded to the guest's SSH server; 0: none.
    The disk is a virtio-blk device that passes discards to the file (it punches holes); with
    the `wipe_fails` fault it is attached read-only, so a wipe meets real I/O errors."""
    forward = f",hostfwd=tcp:127.0.0.1:{ssh_port}-:22" if ssh_port else ""
    readonly = ",readonly=on" if node.faults.wipe_fails else ""
    oem = ",".join(
        f"value={_escape(f'metalplane.bios.{name}={value}')}"
        for name, value in sorted(node.bios_snapshot().items())
    )
    return [
        QEMU, "-accel", "tcg", "-machine", "q35", "-cpu", "max", "-m", memory, "-smp", "1",
        "-display", "none", "-monitor", "none", 
        "-chardev", f"socket,id=serial0,path={run_dir / CONSOLE_SOCKET},server=on,wait=off,"
                    f"logfile={run_dir / 'console.log'}",
        "-serial", "chardev:serial0",
        "-fw_cfg", f"name=etc/sercon-port,file={run_dir / SERCON}",
        "-qmp", f"unix:{run_dir / 'qmp.sock'},server=on,wait=off",
        "-device", "intel-iommu,intremap=off",
        "-smbios", f"type=1,manufacturer={_escape(node.vendor)},product={_escape(node.model)},"
                   f"uuid={node.uuid}",
        *(["-smbios", f"type=11,{oem}"] if oem else []),
        "-netdev", f"user,id=n0,tftp={run_dir / 'tftp'},bootfile=boot.ipxe{forward}",
        "-device", f"virtio-net-pci,netdev=n0,id={NIC},mac={node.macs[0]},"
                   f"bootindex={_boot_index(device)}",
        "-drive", f"file={disk_path(run_dir)},if=none,id=d0,format=raw,discard=unmap{readonly}",
        "-device", f"virtio-blk-pci,drive=d0,id={DISK_DEVICE},bootindex={_disk_index(device)}",
        "-boot", "strict=on",
    ]  # fmt: skip


def _boot_index(device: BootDev) -> int:
    return 1 if device == "network" else -1  # -1: not in the boot order


def _disk_index(device: BootDev) -> int:
    """The disk boots unless the network does (no override: the firmware's order, the disk)."""
    return -1 if device == "network" else 1


class Qmp:
    """A QMP session over the VM's unix socket (one command at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def execute(
        self, name: str, arguments: dict[str, object] | None = None, timeout: float = 5.0
    ) -> object:
        command: dict[str, object] = {"execute": name}
        if arguments:
            command["arguments"] = arguments
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(self.path))
            try:
                await reader.readline()  # greeting
                for message in ({"execute": "qmp_capabilities"}, command):
                    writer.write(json.dumps(message).encode() + b"\n")
                    await writer.drain()
                    while True:
                        reply = json.loads(await reader.readline())
                        if "return" in reply or "error" in reply:
                            break  # events (e.g. POWERDOWN) come in between
                    if "error" in reply:
                        raise RuntimeError(f"QMP {name}: {reply['error']}")
                return reply["return"]
            finally:
                writer.close()


class QemuRunner:
    """The PowerListener of the lab's QEMU nodes (BMC threads call in thread-safely)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, state_dir: Path, boot_url: str,
        ssh_port: Callable[[SimNode], int] = lambda node: 0,
    ) -> None:  # fmt: skip
        self.ssh_port = ssh_port
        self.loop = loop
        self.state_dir = state_dir
        self.boot_url = guest_url(boot_url)
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def available() -> bool:
        return shutil.which(QEMU) is not None

    def run_dir(self, node_id: str) -> Path:
        return self.state_dir / node_id

    def console_address(self, node_id: str) -> str:
        return f"unix://{(self.run_dir(node_id) / CONSOLE_SOCKET).resolve()}"

    # PowerListener -----------------------------------------------------------------------------
    def booting(self, node: SimNode, device: BootDev, generation: int) -> None:
        asyncio.run_coroutine_threadsafe(self._boot(node, device, generation), self.loop)

    def resetting(self, node: SimNode, device: BootDev, generation: int) -> None:
        asyncio.run_coroutine_threadsafe(self._reset(node, device, generation), self.loop)

    def stopped(self, node: SimNode) -> None:
        asyncio.run_coroutine_threadsafe(self._quit(node.node_id), self.loop)

    def soft_off_requested(self, node: SimNode, generation: int) -> None:
        asyncio.run_coroutine_threadsafe(self._qmp(node.node_id, "system_powerdown"), self.loop)

    # -------------------------------------------------------------------------------------------
    async def _boot(self, node: SimNode, device: BootDev, generation: int) -> None:
        async with self._lock:
            await self._stop(node.node_id)
            run = self.run_dir(node.node_id)
            (run / "tftp").mkdir(parents=True, exist_ok=True)
            (run / "tftp" / "boot.ipxe").write_text(
                f"#!ipxe\nchain {self.boot_url}/boot/${{net0/mac}}/ipxe\n"
            )
            (run / "console.log").unlink(missing_ok=True)
            (run / SERCON).write_bytes(SERCON_PORT)
            ensure_disk(run)
            log_file = (run / "qemu.log").open("ab")
            try:
                self._procs[node.node_id] = await asyncio.create_subprocess_exec(
                    *command(node, device, run, ssh_port=self.ssh_port(node)),
                    stdout=log_file, stderr=log_file,
                    stdin=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            finally:
                log_file.close()
            self._watch(node, generation)

    async def _reset(self, node: SimNode, device: BootDev, generation: int) -> None:
        """QMP system_reset, booting `device`: the NIC's boot index first, read at the reset."""
        proc = self._procs.get(node.node_id)
        if proc is None or proc.returncode is not None:
            await self._boot(node, device, generation)  # no VM runs: a reset powers it on
            return
        async with self._lock:
            qmp = Qmp(self.run_dir(node.node_id) / "qmp.sock")
            try:
                indexes = ((NIC, _boot_index(device)), (DISK_DEVICE, _disk_index(device)))
                for name, wanted in indexes:
                    index = {"path": f"/machine/peripheral/{name}", "property": "bootindex"}
                    if await qmp.execute("qom-get", index) != wanted:  # setting again: an error
                        await qmp.execute("qom-set", {**index, "value": wanted})
                await qmp.execute("system_reset")
            except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
                log.warning("%s: QMP reset failed: %s", node.node_id, exc)
            self._watch(node, generation)

    def _watch(self, node: SimNode, generation: int) -> None:
        """Follow the console: the node agent says when it phoned home (the OS is up)."""
        old = self._watchers.pop(node.node_id, None)
        if old is not None:
            old.cancel()
        console = self.run_dir(node.node_id) / "console.log"
        try:  # a reset keeps the console: only phone-homes after this boot began count
            seen = console.read_bytes().count(PHONED_HOME)
        except OSError:
            seen = 0
        self._watchers[node.node_id] = self.loop.create_task(
            self._follow(node, generation, console, seen)
        )

    async def _follow(self, node: SimNode, generation: int, console: Path, seen: int) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(0.2)
                with contextlib.suppress(OSError):
                    data = await asyncio.to_thread(console.read_bytes)
                    if data.count(PHONED_HOME) > seen:
                        seen = data.count(PHONED_HOME)
                        node.boot_finished(generation, error=None, phoned_home=True)

    async def _qmp(self, node_id: str, name: str) -> None:
        try:
            await Qmp(self.run_dir(node_id) / "qmp.sock").execute(name)
        except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
            log.warning("%s: QMP %s failed: %s", node_id, name, exc)

    async def _quit(self, node_id: str) -> None:
        async with self._lock:
            await self._stop(node_id)

    async def _stop(self, node_id: str) -> None:
        watcher = self._watchers.pop(node_id, None)
        if watcher is not None:
            watcher.cancel()
        proc = self._procs.pop(node_id, None)
        if proc is None or proc.returncode is not None:
            return
        await self._qmp(node_id, "quit")
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def close(self) -> None:
        async with self._lock:
            for node_id in list(self._procs):
                await self._stop(node_id)

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self._procs.items() if p.returncode is None}
