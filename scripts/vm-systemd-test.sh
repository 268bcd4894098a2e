#!/usr/bin/env bash
# Run test scripts inside a qemu VM in which systemd is pid 1 on cgroup v2, the layout of a
# current Kubernetes node: the host's newest Debian kernel, booting a Debian bookworm userland
# with systemd (scripts/mkroot-systemd.sh, made once and cached) from an initramfs.
#
#   scripts/vm-systemd-test.sh [TEST_SCRIPT...]   (default: every scripts/vm-tests-systemd/*.sh)
#
# The initramfs holds that userland, the runtime $BERTH at /vm/bin (with the shared libraries
# ldd lists), a busybox rootfs for containers at /vm/rootfs, the test scripts, and a unit
# (berth-vmtest.service, wanted by multi-user.target) that runs them with BERTH, ROOTFS and
# VM_TESTS_DIR set, prints `VMTEST-DONE passed=N failed=M skipped=K` and powers off. A busybox
# /init first copies the root into a tmpfs (no pivot_root from the initramfs itself, which
# container runtimes need) and switch_roots into systemd.
#
# The output protocol is scripts/vm-test.sh's: `ok`, `FAIL`, `skip` lines, then
# `N passed, M failed` alone on the last line; exit status 0 only if the VM reported no failure.
#
# Environment: BERTH (default target/release/berth), VM_CRI_TEST (the executable of
# tests/cri.rs, for scripts/vm-tests-systemd/cri.sh), VM_KERNEL, VM_ACCEL (tcg, or kvm),
# VM_CMDLINE (more kernel parameters: systemd.unified_cgroup_hierarchy=0 boots systemd on
# cgroup v1), VM_TIMEOUT (default 1800 s), VM_LOG, BUSYBOX (default /bin/busybox),
# BERTH_TEST_CACHE.
#
# The kernel's modules for networks, netfilter, IPVS, overlayfs and the I/O schedulers go in
# too (the Swarm suite's dockerd and its routing mesh, containerd's snapshotter), with the
# client suites' scripts (scripts/clients/) at /vm/clients.
# Needs (Debian): qemu-system-x86 linux-image-amd64 busybox-static debootstrap cpio.
set -euo pipefail

