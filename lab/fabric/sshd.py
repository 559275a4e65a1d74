"""An OpenSSH server per switch, on its management address, for root.

Root logs in with the lab's password or key (both kept in the state dir). The password must
not become the machine's root password: each sshd runs in a mount namespace of its own (the
one `ip netns exec` makes) where a generated /etc/shadow is bind-mounted over the real one
(and files of the state dir over the login records, which would fill with the lab's logins),
and in a UTS namespace named after the switch (so the shell prompt says which switch it is).
The switch's FRR runtime directory is bind-mounted over /run/frr there, so a plain `vtysh` in a
login session talks to this switch's daemons, as on a real switch.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.fabric.system import in_netns, run
from lab.fabric.topology import SwitchPlan

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: it wants its absolute path
PRIVSEP_DIR = Path("/run/sshd")
PORT = 22
FRR_RUN_DIR = "/run/frr"  # vtysh's default socket directory (/var/run/frr links here)
# sshd writes every login here; the lab's logins stay in the state dir.
LOGIN_RECORDS = ("/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog")


@dataclass(frozen=True)
class Credentials:
    username: str
    password_file: str
    key_file: str  # the client's private key
    known_hosts: str

    @property
    def password(self) -> str:
        return Path(self.password_file).read_text().strip()


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


def _keypair(path: Path) -> str:
    """An ed25519 key in OpenSSH format at `path`; its public line."""
    key = Ed25519PrivateKey.generate()
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode()


def make_credentials(ssh_dir: Path, switches: list[SwitchPlan]) -> Credentials:
    """Root's password (and its shadow file), a client key, a host key per switch."""
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    _write_private(ssh_dir / "password", password.encode() + b"\n")
    hashed = run(["openssl", "passwd", "-6", "-stdin"], input=password).strip()
    _write_private(ssh_dir / "shadow", f"root:{hashed}:19000:0:99999:7:::\n".encode())
    client = _keypair(ssh_dir / "id_ed25519")
    _write_private(ssh_dir / "authorized_keys", client.encode() + b"\n")
    known = []
    for switch in switches:
        host = _keypair(ssh_dir / f"host_{switch.name}")
        known.append(f"{switch.mgmt_address} {host}")
    (ssh_dir / "known_hosts").write_text("\n".join(known) + "\n")
    return Credentials(
        username="root",
        password_file=str(ssh_dir / "password"),
        key_file=str(ssh_dir / "id_ed25519"),
        known_hosts=str(ssh_dir / "known_hosts"),
    )


def sshd_config(switch: SwitchPlan, ssh_dir: Path, pid_file: str) -> str:
    return "\n".join(
        [
            f"ListenAddress {switch.mgmt_address}:{PORT}",
            f"HostKey {ssh_dir / f'host_{switch.name}'}",
            f"PidFile {pid_file}",
            f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}",
            "PermitRootLogin yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the state dir may sit in a temp dir (mode 1777 parents)
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 64",
            "LoginGraceTime 15",
            "",
        ]
    )


def start(switch: SwitchPlan, ssh_dir: Path, state_dir: Path) -> subprocess.Popen[bytes]:
    """sshd in the foreground of its own session: its PID is the Popen's."""
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    config = state_dir / f"sshd-{switch.name}.conf"
    config.write_text(sshd_config(switch, ssh_dir, str(state_dir / f"sshd-{switch.name}.pid")))
    records = state_dir / "login-records"
    records.mkdir(exist_ok=True)
    script = " && ".join(
        [
            f"mount --bind {ssh_dir / 'shadow'} /etc/shadow",
            *(_private_copy(Path(path), records) for path in LOGIN_RECORDS),
            f"hostname {switch.name}",
            # vtysh finds this switch's FRR where it looks on any switch.
            f"mkdir -p {FRR_RUN_DIR} && mount --bind {switch.runtime_dir} {FRR_RUN_DIR}",
            f"exec {SSHD} -D -e -f {config}",
        ]
    )
    log = (state_dir / f"sshd-{switch.name}.log").open("ab")
    with log:
        return subprocess.Popen(
            in_netns(switch.netns, "unshare", "--uts", "--", "/bin/sh", "-c", script),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _private_copy(path: Path, directory: Path) -> str:
    """Shell: bind an empty file of `directory` over `path`, if `path` exists."""
    own = directory / path.name
    return f"{{ if [ -e {path} ]; then : >{own} && mount --bind {own} {path}; fi; }}"


def answers(address: str, timeout: float = 0.5) -> bool:
    """Whether an SSH server greets on address:22."""
    try:
        with socket.create_connection((address, PORT), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait_answering(addresses: list[str], timeout: float) -> list[str]:
    """The addresses still silent after `timeout`."""
    deadline = time.monotonic() + timeout
    pending = list(addresses)
    while pending and time.monotonic() < deadline:
        pending = [a for a in pending if not answers(a)]
        if pending:
            time.sleep(0.05)
    return pending
