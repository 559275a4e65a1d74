"""UML leaves: a user-mode-linux kernel per leaf, for what the host kernel lacks (VRF).

A UML leaf is a `linux.uml` process started in the leaf's namespace. That namespace is only
its chassis: the cable ends (veths `eth0` to the management bridge, `uplink<s>` to the spines,
`swp<p>` to the hosts) are made as for a namespace leaf, and each is joined to a tap
`u-<port>` that the kernel's vector driver attaches to (`vec<n>`, renamed to the port's name
inside). The join is a tc `mirred` redirect each way (clsact ingress, u32 match-all): a pure
wire that passes every frame unchanged; a bridge would learn MACs and drop link-local frames
(STP/LLDP/LACP group addresses), and the chassis would have a switch of its own.

The kernel's root is the host's filesystem (hostfs, read-only); lab/fabric/uml_init.sh mounts
what the switch writes and sources a boot script made here: port names and addresses, FRR's
zebra and bgpd (configurations and logs in the runtime dir as for a namespace leaf; pid files
and sockets in the switch's own /run/frr, where a plain `vtysh` finds them) and sshd on the
management address with the lab's shadow file and keys. The host reaches the switch only as
an operator would: over SSH (lab/fabric/remote.py).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from lab.fabric import frr, sshd
from lab.fabric.system import in_netns, ip_batch, run
from lab.fabric.topology import MGMT_IFNAME, FabricError, SwitchPlan, Topology

KERNEL = "linux.uml"
MEMORY = "384M"  # the host backs only the pages it touches (~80 MB)
INIT = Path(__file__).with_name("uml_init.sh")
KICK = Path(__file__).with_name("uml_kick.py")
MODPROBE = "/usr/sbin/modprobe"  # uml_init.sh runs it
MODULES = Path("/usr/lib/uml/modules")
FRR_RUN_DIR = "/run/frr"  # inside the switch
SSHD_PID = "/run/sshd.pid"  # inside the switch
PID_FILE = "uml.pid"  # in the runtime dir: the kernel's host PID
KICK_PID_FILE = "kick.pid"  # in the runtime dir
SYSCTLS = [
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
]
MATCH_ALL = "protocol all u32 match u32 0 0"
# Kill every SSH connection but the one running this (the listener's child this shell
# descends from); print how many.
DROP_SESSIONS = (
    f"listener=$(cat {SSHD_PID}); own=$$;"
    ' parent() { cut -d" " -f4 "/proc/$1/stat"; };'
    ' while [ "$own" -gt 1 ] && [ "$(parent "$own")" != "$listener" ];'
    ' do own=$(parent "$own"); done;'
    ' n=0; for p in $(pgrep -P "$listener"); do'
    ' if [ "$p" != "$own" ]; then kill "$p" && n=$((n + 1)); fi; done; echo $n'
)


def check_installed() -> None:
    """The kernel and the modprobe its init needs (Debian `user-mode-linux`, `kmod`)."""
    missing = [p for p in (KERNEL, MODPROBE) if shutil.which(p) is None]
    if missing or not MODULES.is_dir():
        raise FabricError(
            f"UML leaves need {missing or [str(MODULES)]}: apt-get install user-mode-linux kmod"
        )


def ports(switch: SwitchPlan) -> list[str]:
    """The switch's ports in the order of its `vec<n>` devices."""
    return [MGMT_IFNAME, *(u.ifname for u in switch.underlay), *switch.access_ports]


def tap(port: str) -> str:
    return f"u-{port}"


def wire(switch: SwitchPlan) -> None:
    """Taps for the kernel, each joined to its cable end in the leaf's namespace."""
    lines = []
    for port in ports(switch):
        lines += [
            f"tuntap add mode tap name {tap(port)}",  # persistent: wired before the kernel runs
            f"link set {tap(port)} up",
            f"link set {port} up",
        ]
    ip_batch(lines, switch.netns)
    tc = []
    for port in ports(switch):
        for a, b in ((port, tap(port)), (tap(port), port)):
            tc += [
                f"qdisc add dev {a} clsact",
                f"filter add dev {a} ingress {MATCH_ALL} action mirred egress redirect dev {b}",
            ]
    run(["tc", "-n", switch.netns, "-batch", "-"], input="\n".join(tc) + "\n")


def interfaces(switch: SwitchPlan, topology: Topology) -> list[str]:
    """`ip -batch` lines: port names, loopback, management and underlay addresses."""
    length = topology.mgmt_gateway.split("/")[1]
    ip = [
        *(f"link set dev vec{n} name {port}" for n, port in enumerate(ports(switch))),
        "link set lo up",
        f"address add {switch.loopback}/32 dev lo",
        f"address add {switch.mgmt_address}/{length} dev {MGMT_IFNAME}",
        f"link set {MGMT_IFNAME} up",
    ]
    for u in switch.underlay:
        ip += [f"address add {u.address} dev {u.ifname}", f"link set {u.ifname} up"]
    # Access ports stay down and unbridged until configured, as on a namespace leaf.
    return ip


