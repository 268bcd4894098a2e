#!/bin/sh
# Mount checks, run INSIDE the test VM by scripts/vm-test.sh (busybox sh, root), on the VM's
# kernel (Debian's 6.1): berth makes every mount with the new mount API (open_tree, fsopen,
# fsmount, mount_setattr, move_mount) and resolves paths with openat2, whose rules moved between
# kernel versions. Each group runs a real container and reads its mount table, or gives it a
# hostile rootfs (a copy of the VM's busybox rootfs with symlinks planted) and expects a refusal.
#
# Run it alone: scripts/vm-test.sh scripts/vm-tests/mounts.sh. Under runc the refusal messages
# differ (only the refusals are checked then); runc before 1.2.8 lets the /dev magic link and
# the fake /dev/null through.
#
# Output: `ok NAME`, `FAIL NAME: details` lines, then `mounts: N passed, M failed, 0 skipped`;
# the exit status is 1 if any check failed.

BERTH=${BERTH:?set BERTH to the runtime binary}
ROOTFS=${ROOTFS:-/vm/rootfs}
STATE_ROOT=/run/berth-mounts
W=/tmp/mounts
rm -rf "$W"
mkdir -p "$W"

# The check framework: check and the counters.
. /vm/checks.sh

RT_TIMEOUT=${RT_TIMEOUT:-60}
rt() { timeout -s KILL "$RT_TIMEOUT" "$BERTH" --root "$STATE_ROOT" "$@"; }
is_runc=false
case "$("$BERTH" --version 2>/dev/null | head -n 1)" in runc*) is_runc=true ;; esac

# mkbundle DIR ROOT EXTRA_MOUNTS: DIR/config.json running `cat /proc/self/mountinfo` on rootfs
# ROOT, with the default mounts, then EXTRA_MOUNTS (JSON members, each with a leading comma).
mkbundle() {
    mkdir -p "$1"
    cat > "$1/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "user": {"uid": 0, "gid": 0},
    "args": ["cat", "/proc/self/mountinfo"],
    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    "cwd": "/"
  },
  "root": {"path": "$2", "readonly": true},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
    $3
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
EOF
}

# run_to FILE ID BUNDLE: `run` the bundle, its output (a mountinfo) into FILE.
run_to() { rt run --bundle "$3" "$2" > "$1"; }

# has_mount FILE MOUNT_POINT FSTYPE OPTION...: FILE (a mountinfo) mounts FSTYPE ("*": any) at
# MOUNT_POINT (the topmost mount there) with every OPTION among its mount options; "-X": not X.
has_mount() {
    _f=$1 _mp=$2 _type=$3
    shift 3
    _line=$(awk -v mp="$_mp" '$5 == mp { l = $0 } END { print l }' "$_f")
    [ -n "$_line" ] || { echo "nothing mounted at $_mp: $(cut -d' ' -f5 "$_f" | tr '\n' ' ')"; return 1; }
    _t=$(printf '%s\n' "$_line" | sed 's/.* - //' | cut -d' ' -f1)
    [ "$_type" = "*" ] || [ "$_type" = "$_t" ] || { echo "$_mp is $_t, want $_type: $_line"; return 1; }
    _opts=,$(printf '%s\n' "$_line" | cut -d' ' -f6),
    for _o in "$@"; do
        case "$_o" in
            -*) case "$_opts" in *,"${_o#-}",*) echo "$_mp has ${_o#-}: $_line"; return 1 ;; esac ;;
            *) case "$_opts" in *,"$_o",*) ;; *) echo "$_mp lacks $_o: $_line"; return 1 ;; esac ;;
        esac
    done
}

# refused ID BUNDLE REGEX: `run` fails, and under berth says REGEX; no state is left.
refused() {
    if _o=$(rt run --bundle "$2" "$1" 2>&1); then
        echo "run succeeded: $_o"
        return 1
    fi
    if ! $is_runc; then
        # Errors come as runc's log lines (msg="..." with Go's quoting): unquote \" first.
        printf '%s\n' "$_o" | sed 's/\\"/"/g' | grep -qE -- "$3" ||
            { echo "error does not match /$3/: $_o"; return 1; }
    fi
    [ ! -e "$STATE_ROOT/$1" ] || { echo "state of $1 left"; return 1; }
}

# --- the default mounts, masks and read-only paths ----------------------------------------
mkbundle "$W/defaults" "$ROOTFS" ""
check "defaults: run" run_to "$W/defaults.mi" d1 "$W/defaults"
check "defaults: proc" has_mount "$W/defaults.mi" /proc proc
check "defaults: /dev tmpfs, strictatime" has_mount "$W/defaults.mi" /dev tmpfs nosuid -relatime
check "defaults: devpts" has_mount "$W/defaults.mi" /dev/pts devpts nosuid noexec
check "defaults: sysfs read-only" has_mount "$W/defaults.mi" /sys sysfs ro nosuid nodev noexec
check "defaults: cgroup2 read-only" has_mount "$W/defaults.mi" /sys/fs/cgroup cgroup2 ro nosuid
check "defaults: /sys/firmware masked" has_mount "$W/defaults.mi" /sys/firmware tmpfs ro
check "defaults: /proc/keys masked" has_mount "$W/defaults.mi" /proc/keys tmpfs
check "defaults: /proc/timer_list masked" has_mount "$W/defaults.mi" /proc/timer_list tmpfs
check "defaults: /proc/sys read-only" has_mount "$W/defaults.mi" /proc/sys proc ro
check "defaults: root read-only" has_mount "$W/defaults.mi" / "*" ro

