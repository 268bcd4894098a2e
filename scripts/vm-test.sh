#!/usr/bin/env bash
# Run test scripts inside a throwaway qemu VM whose only cgroup hierarchy is cgroup v2.
#
#   scripts/vm-test.sh [TEST_SCRIPT...]      (default: every scripts/vm-tests/*.sh)
#
# The host may have v1 or hybrid cgroups; the VM boots the host's newest Debian kernel
# (/boot/vmlinuz-*) with an initramfs built here, in a temp dir that is removed afterwards:
# busybox-static with its applet links, the runtime binary $BERTH (default
# target/release/berth; BERTH=/usr/sbin/runc to check the tests against runc) with the
# shared libraries ldd lists for it, a busybox rootfs for containers (scripts/mkrootfs.sh) at
# /vm/rootfs, the test scripts, and an /init that mounts a cgroup2 (nsdelegate) on
# /sys/fs/cgroup, enables every controller, runs each script and powers off.
#
# Test scripts print `ok NAME`, `FAIL NAME: details` or `skip NAME: reason` lines; they run
# with BERTH (the runtime's path in the VM), ROOTFS (/vm/rootfs) and VM_TESTS_DIR set.
# This script prints those lines as they come, then `N passed, M failed` alone on the last
# line, and exits 0 only if the VM reported its summary with no failure.
#
# Environment:
#   BERTH        runtime binary to test (default target/release/berth in this repo)
#   VM_KERNEL    kernel image (default: the newest /boot/vmlinuz-*)
#   VM_ACCEL     kvm or tcg (default: kvm when /dev/kvm is usable, else tcg; a KVM guest that
#                has not reached init within VM_KVM_BOOT_WAIT seconds (15) is rerun under tcg)
#   VM_TIMEOUT   hard limit in seconds for the whole VM run (default 300)
#   VM_SCRIPT_TIMEOUT  limit in seconds for one test script inside the VM (default 200)
#   VM_LOG       keep the serial console log at this path (default: kept only on failure)
#   BUSYBOX      static busybox to use (default /bin/busybox)
#
# Needs (Debian): qemu-system-x86 linux-image-amd64 busybox-static cpio (or busybox's cpio).
set -euo pipefail

log() { printf 'vm-test: %s\n' "$*"; }
die() { printf 'vm-test: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

BERTH=${BERTH:-$repo/target/release/berth}
BUSYBOX=${BUSYBOX:-/bin/busybox}
VM_TIMEOUT=${VM_TIMEOUT:-300}
VM_SCRIPT_TIMEOUT=${VM_SCRIPT_TIMEOUT:-200}
VM_LOG=${VM_LOG:-}

# --- inputs ------------------------------------------------------------------------------
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=("$here"/vm-tests/*.sh)
fi
for t in "${tests[@]}"; do
    [ -f "$t" ] || die "test script $t not found"
done

[ -x "$BERTH" ] || die "runtime binary $BERTH not found or not executable (cargo build --release, or set BERTH)"
BERTH=$(readlink -f "$BERTH")

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: apt-get install qemu-system-x86"

kernel=${VM_KERNEL:-}
if [ -z "$kernel" ]; then
    kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$kernel" ] && [ -r "$kernel" ] || die "no readable kernel in /boot/vmlinuz-*: apt-get install linux-image-amd64 (or set VM_KERNEL)"
kver=${kernel##*/vmlinuz-}
kconfig=/boot/config-$kver
moddir=/lib/modules/$kver

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: apt-get install busybox-static"
if "$BUSYBOX" true 2>/dev/null && ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked: install busybox-static"
fi

if command -v cpio >/dev/null; then
    cpio_out() { cpio -o -H newc --quiet -R 0:0; }
else
    cpio_out() { "$BUSYBOX" cpio -o -H newc 2>/dev/null; }
fi

# --- temp dir, cleaned up whatever happens -----------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-vm-test.XXXXXX")
qpid=
tpid=
cleanup() {
    [ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
    [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
root=$work/root
mkdir -p "$root"

# --- initramfs -----------------------------------------------------------------------------
log "building the VM root (busybox $BUSYBOX) in $work"
BUSYBOX=$BUSYBOX "$here/mkrootfs.sh" "$root" >/dev/null
mkdir -p "$root/vm/tests" "$root/vm/bin" "$root/lib/modules" "$root/newroot"
[ -e "$root/dev/console" ] || mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

log "making the container rootfs /vm/rootfs with scripts/mkrootfs.sh"
BUSYBOX=$BUSYBOX "$here/mkrootfs.sh" "$root/vm/rootfs" >/dev/null

rt_name=$(basename "$BERTH")
log "adding runtime $BERTH as /vm/bin/$rt_name"
# Without its debug info (a debug build is ~10 times bigger): quicker to pack and unpack.
if ! { command -v strip >/dev/null && strip --strip-debug -o "$root/vm/bin/$rt_name" "$BERTH" 2>/dev/null; }; then
    cp -L "$BERTH" "$root/vm/bin/$rt_name"
fi
chmod 0755 "$root/vm/bin/$rt_name"
# Shared libraries and the dynamic loader, at the paths ldd names.
libs=$(ldd "$BERTH" 2>/dev/null | awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}' || true)
nlibs=0
for lib in $libs; do
    [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
    nlibs=$((nlibs + 1))
done
if [ "$nlibs" -eq 0 ]; then
    log "runtime is statically linked: no shared libraries to add"
else
    log "added $nlibs shared libraries for it: $(echo $libs | tr '\n' ' ')"
fi

# The loop driver gives the io.max check a block device; everything else (cgroup2, tmpfs,
# devtmpfs, proc, sysfs, bpf) is built into Debian's kernel.
modules=
if [ -r "$kconfig" ] && grep -q '^CONFIG_BLK_DEV_LOOP=m' "$kconfig"; then
    ko=$(ls "$moddir"/kernel/drivers/block/loop.ko* 2>/dev/null | head -n 1 || true)
    case "$ko" in
        *.ko) cp "$ko" "$root/lib/modules/loop.ko" ;;
        *.ko.xz) xz -dc "$ko" > "$root/lib/modules/loop.ko" ;;
        *.ko.zst) zstd -qdc "$ko" > "$root/lib/modules/loop.ko" ;;
        *.ko.gz) gzip -dc "$ko" > "$root/lib/modules/loop.ko" ;;
        *) ko= ;;
    esac
    if [ -n "$ko" ] && [ -s "$root/lib/modules/loop.ko" ]; then
        modules=loop
        log "adding kernel module $ko (loop devices for the io.max check)"
    else
        rm -f "$root/lib/modules/loop.ko"
        log "no loop module in $moddir: tests needing a block device will skip"
    fi
