#!/bin/sh
# mmdebstrap's customize hook for the vmw guest image: prepares the guest as
# a VMware template is prepared. Runs on the build host, after the packages
# are installed, with the guest's root directory as $1 (proc, sys and dev
# mounted in it). Part of the image's cache key.
set -eu

root=$1
here=$(dirname "$0")

# The files under rootfs/, owned by root and not writable by others,
# whoever checked them out.
tar -C "$here/rootfs" -c --owner=0 --group=0 --numeric-owner --mode=go-w . |
    tar -C "$root" -x --same-owner

# Each clone gets its own identity at first boot: machine id (empty, as
# VMware templates have it), SSH host keys (cloud-init makes them), DHCP
# leases. The build host's resolver stays out.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub
rm -f "$root"/var/lib/dhcp/*.leases
rm -f "$root/etc/resolv.conf"
if [ -x "$root/usr/sbin/netplan" ]; then
    # systemd-networkd and systemd-resolved in the first boot's transaction:
    # cloud-init writes the netplan configuration after systemd has chosen
    # the units to start, so netplan's generator cannot bring them in.
    ln -s ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
    chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service
else
    : >"$root/etc/resolv.conf"
fi

# sshd at boot; no package updates behind a test's back, and no LVM
# snapshot checks (there is no LVM) or foreign binary formats taking the
# one CPU at first boot.
chroot "$root" systemctl enable ssh.service
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service systemd-binfmt.service

# The initramfs again, now with MODULES=list.
chroot "$root" update-initramfs -u -k all