log() { printf 'vm-systemd-test: %s\n' "$*"; }
die() { printf 'vm-systemd-test: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
BERTH=${BERTH:-$repo/target/release/berth}
BUSYBOX=${BUSYBOX:-/bin/busybox}
VM_TIMEOUT=${VM_TIMEOUT:-1800}
VM_LOG=${VM_LOG:-}

tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=("$here"/vm-tests-systemd/*.sh)
for t in "${tests[@]}"; do [ -f "$t" ] || die "test script $t not found"; done
[ -x "$BERTH" ] || die "runtime binary $BERTH not found (cargo build --release, or set BERTH)"
BERTH=$(readlink -f "$BERTH")
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
kernel=${VM_KERNEL:-$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)}
[ -n "$kernel" ] && [ -r "$kernel" ] || die "no readable kernel in /boot/vmlinuz-*: apt-get install linux-image-amd64"
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: apt-get install busybox-static"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/berth-vm-systemd.XXXXXX")
qpid=
cleanup() {
    [ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start=$(date +%s)

root=$work/root
mkdir -p "$root"
log "the systemd userland (scripts/mkroot-systemd.sh, cached)"
"$here/mkroot-systemd.sh" "$work/root.tar"
tar -C "$root" -xf "$work/root.tar"
rm -f "$work/root.tar"

mkdir -p "$root/vm/bin" "$root/vm/tests" "$root/newroot"
BUSYBOX=$BUSYBOX "$here/mkrootfs.sh" "$root/vm/rootfs" >/dev/null
cp "$BUSYBOX" "$root/vm/busybox"
rt_name=$(basename "$BERTH")
if ! { command -v strip >/dev/null && strip --strip-debug -o "$root/vm/bin/$rt_name" "$BERTH" 2>/dev/null; }; then
    cp -L "$BERTH" "$root/vm/bin/$rt_name"
fi
chmod 0755 "$root/vm/bin/$rt_name"
for lib in $(ldd "$BERTH" 2>/dev/null | awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}' || true); do
    [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
done
i=0
for t in "${tests[@]}"; do
    i=$((i + 1))
    install -m 0755 "$t" "$root/vm/tests/$(printf '%02d-%s' "$i" "$(basename "$t")")"
done

# The CRI test's executable (VM_CRI_TEST, tests/cri.rs built) and a static pause for its
# image: there is no compiler in the VM.
if [ -n "${VM_CRI_TEST:-}" ]; then
    mkdir -p "$root/vm/files"
    strip --strip-debug -o "$root/vm/files/cri-test" "$VM_CRI_TEST" 2>/dev/null ||
        cp "$VM_CRI_TEST" "$root/vm/files/cri-test"
    chmod 0755 "$root/vm/files/cri-test"
    cc -static -Os -o "$root/vm/files/pause" "$repo/tests/cri_support/pause.c" ||
        die "cannot build tests/cri_support/pause.c with cc -static"
    log "adding the CRI test $VM_CRI_TEST and a static pause"
fi
# The daemons stay off: the tests run daemons of their own.
rm -f "$root"/etc/systemd/system/multi-user.target.wants/{containerd,docker}.service \
    "$root"/etc/systemd/system/sockets.target.wants/docker.socket
# The modules the tests load (modprobe, so that dependencies and aliases resolve): overlayfs
# (containerd's and dockerd's snapshotters), bridges, veth, vxlan, netfilter, nf_tables and
# IPVS (dockerd's networks and Swarm's routing mesh), bfq (blkio weights on cgroup v1).
kver=${kernel##*/vmlinuz-}
mods=/lib/modules/$kver
[ -d "$mods/kernel" ] || die "no modules for $kver in $mods (apt-get install linux-image-amd64)"
mkdir -p "$root$mods"
cp "$mods"/modules.* "$root$mods/"
for m in kernel/net kernel/lib kernel/crypto kernel/block kernel/fs/overlayfs \
    kernel/drivers/net/vxlan kernel/drivers/net/veth.ko kernel/drivers/net/dummy.ko; do
    [ -e "$mods/$m" ] || continue
    mkdir -p "$(dirname "$root$mods/$m")"
    cp -a "$mods/$m" "$root$mods/$m"
done
mkdir -p "$root/vm/clients"
cp "$here/clients/lib.sh" "$here/clients/swarm.sh" "$root/vm/clients/"
# debootstrap leaves no /etc/hosts, which containerd's CRI plugin copies into each pod.
[ -e "$root/etc/hosts" ] || printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"

# Stage 1 (busybox /init): the root into a tmpfs, then systemd; the unit runs vm/run.sh.
install -m 0755 "$here/vm-systemd/init" "$root/init"
install -m 0755 "$here/vm-systemd/run.sh" "$root/vm/run.sh"
install -m 0644 "$here/vm-checks.sh" "$root/vm/checks.sh"
echo "RT_NAME=$rt_name" > "$root/vm/env"
install -m 0644 "$here/vm-systemd/berth-vmtest.service" "$root/etc/systemd/system/"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../berth-vmtest.service "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"

initrd=$work/initrd.gz
log "packing the initramfs"
(cd "$root" && find . | cpio -o -H newc --quiet -R 0:0) | gzip -1 > "$initrd"
rm -rf "$root"
log "initramfs: $(du -h "$initrd" | cut -f1), made in $(( $(date +%s) - start )) s"

# TCG unless asked for KVM: some hosts (nested, micro-VMs; this project's own) offer a /dev/kvm
# on which the guest hangs in its firmware (see scripts/vm-test.sh).
accel=${VM_ACCEL:-tcg}
console=$work/console.log
log "booting $kernel (accel $accel, timeout ${VM_TIMEOUT}s${VM_CMDLINE:+, $VM_CMDLINE})"
vm_start=$(date +%s)
timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 -accel "$accel" -nographic -no-reboot \
    -m 4096 -smp 2 -nic none -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet systemd.show_status=0 ${VM_CMDLINE:-}" \
    </dev/null >"$console" 2>&1 &
qpid=$!
qrc=0
wait "$qpid" || qrc=$?
qpid=
clean=$work/console.txt
sed -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' "$console" > "$clean"
grep -a -E '^(vmtest: |ok |FAIL |skip )' "$clean" || true
done_line=$(grep -a '^VMTEST-DONE ' "$clean" | tail -n 1 || true)
status=0
if [ -n "$done_line" ]; then
    passed=$(echo "$done_line" | sed -n 's/.*passed=\([0-9]*\).*/\1/p')
    failed=$(echo "$done_line" | sed -n 's/.*failed=\([0-9]*\).*/\1/p')
    log "VM finished in $(( $(date +%s) - vm_start ))s (qemu exit status $qrc)"
    if [ "$failed" != 0 ] || [ "$passed" = 0 ]; then status=1; fi
else
    passed=$(grep -a -c '^ok ' "$clean" || true)
    failed=$(( $(grep -a -c '^FAIL ' "$clean" || true) + 1 ))
    log "FAIL: the VM stopped without a summary (qemu exit status $qrc); last console lines:"
    tail -n 30 "$clean" | sed 's/^/  | /'
    status=1
fi
if [ -n "$VM_LOG" ]; then
    cp "$clean" "$VM_LOG"
    log "console log kept in $VM_LOG"
elif [ "$status" != 0 ]; then
    keep=$(mktemp /var/tmp/berth-vm-systemd-console.XXXXXX)
    cp "$clean" "$keep"
    log "console log kept in $keep"
fi
log "total time $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed"
exit "$status"
