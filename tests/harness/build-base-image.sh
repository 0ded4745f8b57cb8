#!/usr/bin/env bash
# Build a systemd-ready Debian image by debootstrap and `docker import` (no registry needed).
# Usage: build-base-image.sh [SUITE]   (bookworm by default). Prints the image name.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

suite="${1:-bookworm}"
tag="$(content_hash "$0")"
image="gpubox/base:${suite}-${tag}"

if image_exists "$image"; then echo "$image"; exit 0; fi
ensure_docker
command -v debootstrap >/dev/null || die "debootstrap missing: run 'make deps'"

mirror="$(debian_mirror)"
root="$(mktemp -d "${TMPDIR:-/tmp}/gpubox-rootfs.XXXXXX")"
cleanup_root() {
  # debootstrap mounts /proc and /sys inside the tree; never recurse into them.
  grep -F " $root/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$root" "$root.log"
}
trap cleanup_root EXIT
log "debootstrap $suite from $mirror (about 2 minutes)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,curl,gnupg,ca-certificates,iproute2,procps,less \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 30 "$root.log"; die "debootstrap failed"; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main contrib non-free non-free-firmware
deb $mirror $suite-updates main contrib non-free non-free-firmware
SOURCES
# Quiet, container-friendly systemd: no gettys, no udev triggers, no first-boot wizard.
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
            systemd-firstboot.service systemd-modules-load.service sys-kernel-config.mount; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
echo 'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/90gpubox-norecommends"
: >"$root/etc/machine-id"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
# Empty package lists must look stale, or apt's cache_valid_time would skip the first update.
touch -d @0 "$root/var/lib/apt/lists"

log "importing $image"
tar -C "$root" -c . | docker import \
  --change 'CMD ["/sbin/init"]' --change 'ENV container=docker' \
  - "$image" >/dev/null
docker tag "$image" "gpubox/base:${suite}"
echo "$image"
