#!/bin/sh
# Build the lab QEMU golden image from Debian packages: the Debian cloud kernel and an
# initramfs of busybox-static, the virtio network and disk modules, the metalplane node agent,
# dropbear (the tenant's SSH server), memtester (the agent's burn-in) and extlinux (the
# bootloader the agent installs when it deploys an image to the disk); and that image, for
# the stateful lab-qemu-disk: an ext2 filesystem holding the same kernel and initramfs.
# Usage: build.sh OUT_DIR  ->  OUT_DIR/vmlinuz, OUT_DIR/initrd.img, OUT_DIR/root.img
set -eu
out=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kernel_package() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
package=$(kernel_package)
if [ -z "$package" ] && [ "$(id -u)" = 0 ]; then  # no apt index yet (a fresh machine)
    apt-get update -q >/dev/null && package=$(kernel_package)
fi
[ -n "$package" ] || { echo "no linux-image-cloud-amd64 in the apt index (apt-get update)" >&2; exit 1; }
(cd "$work" && apt-get download -q "$package" >/dev/null 2>&1) || {
    echo "apt-get download $package failed" >&2; exit 1; }
dpkg-deb -x "$work"/*.deb "$work/kernel"
root=$work/root
mkdir -p "$root/bin" "$root/etc" "$root/lib/modules" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
         failover net_failover virtio_net virtio_blk; do
    cp "$(find "$work/kernel/lib/modules" -name "$m.ko" | head -1)" "$root/lib/modules/"
done
# The tenant's SSH server: Debian's dropbear-bin with the shared libraries it links (the
# lab's Debian userland provides those dropbear's packages do not).
(cd "$work" && apt-get download -q dropbear-bin libtomcrypt1 libtommath1 >/dev/null 2>&1) || {
    echo "apt-get download dropbear-bin failed" >&2; exit 1; }
for deb in "$work"/dropbear-bin_*.deb "$work"/libtom*.deb; do dpkg-deb -x "$deb" "$work/ssh"; done
mkdir -p "$root/sbin" "$root/etc/dropbear" "$root/root" "$root/dev/pts"
cp "$work/ssh/usr/sbin/dropbear" "$root/sbin/dropbear"
mkdir -p "$root/lib/x86_64-linux-gnu" "$root/lib64"
LD_LIBRARY_PATH="$work/ssh/usr/lib/x86_64-linux-gnu" ldd "$root/sbin/dropbear" |
    awk '$2 == "=>" && $3 ~ /^\// {print $3}' |
    while read -r lib; do cp -L "$lib" "$root/lib/x86_64-linux-gnu/"; done
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
# The burn-in's memory test: Debian's memtester (it links only the C library, copied above).
(cd "$work" && apt-get download -q memtester >/dev/null 2>&1) || {
    echo "apt-get download memtester failed" >&2; exit 1; }
dpkg-deb -x "$work"/memtester_*.deb "$work/memtester"
cp "$work/memtester/usr/sbin/memtester" "$root/sbin/memtester"
# The deploy's bootloader: Debian's extlinux (it links only the C library) and its MBR code.
(cd "$work" && apt-get download -q extlinux >/dev/null 2>&1) || {
    echo "apt-get download extlinux failed" >&2; exit 1; }
dpkg-deb -x "$work"/extlinux_*.deb "$work/extlinux"
cp "$work/extlinux/usr/bin/extlinux" "$root/sbin/extlinux"
mkdir -p "$root/lib/extlinux" "$root/mnt"
cp "$work/extlinux/usr/lib/EXTLINUX/mbr.bin" "$root/lib/extlinux/mbr.bin"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf '/bin/sh\n' > "$root/etc/shells"
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/metalplane-agent" "$root/bin/metalplane-agent"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc.script"
mkdir -p "$out"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9n > "$work/initrd.img")
cp "$work"/kernel/boot/vmlinuz-* "$work/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img.tmp" && mv "$out/initrd.img.tmp" "$out/initrd.img"
# The stateful image: what the agent writes to the disk's first partition (it adds the
# bootloader's files and configuration there).
mkdir -p "$work/disk/boot"
cp "$work/vmlinuz" "$work/disk/boot/vmlinuz" && cp "$out/initrd.img" "$work/disk/boot/initrd.img"
truncate -s 24M "$work/root.img"  # mke2fs -q still says it creates a new file
mke2fs -q -t ext2 -L metalplane-root -d "$work/disk" "$work/root.img"
mv "$work/root.img" "$out/root.img.tmp" && mv "$out/root.img.tmp" "$out/root.img"
mv "$work/vmlinuz" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
echo "$package" > "$out/KERNEL"
echo "built $out from $package"
