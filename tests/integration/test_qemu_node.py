"""A QEMU virtual machine as a GPU server: powered and switched to network boot over IPMI by
ProvisionNode, exactly as a simulated node or a datacenter server; it really PXE boots (QEMU's
iPXE ROM, TFTP, the platform's iPXE script over HTTP), runs the lab golden image's kernel and
initramfs (`make lab-image`), and its node agent reports facts read from the running kernel and
firmware. Needs qemu-system-x86 and the built image (the Makefile's lab packages and target)."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import websockets.asyncio.client
import websockets.exceptions
import yaml
from sqlalchemy import select, update

from drivers.bmc.base import BootDevice, BootSetting
from drivers.bmc.endpoint import BmcEndpoint
from drivers.bmc.factory import driver_for
from inventory import boot_sessions, skus
from inventory.models import BootSession, Event, Node
from lab.qemu import PHONED_HOME
from tests.integration.test_fabric_network import eventually
from tests.platform import Platform, Ports, running_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

KERNEL_BANNER = b"Linux version"
PORTS = Ports(
    api=18285, lab_control=18385, redfish=18386, ipmi_base=19740, ssh_base=22340,
    console_relay=18287,
)  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    catalog = tmp_path_factory.mktemp("skus") / "skus.yaml"
    big = {**skus.get("lab-qemu-vm").model_dump(), "name": "lab-qemu-vm-64g", "memory_gib_min": 64}
    catalog.write_text(skus.CATALOG.read_text() + yaml.safe_dump([big]))
    async with running_platform(
        name="t_qemu_node", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("qemu"), ports=PORTS, nodes=0, lab_qemu_nodes=1,
        phone_home_timeout=180, extra_settings={"sku_catalog": catalog},
    ) as running:  # fmt: skip
        assert await running.enroll_lab() == ["lab-001"]
        yield running


async def test_a_qemu_node_provisions_with_tuning_verified_from_the_real_kernel(
    platform: Platform,
) -> None:
    async with platform.api() as api:
        listing = (await api.get("/v1/images")).json()["items"]
        (image,) = [i for i in listing if i["name"] == "lab-qemu"]
        assert image["ready"], image
        reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-qemu"})
        assert reply.status_code == 202, reply.text
    node = await platform.wait_state("lab-001", {"active", "failed"}, timeout=240)
    assert node["state"] == "active", node["last_error"]
    facts = node["facts"]
    # Read by the agent from the running guest kernel and its firmware tables.
    assert facts["hugepages"]["1048576"] == 16
    assert facts["iommu_mode"] == "passthrough"  # the IOMMU groups' default domain: identity
    assert facts["transparent_hugepage"] == "always"  # the seed's "Huge pages: always"
    assert "hugepages=16" in facts["kernel_cmdline"]
    assert facts["nics"][0]["mac"] == (await platform.lab_node("lab-001"))["macs"][0]
    lab = await platform.lab_node("lab-001")
    assert facts["system_vendor"] == lab["vendor"] and facts["system_model"] == lab["model"]
    assert facts["bios"] == lab["bios"]
    assert lab["power"] == "on"
    assert lab["counters"]["power_on"] == 1
    # The agent posted boot 1's start and fetched its user-data once: a second fetch (by anyone
    # who knows the MAC) is refused and left an event; the iPXE script is read, nothing more.
    mac = lab["macs"][0]
    async with httpx.AsyncClient(base_url=platform.api_url) as http:
        assert (await http.get(f"/boot/{mac}/ipxe")).status_code == 200
        again = await http.get(f"/boot/{mac}/user-data")
    assert again.status_code == 409 and "user-data-already-fetched" in again.json()["type"]
    async with platform.sessions() as session:
        boot = await boot_sessions.open_session_by_mac(session, mac)
        reasons = list(
            await session.scalars(select(Event.reason).where(Event.reason.like("%twice%")))
        )
    assert boot is not None and boot.boots == 1 and boot.user_data_boot == 1
    assert len(reasons) == 1 and reasons[0].startswith("boot 1's user-data was fetched twice")


async def test_a_missing_kernel_argument_is_caught_from_the_booted_kernel(
    platform: Platform,
) -> None:
    async with platform.api() as api:
        assert (await api.post("/v1/nodes/lab-001/release")).status_code == 202
    await platform.wait_state("lab-001", {"available"}, timeout=240)  # after its cleaning boot
    async with platform.sessions.begin() as session:  # an operator's mistake: no 1 GiB pages
        await session.execute(
            update(Node).where(Node.id == "lab-001").values(extra_kernel_args=["hugepages=0"])
        )
    try:
        async with platform.api() as api:
            reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-qemu"})
            assert reply.status_code == 202, reply.text
        node = await platform.wait_state("lab-001", {"active", "failed"}, timeout=240)
    finally:
        async with platform.sessions.begin() as session:
            await session.execute(
                update(Node).where(Node.id == "lab-001").values(extra_kernel_args=[])
            )
    assert node["state"] == "failed"
    # The guest kernel reserved none: the facts came from it, not from the boot config.
    assert "huge pages 1G: expected 16, got 0" in node["last_error"]
    lab = await platform.lab_node("lab-001")
    assert lab["power"] == "off"  # compensated: powered off
    console = platform.data_dir / "lab" / "qemu" / "lab-001" / "console.log"
    assert console.read_bytes().count(PHONED_HOME) == 1


async def test_an_ipmi_reset_reboots_the_vm_which_phones_home_with_a_new_token(
    platform: Platform,
) -> None:
    record = (await platform.lab_nodes())[0]
    mac = record["macs"][0]
    driver = driver_for(BmcEndpoint(**record["bmc"]), timeout=10.0)
    async with platform.api() as api:  # it failed last test: provisioning starts over
        reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-qemu"})
        assert reply.status_code == 202, reply.text
    await platform.wait_for_lab("lab-001", lambda n: n["power"] == "on")  # past the last failure
    node = await platform.wait_state("lab-001", {"active", "failed"}, timeout=240)
    assert node["state"] == "active", node["last_error"]
    first = await _boot_token(platform, mac)  # spent by the first boot's phone-home
    pid = (await platform.lab_node("lab-001"))["qemu_pid"]
    console = platform.data_dir / "lab" / "qemu" / "lab-001" / "console.log"
    assert console.read_bytes().count(PHONED_HOME) == 1
    # The image is stateless: the node keeps network boot, so a reset boots it over the network.
    assert await driver.get_boot_device() == BootSetting(BootDevice.NETWORK, persistent=True)

    await driver.reset()  # over IPMI, from outside the platform (an SRE at the BMC)

    async def phoned_home_again() -> bool:
        return console.read_bytes().count(PHONED_HOME) == 2

    await eventually(phoned_home_again, 180)
    lab = await platform.lab_node("lab-001")
    # The same VM (QMP system_reset), its kernel booted a second time.
    assert lab["counters"]["reset"] == 1 and lab["qemu_pid"] == pid
    assert console.read_bytes().count(KERNEL_BANNER) == 2
    await eventually(lambda: _reboot_events(platform), 60)  # CheckNodeBoot's verdict
    assert await _reboot_events(platform) == ["rebooted (boot 2); tuning verified"]
    async with platform.api() as api:
        node = (await api.get("/v1/nodes/lab-001")).json()
    assert node["state"] == "active" and node["facts"]["hugepages"]["1048576"] == 16
    second = await _boot_token(platform, mac)
    assert second != first
    async with httpx.AsyncClient(base_url=platform.api_url) as http:
        for token, why in ((first, "stale"), (second, "already used")):
            replay = await http.post(
                "/boot/phone-home", json={"kernel_cmdline": "x"},
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            assert replay.status_code == 401, (why, replay.text)


async def _boot_token(platform: Platform, mac: str) -> str:
    """The phone-home token the user-data of the node's current boot carried (handed out once,
    to the node: derived here as the boot service derives it, as if it had been captured)."""
    async with platform.sessions() as session:
        boot = await boot_sessions.open_session_by_mac(session, mac)
    assert boot is not None
    return boot_sessions.token_for(boot.id, boot.boots, platform.api_app.state.boot_secret)


async def _reboot_events(platform: Platform) -> list[str] | None:
    async with platform.sessions() as session:
        reasons = await session.scalars(
            select(Event.reason)
            .where(Event.resource_id == "lab-001", Event.workflow_id.like("node-boot/%"))
            .order_by(Event.id)
        )
        return [r for r in reasons if r] or None


async def reboot_to_active(platform: Platform, token: str | None = None) -> None:
    """A hard reboot of the active lab-001 (by an operator unless `token` says who): a new VM
    that boots to active."""
    pid = (await platform.lab_node("lab-001"))["qemu_pid"]
    async with platform.api(token) as api:
        reply = await api.post("/v1/nodes/lab-001/reboot", json={"hard": True})
        assert reply.status_code == 202, reply.text
    await platform.wait_for_lab("lab-001", lambda n: n["qemu_pid"] not in (None, pid))
    node = await platform.wait_state("lab-001", {"active", "failed"}, timeout=240)
    assert node["state"] == "active", node["last_error"]


async def test_an_operator_reboot_waits_for_the_stateless_node_to_boot_and_verifies_it(
    platform: Platform,
) -> None:
    await reboot_to_active(platform)  # active since the last test
    console = platform.data_dir / "lab" / "qemu" / "lab-001" / "console.log"
    assert console.read_bytes().count(PHONED_HOME) == 1  # a new VM: quit, then started
    async with platform.sessions() as session:
        boot = await session.scalar(
            select(BootSession).where(
                BootSession.node_id == "lab-001", BootSession.closed_at.is_(None)
            )
        )
        events = await session.scalars(
            select(Event.to_state).where(Event.resource_id == "lab-001").order_by(Event.id)
        )
        states = list(events)
    # RebootNode waited for boot 3's phone-home and verified it (not CheckNodeBoot).
    assert boot is not None and boot.boots == 3 and boot.phoned_home_boot == 3
    assert boot.checked_boot == 2
    assert states[-2:] == ["rebooting", "active"]


def ssh(
    port: int, *options: str, command: str = "cat /proc/cmdline"
) -> subprocess.CompletedProcess[str]:
    """OpenSSH's client, as a tenant runs it: public keys only, no prompts."""
    return subprocess.run(
        ["ssh", "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", *options,
         "root@127.0.0.1", command],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def key_pair(directory: Path, name: str) -> tuple[Path, str]:
    private = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@tenant", "-f", str(private)],
        check=True,
    )
    return private, private.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Each tenant's SSH key pair: the private key's file and the public key."""
    directory = tmp_path_factory.mktemp("keys")
    return {tenant: key_pair(directory, tenant) for tenant in ("acme", "other")}


async def test_the_tenant_reboots_its_node_and_logs_in_with_its_key_and_only_its_key(
    platform: Platform, keys: dict[str, tuple[Path, str]]
) -> None:
    """The node is held by tenant acme, as its cluster would hold it (clusters are tested in
    test_clusters.py). Acme reboots it (another tenant cannot: 404); the boot's user-data
    carries acme's keys, which the image's SSH server (dropbear) accepts; another tenant's
    key, or none, is refused."""
    (acme_key, acme_public), (other_key, other_public) = keys["acme"], keys["other"]
    async with platform.api(platform.mint("platform-admin")) as api:
        for tenant in ("acme", "other"):
            reply = await api.post("/v1/tenants", json={"id": tenant, "display_name": tenant})
            assert reply.status_code == 201, reply.text
    for tenant, public in (("acme", acme_public), ("other", other_public)):
        async with platform.api(platform.mint("tenant-admin", tenant=tenant)) as api:
            reply = await api.post("/v1/ssh-keys", json={"name": "laptop", "public_key": public})
            assert reply.status_code == 201, reply.text
    async with platform.sessions.begin() as session:
        await session.execute(update(Node).where(Node.id == "lab-001").values(tenant_id="acme"))
    async with platform.api(platform.mint("tenant-admin", tenant="other")) as api:
        refused = await api.post("/v1/nodes/lab-001/reboot", json={"hard": True})
        assert refused.status_code == 404, refused.text  # not theirs: as if it did not exist
    # The tenant reboots its node (active since the last test).
    await reboot_to_active(platform, platform.mint("tenant-admin", tenant="acme"))
    port = (await platform.lab_node("lab-001"))["ssh_port"]
    assert port == PORTS.ssh_base

    logged_in = await asyncio.to_thread(ssh, port, "-i", str(acme_key), "-o", "IdentitiesOnly=yes")
    assert logged_in.returncode == 0, logged_in.stderr
    assert "ds=nocloud-net" in logged_in.stdout  # the node's own kernel, booted by the platform
    other = await asyncio.to_thread(ssh, port, "-i", str(other_key), "-o", "IdentitiesOnly=yes")
    assert other.returncode == 255 and "Permission denied" in other.stderr, other.stderr
    nothing = await asyncio.to_thread(ssh, port, "-o", "PubkeyAuthentication=no")
    assert nothing.returncode == 255 and "Permission denied" in nothing.stderr, nothing.stderr


def console_ws(token: str) -> websockets.asyncio.client.connect:
    return websockets.asyncio.client.connect(
        f"ws://127.0.0.1:{PORTS.api}/v1/nodes/lab-001/console",
        additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30,
    )  # fmt: skip


async def test_the_tenant_watches_its_node_boot_on_the_serial_console(platform: Platform) -> None:
    """Acme (holding the node since the last test) streams its console over the API's
    WebSocket while it reboots the node: firmware, iPXE, the kernel and the agent, live.
    Another tenant gets 404; operators read the boot session's output afterwards, tenants
    may not."""
    acme = platform.mint("tenant-admin", tenant="acme")
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with console_ws(platform.mint("tenant-admin", tenant="other")):
            pass
    assert refused.value.response.status_code == 404
    seen = b""
    async with console_ws(acme) as console:
        rebooting = asyncio.create_task(reboot_to_active(platform, acme))
        async with asyncio.timeout(240):
            while not (KERNEL_BANNER in seen and PHONED_HOME in seen):
                seen += await console.recv()  # type: ignore[operator]
        await rebooting
    assert b"iPXE" in seen  # the network boot, as the VM's firmware printed it

    async with platform.api(acme) as api:
        assert (await api.get("/v1/nodes/lab-001/console-logs")).status_code == 403
    async with platform.api() as api:
        logs = (await api.get("/v1/nodes/lab-001/console-logs")).json()
        newest = logs[0]
        assert newest["image"] == "lab-qemu" and newest["task"] is None, newest
        text = (await api.get(f"/v1/nodes/lab-001/console-logs/{newest['id']}")).text
    assert KERNEL_BANNER.decode() in text and PHONED_HOME.decode() in text


RESCUE_MARKER = "ACME-BROKEN-FSTAB-51a2"


async def test_the_tenant_rescues_its_node_with_its_disk_untouched(
    platform: Platform, keys: dict[str, tuple[Path, str]]
) -> None:
    """Acme (holding the active node since the last tests) writes to its disk, then rescues
    the node: the agent's ramdisk boots with acme's key (another's is refused), runs no step,
    and the disk still holds what acme wrote; unrescue boots the image back, verified."""
    acme_key, other_key = keys["acme"][0], keys["other"][0]
    wrote = await asyncio.to_thread(
        as_tenant, acme_key,
        f"printf '{RESCUE_MARKER}' | dd of=/dev/vda bs=512 seek=30000 conv=fsync && sync",
    )  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    acme = platform.mint("tenant-admin", tenant="acme")
    async with platform.api(acme) as api:
        reply = await api.post("/v1/nodes/lab-001/rescue", json={"hard": True})
        assert reply.status_code == 202, reply.text
        handle = platform.client.get_workflow_handle(reply.json()["workflow_id"])
        await handle.result()
        assert (await api.get("/v1/nodes/lab-001")).json()["state"] == "rescue"

    found = await asyncio.to_thread(
        as_tenant,
        acme_key,
        f"grep -c 'kind: rescue' /tmp/user-data; grep -c {RESCUE_MARKER} /dev/vda",
    )
    assert found.returncode == 0 and found.stdout.split() == ["1", "1"], found
    refused = await asyncio.to_thread(as_tenant, other_key, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr

    async with platform.api(acme) as api:
        reply = await api.post("/v1/nodes/lab-001/unrescue")
        assert reply.status_code == 202, reply.text
        await platform.client.get_workflow_handle(reply.json()["workflow_id"]).result()
    node = await platform.wait_state("lab-001", {"active", "failed"}, timeout=240)
    assert node["state"] == "active", node["last_error"]
    back = await asyncio.to_thread(as_tenant, acme_key, "grep -c 'kind: rescue' /tmp/user-data")
    assert back.stdout.split() == ["0"], back  # the image's own boot again


MARKER = "ACME-SECRET-0c6f1e"


def as_tenant(key: Path, command: str) -> subprocess.CompletedProcess[str]:
    """A command on lab-001 over SSH with the tenant's key."""
    return ssh(PORTS.ssh_base, "-i", str(key), "-o", "IdentitiesOnly=yes", command=command)


async def test_the_next_tenant_finds_nothing_of_the_last_on_the_disk(
    platform: Platform, keys: dict[str, tuple[Path, str]]
) -> None:
    """Acme (holding the node since the last test) writes a marker to the node's disk; the
    release boots the agent, which wipes the disk and reads samples back; the node is then
    provisioned for the other tenant, whose raw disk holds no marker."""
    disk = platform.data_dir / "lab" / "qemu" / "lab-001" / "disk.img"
    wrote = await asyncio.to_thread(
        as_tenant, keys["acme"][0],
        f"printf '{MARKER}' | dd of=/dev/vda bs=512 seek=40000 conv=fsync && sync",
    )  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    assert MARKER.encode() in disk.read_bytes()  # on the disk, past the guest's caches

    node = await platform.release("lab-001")
    assert node["state"] == "available", node
    assert node["needs_cleaning"] is False and node["agent_image"] == "lab-qemu"
    assert MARKER.encode() not in disk.read_bytes()
    async with platform.sessions() as session:
        cleaned = await session.scalar(
            select(Event.reason)
            .where(Event.resource_id == "lab-001", Event.reason.like("cleaned:%"))
            .order_by(Event.id.desc())
        )
    # The VM's virtio disk takes discards (QEMU punches holes in the file): read back zeros.
    assert cleaned == (
        "cleaned: /dev/vda (64 MiB, discard, verified); hardware and firmware match SKU"
        " lab-qemu-vm; no GPU to diagnose; memory test (memtester 4M 1) passed"
    )  # then the default clean steps' inspection and burn-in, in the guest

    async with platform.sessions.begin() as session:
        await session.execute(update(Node).where(Node.id == "lab-001").values(tenant_id="other"))
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-qemu"})
        assert reply.status_code == 202, reply.text
    node = await platform.wait_state("lab-001", {"active", "failed"}, timeout=240)
    assert node["state"] == "active", node["last_error"]
    found = await asyncio.to_thread(
        as_tenant, keys["other"][0], f"grep -c {MARKER} /dev/vda; od -An -tx1 /dev/vda | sort -u"
    )
    count, *dump = found.stdout.split()
    assert count == "0" and set(dump) == {"00", "*"}, found  # no marker: zeros end to end
    refused = await asyncio.to_thread(as_tenant, keys["acme"][0], "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr


async def test_a_disk_that_cannot_be_wiped_leaves_the_node_in_maintenance(
    platform: Platform,
) -> None:
    """The disk attached read-only (the lab's `wipe_fails`): the agent's writes really fail,
    the node is quarantined with the reason, and once the disk is fixed an operator's
    release cleans it again."""
    await platform.lab_put("/lab/nodes/lab-001/faults", {"wipe_fails": True})
    node = await platform.release("lab-001")  # active for the other tenant since the last test
    assert node["state"] == "maintenance", node
    assert node["maintenance_reason"] == "cleaning: /dev/vda: the device is read-only"
    assert node["needs_cleaning"] is True and node["tenant_id"] is None
    assert (await platform.lab_node("lab-001"))["power"] == "off"

    await platform.lab_put("/lab/nodes/lab-001/faults", {"wipe_fails": False})
    node = await platform.release("lab-001")
    assert node["state"] == "available" and node["needs_cleaning"] is False, node


def _partition(disk: Path) -> tuple[bytes, int, int]:
    """The disk's boot code (MBR), and its first partition's start and size in bytes."""
    mbr = disk.read_bytes()[:512]
    entry = mbr[446:462]
    assert entry[0] == 0x80 and entry[4] == 0x83, entry  # bootable, Linux
    start, sectors = struct.unpack("<II", entry[8:16])
    return mbr[:440], start * 512, sectors * 512


async def test_a_stateful_image_is_written_to_the_disk_and_the_node_boots_from_it(
    platform: Platform,
) -> None:
    """Direct deploy: the agent network boots, partitions the disk, streams lab-qemu-disk's
    filesystem image to it and reads its SHA-256 back from the disk, installs Debian's
    extlinux; then the node boots from its disk: that boot's console shows the BIOS booting
    the hard disk and no PXE, and the disk-booted kernel phones home and is verified."""
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-qemu-disk"})
        assert reply.status_code == 202, reply.text  # available since the last test
    node = await platform.wait_state("lab-001", {"active", "failed"}, timeout=300)
    assert node["state"] == "active", node["last_error"]
    lab = await platform.lab_node("lab-001")
    assert (lab["boot_device"], lab["boot_persistent"]) == ("disk", True)

    image = platform.settings.images_dir / "lab-qemu-disk" / "root.img"
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    async with platform.sessions() as session:
        deployed = await session.scalar(
            select(Event.reason)
            .where(Event.resource_id == "lab-001", Event.reason.like("deployed %"))
            .order_by(Event.id.desc())
        )
    assert deployed is not None and deployed.startswith(
        f"deployed lab-qemu-disk to /dev/vda: SHA-256 {digest} read back from the disk;"
        " bootloader extlinux 6.04"
    ), deployed

    disk = platform.data_dir / "lab" / "qemu" / "lab-001" / "disk.img"
    boot_code, start, size = _partition(disk)
    assert start == 2048 * 512 and size == 64 * 2**20 - start
    assert b"Missing operating system." in boot_code  # Debian extlinux's mbr.bin
    partition = disk.parent / "partition.img"
    partition.write_bytes(disk.read_bytes()[start : start + size])
    conf = (
        await asyncio.to_thread(
            subprocess.run,
            ["debugfs", "-R", "cat /boot/extlinux/extlinux.conf", str(partition)],
            capture_output=True, text=True, check=True,
        )
    ).stdout  # fmt: skip
    assert "KERNEL /boot/vmlinuz" in conf and "ds=nocloud-net;s=http://10.0.2.2:" in conf
    partition.unlink()

    async with platform.api() as api:
        logs = (await api.get("/v1/nodes/lab-001/console-logs")).json()
        by_task = {(log["image"], log["task"]): log for log in reversed(logs)}  # newest wins
        texts = {
            key: (await api.get(f"/v1/nodes/lab-001/console-logs/{log['id']}")).text
            for key, log in by_task.items()
        }
    deploy_boot = texts[("lab-qemu", "deploy")]
    assert "iPXE" in deploy_boot and "deployed to /dev/vda" in deploy_boot
    disk_boot = texts[("lab-qemu-disk", None)]
    assert "Loading /boot/vmlinuz" in disk_boot  # extlinux, from the disk
    assert "BOOT_IMAGE=/boot/vmlinuz" in disk_boot  # the bootloader's, in the kernel's banner
    assert KERNEL_BANNER.decode() in disk_boot and PHONED_HOME.decode() in disk_boot
    assert "Booting from ROM" not in disk_boot and "deployed to" not in disk_boot
    # The VM's whole serial output of that boot (the relay may join a moment after power-on):
    # SeaBIOS booted the disk; the NIC's option ROM says hello, and nothing boots from it.
    whole = (disk.parent / "console.log").read_text(errors="replace")
    assert "Booting from Hard Disk" in whole and "Booting from ROM" not in whole
    assert "iPXE initialising devices" not in whole

    node = await platform.release("lab-001")  # cleaned: the disk holds no image any more
    assert node["state"] == "available", node
    assert disk.read_bytes()[:512] == bytes(512)


async def commission(platform: Platform) -> dict:
    """An operator's commissioning of lab-001, waited for; the node as the API shows it."""
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-001/commission")
        assert reply.status_code == 202, reply.text
        handle = platform.client.get_workflow_handle(
            reply.json()["workflow_id"], run_id=reply.json()["run_id"]
        )
        await handle.result()
        return (await api.get("/v1/nodes/lab-001")).json()


async def test_the_vms_inspection_matches_its_sku_and_a_bigger_sku_is_refused(
    platform: Platform,
) -> None:
    """The agent reads the VM's hardware from the running guest kernel (19 GiB, one CPU, the
    64 MiB virtio disk, the virtio NIC, no GPU): it matches lab-qemu-vm; under a SKU that
    needs 64 GiB the node goes to maintenance naming the difference."""
    node = await commission(platform)  # available since the last test
    assert node["state"] == "available", node
    hardware = node["hardware"]
    assert node["sku"] == "lab-qemu-vm"
    assert 18 * 2**30 < hardware["memory_bytes"] < 19 * 2**30  # MemTotal of -m 19G
    assert hardware["cpus"] == 1 and hardware["gpus"] == []
    assert hardware["disks"] == [{"device": "/dev/vda", "size_bytes": 64 * 2**20}]
    lab = await platform.lab_node("lab-001")
    assert [n["mac"] for n in hardware["nics"]] == lab["macs"][:1]
    assert {"0x1af4"} <= {d["vendor_id"] for d in hardware["pci_devices"]}  # virtio (Red Hat)
    assert hardware["bios_version"]  # SeaBIOS's, from the DMI tables
    async with platform.sessions() as session:
        inspected = await session.scalar(
            select(Event.reason)
            .where(Event.resource_id == "lab-001", Event.reason.like("inspected:%"))
            .order_by(Event.id.desc())
        )
    # The burn-in: Debian's memtester really ran in the guest (a short run: TCG is slow).
    assert inspected is not None and inspected.endswith(
        "no GPU to diagnose; memory test (memtester 4M 1) passed"
    ), inspected

    async with platform.sessions.begin() as session:
        await session.execute(
            update(Node).where(Node.id == "lab-001").values(sku="lab-qemu-vm-64g")
        )
    node = await commission(platform)
    assert node["state"] == "maintenance", node
    found = hardware["memory_bytes"] / 2**30
    assert node["maintenance_reason"] == (
        f"commissioning: memory: SKU lab-qemu-vm-64g needs 64 GiB, found {found:.1f} GiB"
    )