def boot_script(switch: SwitchPlan, topology: Topology, state_dir: Path) -> str:
    """What the switch runs at boot, after uml_init.sh (sourced by it, `set -e`)."""
    q = shlex.quote
    state, ssh_dir, d = q(str(state_dir)), state_dir / "ssh", switch.runtime_dir
    lines = [
        f"# {switch.name} of fabric {topology.prefix}: made by lab/fabric/uml.py",
        f"hostname {switch.name}",
        # The state dir (keys, shadow file) may sit under a tmpfs of uml_init.sh.
        f"mkdir -p {state} && mount -t hostfs -o ro,{state} hostfs {state}",
        f"ip -batch {d}/ip.batch",
        f"sysctl -q -w {' '.join(SYSCTLS)}",
        f"mount --bind {q(str(ssh_dir / 'shadow'))} /etc/shadow",  # the lab's root password
        f"mkdir -p {FRR_RUN_DIR} /run/sshd && chown frr:frr {FRR_RUN_DIR}",
        shlex.join(frr.daemon_args(switch, "zebra", FRR_RUN_DIR)),
        shlex.join(frr.daemon_args(switch, "bgpd", FRR_RUN_DIR)),
        f"{sshd.SSHD} -f {q(str(state_dir / f'sshd-{switch.name}.conf'))} -E {d}/sshd.log",
    ]
    return "\n".join(lines) + "\n"


def prepare(switch: SwitchPlan, topology: Topology, state_dir: Path) -> None:
    """The boot script and sshd's configuration (after frr.prepare made the runtime dir)."""
    config = sshd.sshd_config(switch, state_dir / "ssh", SSHD_PID)
    (state_dir / f"sshd-{switch.name}.conf").write_text(config)
    runtime = Path(switch.runtime_dir)
    (runtime / "ip.batch").write_text("\n".join(interfaces(switch, topology)) + "\n")
    (runtime / "boot.sh").write_text(boot_script(switch, topology, state_dir))


def kernel_command(switch: SwitchPlan) -> list[str]:
    devices = [f"vec{n}:transport=tap,ifname={tap(p)}" for n, p in enumerate(ports(switch))]
    return [
        KERNEL,
        f"mem={MEMORY}",
        "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
        f"umid={switch.name}", f"uml_dir={switch.runtime_dir}",  # its mconsole socket
        "con0=null,fd:1", "con=null", "ssl=null",  # console to the log, no other tty
        *devices,
        f"MP_DIR={switch.runtime_dir}",  # the kernel passes it on to init's environment
        "init=/bin/sh", "--", str(INIT),  # no exec bit needed on the script
    ]  # fmt: skip


def start(switch: SwitchPlan, log_file: Path, cpu: int) -> subprocess.Popen[bytes]:
    """The kernel, in the leaf's namespace, its console to `log_file`. A panic aborts the
    process: no core file (ulimit), the console says why.

    All of a UML's host processes on one CPU: the kernel and its processes hand over to each
    other on every system call and page fault (ptrace), and a hand-over across CPUs costs an
    inter-processor wakeup; pinned, a command in the switch runs ~5x faster (vtysh: 0.7 s ->
    0.15 s here)."""
    shell = ["/bin/sh", "-c", 'ulimit -c 0 && exec "$@"', "uml"]
    argv = in_netns(switch.netns, "taskset", "-c", str(cpu), *shell)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [*argv, *kernel_command(switch)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=switch.runtime_dir,
            start_new_session=True,
        )
    Path(switch.runtime_dir, PID_FILE).write_text(f"{proc.pid}\n")
    return proc


def start_kick(switch: SwitchPlan, log_file: Path) -> subprocess.Popen[bytes]:
    """The kernel's wake-up source (lab/fabric/uml_kick.py says why), in the leaf's namespace:
    whatever stops the namespace's processes stops it too. Its complaints go to `log_file`."""
    pid_file = Path(switch.runtime_dir, PID_FILE)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            in_netns(switch.netns, sys.executable, str(KICK), str(pid_file), switch.runtime_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    Path(switch.runtime_dir, KICK_PID_FILE).write_text(f"{proc.pid}\n")
    return proc


def console_tail(log_file: Path, lines: int = 15) -> str:
    """The console's last lines before a panic (its stack trace says nothing useful)."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return "(no console log)"
    return "\n".join(text.split("Kernel panic")[0].splitlines()[-lines:])
