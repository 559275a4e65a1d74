#!/bin/sh
# PID 1 of a UML leaf switch (lab/fabric/uml.py starts the kernel with this as its init).
# The root filesystem is the host's, through hostfs, read-only: what the switch writes goes to
# tmpfs mounts of its own, except its runtime dir ($MP_DIR, the host's, mounted read-write for
# FRR's and sshd's logs). Then the switch's own boot script ($MP_DIR/boot.sh) runs.
# A failing step ends init: the kernel panics and the UML process exits, with this console's
# output in the lab's log, rather than a switch that half works.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q '^devtmpfs /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev  # the kernel's own
mkdir -p /dev/pts
mount -t devpts -o ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts  # login sessions' ttys
ln -sf pts/ptmx /dev/ptmx
# Not /tmp: a state dir under it (pytest's) must stay visible.
for dir in /run /var/log /var/tmp /root; do
    mount -t tmpfs -o mode=0755 tmpfs "$dir"
done
chmod 0700 /root
mkdir -p "$MP_DIR"
mount -t hostfs -o "$MP_DIR" hostfs "$MP_DIR"

# The kernel's modules (VRF, VXLAN, bridge, IPv6 are modules in Debian's UML) live in
# /usr/lib/uml/modules: modprobe reads them under a root of their own; the kernel's own
# module requests go through the same.
mkdir -p /run/kmod/lib/modules
mount -t hostfs -o ro,/usr/lib/uml/modules hostfs /run/kmod/lib/modules
printf '#!/bin/sh\nexec /usr/sbin/modprobe -d /run/kmod "$@"\n' >/run/kmod/modprobe
chmod 0755 /run/kmod/modprobe
echo /run/kmod/modprobe >/proc/sys/kernel/modprobe
# IPv6 off before any interface exists: nothing then talks on its own (the lab counts packets).
/run/kmod/modprobe ipv6 disable_ipv6=1
/run/kmod/modprobe -a bridge vxlan vrf 8021q

. "$MP_DIR/boot.sh"
echo "uml_init: $(hostname) up in $(cut -d' ' -f1 /proc/uptime)s"

# Stay, and reap the orphans the daemons leave.
set +e
while :; do
    sleep 3600 &
    wait
done