fi

i=0
names=
for t in "${tests[@]}"; do
    i=$((i + 1))
    n=$(printf '%02d-%s' "$i" "$(basename "$t")")
    cp "$t" "$root/vm/tests/$n"
    chmod 0755 "$root/vm/tests/$n"
    names="$names $n"
done
log "adding test scripts:$names"
cp "$here/vm-checks.sh" "$root/vm/checks.sh"

# Stage 1: the kernel's initramfs ("rootfs") cannot be pivot_root'ed away from, which
# container runtimes do; copy everything into a tmpfs and switch_root into it.
cat > "$root/init" <<'EOF'
#!/bin/sh
export PATH=/vm/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "vmtest: stage 1: copying the root to a tmpfs"
mount -t tmpfs -o mode=0755 tmpfs /newroot || { echo "vmtest: cannot mount tmpfs"; poweroff -f; }
for e in /*; do
    case "$e" in /newroot|/proc|/sys|/dev) continue ;; esac
    cp -a "$e" /newroot/
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev
mount --move /dev /newroot/dev
exec switch_root /newroot /vm/init
EOF
chmod 0755 "$root/init"

cat > "$root/vm/init" <<EOF
#!/bin/sh
VM_MODULES="$modules"
VM_SCRIPT_TIMEOUT=$VM_SCRIPT_TIMEOUT
RT_NAME="$rt_name"
EOF
cat >> "$root/vm/init" <<'EOF'
export PATH=/vm/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
# Only emergencies on the console: an OOM kill report would break our lines.
echo "1 4 1 7" > /proc/sys/kernel/printk
echo "vmtest: init: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/{print $2 " kB"}' /proc/meminfo)"
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx 2>/dev/null
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t mqueue mqueue /dev/mqueue 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || echo "vmtest: error: cannot mount cgroup2"
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || echo "vmtest: cannot enable controller $c"
done
echo "vmtest: cgroup2 on /sys/fs/cgroup, controllers enabled: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
for m in $VM_MODULES; do
    insmod /lib/modules/$m.ko && echo "vmtest: loaded module $m" || echo "vmtest: cannot load module $m"
done
hostname vmtest

export BERTH=/vm/bin/$RT_NAME ROOTFS=/vm/rootfs VM_TESTS_DIR=/vm/tests
passed=0; failed=0; skipped=0
cd /tmp
for t in /vm/tests/*; do
    name=${t##*/}
    echo "vmtest: running $name with $BERTH"
    out=/tmp/vmtest-out.$name
    t0=$(cut -d. -f1 /proc/uptime)
    # The script's output goes to the console through tee. A process the script leaves behind
    # may keep the pipe open, so wait for the script itself (its status file), not for tee;
    # a script still running after VM_SCRIPT_TIMEOUT seconds is killed.
    rm -f /tmp/vmtest-rc /tmp/vmtest-pid
    ( sh "$t" </dev/null 2>&1 & echo $! > /tmp/vmtest-pid; wait $!; echo $? > /tmp/vmtest-rc ) | tee "$out" &
    teepid=$!
    waited=0
    while [ ! -s /tmp/vmtest-rc ]; do
        if [ "$waited" -ge "$VM_SCRIPT_TIMEOUT" ]; then
            kill -9 "$(cat /tmp/vmtest-pid)" 2>/dev/null
            sleep 1
            echo "FAIL $name: still running after ${VM_SCRIPT_TIMEOUT}s: killed" | tee -a "$out"
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    i=0
    while kill -0 "$teepid" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    kill "$teepid" 2>/dev/null
    rc=$(cat /tmp/vmtest-rc 2>/dev/null)
    rc=${rc:-137}
    p=$(grep -c '^ok ' "$out"); f=$(grep -c '^FAIL ' "$out"); s=$(grep -c '^skip ' "$out")
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        echo "FAIL $name: exited with status $rc"
        f=1
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    echo "vmtest: result $name: $p passed, $f failed, $s skipped (exit status $rc, $(( $(cut -d. -f1 /proc/uptime) - t0 )) s)"
done
echo "VMTEST-DONE passed=$passed failed=$failed skipped=$skipped"
sync
poweroff -f
EOF
chmod 0755 "$root/vm/init"