# --- binds with per-mount and recursive options; a tmpfs with propagation -------------------
V=$W/volume
mkdir -p "$V"
mount -t tmpfs -o nosuid vmvolume "$V"
mkdir -p "$V/nested"
mount -t tmpfs vmnested "$V/nested"
mkbundle "$W/binds" "$ROOTFS" "
    ,{\"destination\": \"/mnt/ro\", \"type\": \"bind\", \"source\": \"$V\", \"options\": [\"rbind\", \"ro\"]}
    ,{\"destination\": \"/mnt/rro\", \"type\": \"bind\", \"source\": \"$V\", \"options\": [\"rbind\", \"rro\"]}
    ,{\"destination\": \"/mnt/atime\", \"type\": \"bind\", \"source\": \"$V\", \"options\": [\"bind\", \"nodev\", \"strictatime\"]}
    ,{\"destination\": \"/mnt/t\", \"type\": \"tmpfs\", \"source\": \"tmpfs\", \"options\": [\"noexec\", \"rprivate\", \"mode=700\"]}"
check "binds: run" run_to "$W/binds.mi" b1 "$W/binds"
check "binds: ro bind is read-only, inherits nosuid" has_mount "$W/binds.mi" /mnt/ro tmpfs ro nosuid
check "binds: ro on an rbind leaves the submount writable" has_mount "$W/binds.mi" /mnt/ro/nested tmpfs -ro
check "binds: rro reaches the submount" has_mount "$W/binds.mi" /mnt/rro/nested tmpfs ro
check "binds: nodev,strictatime" has_mount "$W/binds.mi" /mnt/atime tmpfs nodev nosuid -relatime -ro
check "binds: tmpfs with propagation (fsmount)" has_mount "$W/binds.mi" /mnt/t tmpfs noexec
umount "$V/nested"
umount "$V"

# --- hostile rootfs copies ----------------------------------------------------------------
# hostile NAME: a fresh copy of the rootfs at $W/NAME/rootfs.
hostile() {
    mkdir -p "$W/$1"
    cp -a "$ROOTFS" "$W/$1/rootfs"
}

hostile devmagic
rm -rf "$W/devmagic/rootfs/dev"
ln -s /proc/self/cwd "$W/devmagic/rootfs/dev"
mkbundle "$W/devmagic" rootfs ""
check "hostile: /dev -> /proc/self/cwd refused" refused h1 "$W/devmagic" "magic link"

hostile procsym
rm -rf "$W/procsym/rootfs/proc"
mkdir -p "$W/procsym/rootfs/mnt/p"
ln -s /mnt/p "$W/procsym/rootfs/proc"
mkbundle "$W/procsym" rootfs ""
check "hostile: /proc a symlink refused" refused h2 "$W/procsym" 'mounts\[0\]\.destination: filesystem "proc" must be mounted on ordinary directory'

hostile intoproc
rm -rf "$W/intoproc/rootfs/mnt"
ln -s /proc/sys/kernel "$W/intoproc/rootfs/mnt"
echo original > "$W/canary"
mkbundle "$W/intoproc" rootfs ",{\"destination\": \"/mnt/hostname\", \"type\": \"bind\", \"source\": \"$W/canary\", \"options\": [\"bind\"]}"
check "hostile: a bind sent into /proc refused" refused h3 "$W/intoproc" 'mounts\[5\]\.destination: .* inside /proc'

hostile fakenull
mkdir -p "$W/fakenull/fakedev"
echo fake > "$W/fakenull/fakedev/null"
mkbundle "$W/fakenull" rootfs ""
sed -i 's#{"destination": "/dev", "type": "tmpfs", "source": "tmpfs",#{"destination": "/dev", "type": "bind", "source": "fakedev", "options": ["rbind"]},{"destination": "/mnt/unused", "type": "tmpfs", "source": "tmpfs",#' "$W/fakenull/config.json"
check "hostile: a /dev/null that is a file is not the mask" refused h4 "$W/fakenull" "not the null device"

mkdir -p "$W/rootlink"
ln -s "$ROOTFS" "$W/rootlink/rootfs"
mkbundle "$W/rootlink" rootfs ""
check "hostile: root.path a symlink out of the bundle refused" refused h5 "$W/rootlink" 'root\.path: .*symlink'

rm -rf "$W"
echo "mounts: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
