#!/usr/bin/env bash
# A Debian bookworm userland with systemd as its init, for the systemd VM tests
# (scripts/vm-systemd-test.sh): debootstrap --variant=minbase with systemd, systemd-sysv and
# containerd (for the CRI test with SystemdCgroup = true), the layout of a current Kubernetes
# node's init (systemd on cgroup v2); dbus and libpam-systemd (logind, and the PAM session
# that gives a lingering user's systemd instance its XDG_RUNTIME_DIR: without it, it fails);
# docker.io with apparmor (Debian's kernel enables AppArmor, and dockerd then loads its
# docker-default profile, which berth applies, with apparmor_parser), iptables, iproute2,
# procps, curl and kmod (the Swarm suite, scripts/clients/swarm.sh, whose routing mesh needs
# the IPVS this VM's kernel has).
#
#   scripts/mkroot-systemd.sh OUT.tar
#
# Made once per version of this script and kept in the cache (BERTH_TEST_CACHE, default
# /var/cache/berth-tests) under the script's hash; debootstrap's packages are kept in its
# debs-systemd/ folder. The mirror is the host's apt source for Debian (DEBIAN_MIRROR
# overrides it). Concurrent callers wait on a lock.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.tar" >&2; exit 2; }
out=$1
script=$(readlink -f "$0")
cache_dir=${BERTH_TEST_CACHE:-/var/cache/berth-tests}
key=$(sha256sum "$script" | cut -c1-16)
cached=$cache_dir/debian-systemd-$key.tar
packages=systemd,systemd-sysv,libpam-systemd,containerd,dbus,docker.io,apparmor,iptables,iproute2,procps,curl,kmod

say() { echo "mkroot-systemd: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "debootstrap needs root"

host_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }
             /^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' "$f"
    done | grep -E '/debian/?$' | head -n 1
}

work=
remove_work() {
    [ -n "$work" ] || return 0
    awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf "$work" "$cached.part"
}

build() {
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    local mirror=${DEBIAN_MIRROR:-$(host_mirror)}
    [ -n "$mirror" ] || die "no Debian mirror among the apt sources: set DEBIAN_MIRROR"
    work=$(mktemp -d /var/tmp/berth-mkroot-systemd.XXXXXX)
    trap remove_work EXIT
    local root=$work/rootfs t0
    t0=$(date +%s)
    mkdir -p "$cache_dir/debs-systemd"
    say "debootstrap --variant=minbase --include=$packages bookworm from $mirror"
    if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$cache_dir/debs-systemd" \
        bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 20 "$work/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    if grep -qF " $root/" /proc/self/mountinfo; then die "something is still mounted in $root"; fi
    rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
        "$root"/usr/share/locale/*
    echo vmtest > "$root/etc/hostname"
    # No getty, no login: the VM's test unit is all it runs.
    rm -f "$root"/etc/systemd/system/getty.target.wants/* 
    tar -C "$root" -cf "$cached.part" .
    mv "$cached.part" "$cached"
    say "made $cached in $(( $(date +%s) - t0 ))s ($(du -h "$cached" | cut -f1))"
}

mkdir -p "$cache_dir"
exec 9>"$cache_dir/debian-systemd.lock"
flock 9
[ -s "$cached" ] || build
cp "$cached" "$out"