initrd=$work/initrd.gz
log "packing the initramfs (cpio newc, gzip)"
(cd "$root" && find . | cpio_out) | gzip -1 > "$initrd"
log "initramfs: $(du -h "$initrd" | cut -f1), built in $(( $(date +%s) - start )) s"

# --- boot ------------------------------------------------------------------------------------
# KVM when /dev/kvm is usable, else TCG (software emulation). Some hosts (nested, micro-VMs)
# offer a /dev/kvm on which the guest hangs: a KVM guest that has not reached our init within
# VM_KVM_BOOT_WAIT seconds is stopped and the run starts again under TCG.
accel=${VM_ACCEL:-}
if [ -z "$accel" ]; then
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi
fi
case "$accel" in kvm | tcg) ;; *) die "VM_ACCEL must be kvm or tcg, not $accel" ;; esac
VM_KVM_BOOT_WAIT=${VM_KVM_BOOT_WAIT:-15}

console=$work/console.log

# boot ACCEL: run the VM to its end (or the timeout); sets qrc; returns 3 if a KVM guest
# did not boot.
boot() {
    local accel_args=(-accel "$1")
    [ "$1" = kvm ] && accel_args+=(-accel tcg)   # qemu falls back to tcg if kvm cannot start
    : > "$console"
    log "booting $kernel (accel $1, timeout ${VM_TIMEOUT}s), console log $console"
    timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 "${accel_args[@]}" -nographic -no-reboot \
        -m 1024 -smp 2 -nic none -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 quiet" </dev/null >"$console" 2>&1 &
    qpid=$!
    # Show the console from our init on, without carriage returns and terminal escapes.
    tail -n +1 -f --pid="$qpid" "$console" 2>/dev/null \
        | sed -u -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' \
        | sed -u -n '/^vmtest: /,$p' &
    tpid=$!
    local hung=false
    if [ "$1" = kvm ]; then
        local waited=0
        while ! grep -q '^vmtest: ' "$console" && kill -0 "$qpid" 2>/dev/null; do
            if [ "$waited" -ge "$VM_KVM_BOOT_WAIT" ]; then
                hung=true
                kill "$qpid" 2>/dev/null || true
                break
            fi
            sleep 1
            waited=$((waited + 1))
        done
    fi
    qrc=0
    wait "$qpid" || qrc=$?
    qpid=
    wait "$tpid" 2>/dev/null || true
    tpid=
    if $hung; then
        log "the KVM guest did not reach init within ${VM_KVM_BOOT_WAIT}s: trying again with TCG"
        return 3
    fi
    return 0
}

vm_start=$(date +%s)
if ! boot "$accel"; then
    vm_start=$(date +%s)
    boot tcg
fi
vm_secs=$(( $(date +%s) - vm_start ))

clean=$work/console.txt
sed -e 's/\r//g' "$console" > "$clean"
done_line=$(grep -a '^VMTEST-DONE ' "$clean" | tail -n 1 || true)

status=0
if [ -n "$done_line" ]; then
    passed=$(echo "$done_line" | sed -n 's/.*passed=\([0-9]*\).*/\1/p')
    failed=$(echo "$done_line" | sed -n 's/.*failed=\([0-9]*\).*/\1/p')
    log "VM finished in ${vm_secs}s (qemu exit status $qrc)"
    if [ "$failed" != 0 ] || [ "$passed" = 0 ]; then status=1; fi
else
    passed=$(grep -a -c '^ok ' "$clean" || true)
    failed=$(( $(grep -a -c '^FAIL ' "$clean" || true) + 1 ))
    if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
        log "FAIL: the VM did not finish within ${VM_TIMEOUT}s; last console lines:"
    else
        log "FAIL: the VM stopped without a summary (qemu exit status $qrc); last console lines:"
    fi
    tail -n 30 "$clean" | sed 's/^/  | /'
    status=1
fi

if [ -n "$VM_LOG" ]; then
    cp "$clean" "$VM_LOG"
    log "console log kept in $VM_LOG"
elif [ "$status" != 0 ]; then
    keep=$(mktemp "${TMPDIR:-/tmp}/berth-vm-test-console.XXXXXX")
    cp "$clean" "$keep"
    log "console log kept in $keep"
fi
log "total time $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed"
exit "$status"
