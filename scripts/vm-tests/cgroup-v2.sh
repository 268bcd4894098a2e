#!/bin/sh
# cgroup v2 checks, run INSIDE the test VM by scripts/vm-test.sh (busybox sh, root, a pure
# cgroup2 hierarchy on /sys/fs/cgroup with every controller enabled at the root).
#
# Each group starts a real container (`sleep` as its process) with the runtime $BERTH (berth, or
# runc to check these checks), reads the container's cgroup files from outside, then deletes
# the container and checks that its cgroup directory is gone. The CLI used is runc's:
# `exec ID CMD ARGS...` (runc takes a `--` after the id as the command), `ps --format json`.
# Expected values are runc's conversions (cpu.weight from shares, io.weight from the blkio
# weight, memory.swap.max = swap - limit), so the whole script passes under runc.
#
# Run it alone: scripts/vm-test.sh scripts/vm-tests/cgroup-v2.sh (BERTH=/usr/sbin/runc to
# check the checks themselves).
#
# Output: one line per check, `ok NAME`, `FAIL NAME: details` or `skip NAME: reason`, then
# `cgroup-v2: N passed, M failed, K skipped`; the exit status is 1 if any check failed.

BERTH=${BERTH:?set BERTH to the runtime binary}
ROOTFS=${ROOTFS:-/vm/rootfs}
CG=/sys/fs/cgroup
STATE_ROOT=/run/berth
W=/tmp/cgroup-v2
rm -rf "$W"
mkdir -p "$W"

# The check framework: check, skip and the counters.
. /vm/checks.sh

# want FILE EXPECTED: FILE's content is exactly EXPECTED.
want() {
    [ -e "$1" ] || { echo "$1 does not exist"; return 1; }
    _got=$(cat "$1" 2>&1)
    [ "$_got" = "$2" ] || { echo "$1 is '$_got', want '$2'"; return 1; }
}

# want_line FILE LINE: FILE has LINE as one of its lines.
want_line() {
    [ -e "$1" ] || { echo "$1 does not exist"; return 1; }
    grep -qxF "$2" "$1" || { echo "$1 has no line '$2'; it holds: $(tr '\n' ';' < "$1")"; return 1; }
}

# want_key_min FILE KEY MIN: FILE (flat keyed, "key value" lines) has KEY >= MIN.
want_key_min() {
    _v=$(awk -v k="$2" '$1 == k { print $2 }' "$1" 2>/dev/null)
    [ -n "$_v" ] && [ "$_v" -ge "$3" ] || { echo "$1: $2 is '$_v', want >= $3; it holds: $(tr '\n' ';' < "$1")"; return 1; }
}

# want_max FILE MAX: FILE holds a number <= MAX.
want_max() {
    _v=$(cat "$1" 2>&1)
    [ "$_v" -le "$2" ] 2>/dev/null || { echo "$1 is '$_v', want <= $2"; return 1; }
}

# output_has REGEX CMD [ARGS...]: CMD's output (stdout and stderr) matches REGEX (grep -E).
output_has() {
    _re=$1
    shift
    _o=$("$@" 2>&1)
    printf '%s\n' "$_o" | grep -qE -- "$_re" || { echo "output of '$*' does not match /$_re/: $_o"; return 1; }
}

# fails_with REGEX CMD [ARGS...]: CMD exits non-zero and its output matches REGEX.
fails_with() {
    _re=$1
    shift
    if _o=$("$@" 2>&1); then
        echo "'$*' succeeded, want a failure matching /$_re/; output: $_o"
        return 1
    fi
    printf '%s\n' "$_o" | grep -qE -- "$_re" || { echo "'$*' failed but its output does not match /$_re/: $_o"; return 1; }
}

# exits_with STATUS CMD [ARGS...]: CMD exits with STATUS (137: killed by SIGKILL).
exits_with() {
    _want=$1
    shift
    _o=$("$@" 2>&1)
    _rc=$?
    [ "$_rc" = "$_want" ] || { echo "'$*' exited with $_rc, want $_want; output: $_o"; return 1; }
}

absent() {
    [ ! -e "$1" ] || { echo "$1 still exists: $(ls "$1" 2>&1 | tr '\n' ' ')"; return 1; }
}

# --- the runtime ---------------------------------------------------------------------------

# Every runtime command is killed after RT_TIMEOUT seconds: a hang fails one check, not the run.
RT_TIMEOUT=${RT_TIMEOUT:-60}
rt() { timeout -s KILL "$RT_TIMEOUT" "$BERTH" --root "$STATE_ROOT" "$@"; }

rt_version=$("$BERTH" --version 2>/dev/null | head -n 1)
echo "cgroup-v2: runtime $BERTH: $rt_version"
# Debian 12's runc 1.1 predates cpu.idle and cpu.max.burst (runc 1.2): such checks skip there.
runc_before_1_2=false
case "$rt_version" in
    "runc version 1.0"* | "runc version 1.1"*) runc_before_1_2=true ;;
esac
is_runc=false
case "$rt_version" in runc*) is_runc=true ;; esac

# What the kernel offers, from a cgroup of our own (not the runtime's, which may lack
# controllers if the runtime failed to enable them).
probe=$CG/vmtest-probe
mkdir -p "$probe"
kernel_has() { [ -e "$probe/$1" ]; }
have_burst=false; kernel_has cpu.max.burst && have_burst=true
have_idle=false; kernel_has cpu.idle && have_idle=true
have_hugetlb_2m=false; kernel_has hugetlb.2MB.max && have_hugetlb_2m=true
io_weight_file=
if kernel_has io.bfq.weight; then io_weight_file=io.bfq.weight
elif kernel_has io.weight; then io_weight_file=io.weight
fi
rmdir "$probe"
echo "cgroup-v2: kernel $(uname -r): controllers '$(cat $CG/cgroup.subtree_control)', cpu.max.burst $have_burst, cpu.idle $have_idle, hugetlb 2MB $have_hugetlb_2m, io weight file '${io_weight_file:-none}'"

# mkbundle ID [RESOURCES] [ARGS] [CGROUPS_PATH]: write $W/ID/config.json.
#   RESOURCES: JSON members of linux.resources other than "devices" (default none);
#   ARGS: process.args as JSON (default ["sleep", "1000"]);
#   CGROUPS_PATH: linux.cgroupsPath (default /vmtest/ID; "" for none).
#   $DEVICES: linux.resources.devices (default: deny all; the runtime adds its default devices);
#   $LINUX_DEVICES: linux.devices, device nodes to make (default none).
mkbundle() {
    _id=$1
    _res=${2:-}
    _args=${3:-'["sleep", "1000"]'}
    _cgpath=${4-/vmtest/$1}
    _devices=${DEVICES:-'[{"allow": false, "access": "rwm"}]'}
    _cgline=
    [ -n "${LINUX_DEVICES:-}" ] && _cgline="\"devices\": $LINUX_DEVICES,"
    [ -n "$_cgpath" ] && _cgline="$_cgline \"cgroupsPath\": \"$_cgpath\","
    [ -n "$_res" ] && _res="$_res,"
    mkdir -p "$W/$_id"
    cat > "$W/$_id/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": $_args,
    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "noNewPrivileges": true
  },
  "root": {"path": "$ROOTFS", "readonly": true},
  "hostname": "$_id",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    $_cgline
    "resources": {
      $_res
      "devices": $_devices
    },
    "namespaces": [
      {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
    ],
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
EOF
}

# state_field ID FIELD: a scalar field of `state ID` ("pid", "status").
state_field() {
    rt state "$1" 2>/dev/null | tr -d '\n' | sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\).*/\1/p"
}

# wait_status ID STATUS: poll `state` for up to 5 s.
wait_status() {
    _i=0
    while [ $_i -lt 50 ]; do
        [ "$(state_field "$1" status)" = "$2" ] && return 0
        sleep 0.1
        _i=$((_i + 1))
    done
    echo "status of $1 is '$(state_field "$1" status)' after 5 s, want '$2'; state: $(rt state "$1" 2>&1 | tr -d '\n')"
    return 1
}

# start_ctr ID: create and start the bundle $W/ID (its output goes to $W/ID.out).
start_ctr() {
    rt create --bundle "$W/$1" "$1" </dev/null >"$W/$1.out" 2>&1 || { cat "$W/$1.out"; return 1; }
    rt start "$1" || return 1
    wait_status "$1" running
}

# delete_gone ID CGROUP: `delete --force ID`, then its state and cgroup dir are gone.
delete_gone() {
    rt delete --force "$1" || return 1
    ! rt state "$1" >/dev/null 2>&1 || { echo "state $1 still answers after delete"; return 1; }
    absent "$CG$2"
}

# group_start LABEL ID: create+start as a check; the group's other checks run only if it passed.
group_start() {
    check "$1: create and start $2" start_ctr "$2"
}

# The container's cgroup as the host sees it, from its init's /proc/PID/cgroup.
cgroup_of() {
    _pid=$(state_field "$1" pid)
    sed -n 's/^0:://p' "/proc/$_pid/cgroup" 2>/dev/null
}

# --- placement -----------------------------------------------------------------------------

mkbundle c1
if group_start placement c1; then
    pid=$(state_field c1 pid)
    check "placement: state has the init pid" test -d "/proc/$pid"
    check "placement: /proc/PID/cgroup is 0::/vmtest/c1" want "/proc/$pid/cgroup" "0::/vmtest/c1"
    check "placement: cgroup.procs of /vmtest/c1 lists the pid" want_line "$CG/vmtest/c1/cgroup.procs" "$pid"
    check "placement: memory and pids controllers available to the container" \
        output_has '(^| )memory( |$)' cat "$CG/vmtest/c1/cgroup.controllers"
    check "placement: kill KILL succeeds" rt kill c1 KILL
    check "placement: status becomes stopped" wait_status c1 stopped
    check "placement: delete removes its state" rt delete c1
    check "placement: delete removed /sys/fs/cgroup/vmtest/c1" absent "$CG/vmtest/c1"
fi
rt delete --force c1 >/dev/null 2>&1

# With no linux.cgroupsPath, berth uses /berth/<id>; runc uses /<id>.
if $is_runc; then default_cg=/d1; else default_cg=/berth/d1; fi
mkbundle d1 "" "" ""
if group_start default-path d1; then
    check "default-path: no cgroupsPath puts it in $default_cg" output_has "^$default_cg\$" cgroup_of d1
    check "default-path: delete --force removes $CG$default_cg" delete_gone d1 "$default_cg"
fi
rt delete --force d1 >/dev/null 2>&1

# --- memory --------------------------------------------------------------------------------

mkbundle m1 '"memory": {"limit": 33554432, "reservation": 16777216, "swap": 50331648}'
if group_start memory m1; then
    d=$CG/vmtest/m1
    check "memory: limit 32M -> memory.max" want "$d/memory.max" 33554432
    check "memory: reservation 16M -> memory.low" want "$d/memory.low" 16777216
    check "memory: swap 48M -> memory.swap.max = swap - limit" want "$d/memory.swap.max" 16777216
    # dd's 64M buffer cannot fit under the 32M limit: the OOM killer takes dd.
    check "memory: allocating 64M under a 32M limit is OOM-killed (exec exits 137)" \
        exits_with 137 rt exec m1 dd if=/dev/zero of=/dev/null bs=64M count=1
    check "memory: memory.events counts the OOM kill" want_key_min "$d/memory.events" oom_kill 1
    check "memory: the container's init survives" wait_status m1 running
    check "memory: delete --force removes the cgroup" delete_gone m1 /vmtest/m1
fi
rt delete --force m1 >/dev/null 2>&1

# --- cpu -----------------------------------------------------------------------------------

mkbundle cpu1 '"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 20000, "cpus": "0", "mems": "0"}'
if group_start cpu cpu1; then
    d=$CG/vmtest/cpu1
    check "cpu: shares 1024 -> cpu.weight 39" want "$d/cpu.weight" 39
    check "cpu: quota 50000 period 100000 -> cpu.max" want "$d/cpu.max" "50000 100000"
    check "cpu: cpus 0 -> cpuset.cpus" want "$d/cpuset.cpus" 0
    check "cpu: mems 0 -> cpuset.mems" want "$d/cpuset.mems" 0
    if ! $have_burst; then
        skip "cpu: burst 20000 -> cpu.max.burst" "no cpu.max.burst in this kernel"
    elif $runc_before_1_2; then
        skip "cpu: burst 20000 -> cpu.max.burst" "runc before 1.2 ignores linux.resources.cpu.burst"
    else
        check "cpu: burst 20000 -> cpu.max.burst" want "$d/cpu.max.burst" 20000
    fi
    check "cpu: delete --force removes the cgroup" delete_gone cpu1 /vmtest/cpu1
fi
rt delete --force cpu1 >/dev/null 2>&1

# cpu.idle and cpu.weight exclude each other (the kernel refuses a weight for an idle group).
mkbundle cpu2 '"cpu": {"idle": 1}'
if ! $have_idle; then
    skip "cpu-idle: idle 1 -> cpu.idle" "no cpu.idle in this kernel"
elif $runc_before_1_2; then
    skip "cpu-idle: idle 1 -> cpu.idle" "runc before 1.2 ignores linux.resources.cpu.idle"
elif group_start cpu-idle cpu2; then
    check "cpu-idle: idle 1 -> cpu.idle" want "$CG/vmtest/cpu2/cpu.idle" 1
    check "cpu-idle: delete --force removes the cgroup" delete_gone cpu2 /vmtest/cpu2
fi
rt delete --force cpu2 >/dev/null 2>&1

# --- pids ----------------------------------------------------------------------------------

mkbundle p1 '"pids": {"limit": 10}'
if group_start pids p1; then
    d=$CG/vmtest/p1
    check "pids: limit 10 -> pids.max" want "$d/pids.max" 10
    # 30 background sleeps: forks beyond the 10th task fail (the shell reports it and stops).
    check "pids: forking 30 processes fails" \
        fails_with 'fork|Resource temporarily unavailable' rt exec p1 sh -c \
        'i=0; while [ $i -lt 30 ]; do sleep 60 </dev/null >/dev/null 2>&1 & i=$((i + 1)); done; echo forked $i'
    check "pids: pids.current stays <= 10" want_max "$d/pids.current" 10
    check "pids: pids.events counts refused forks" want_key_min "$d/pids.events" max 1
    check "pids: delete --force removes the cgroup" delete_gone p1 /vmtest/p1
fi
rt delete --force p1 >/dev/null 2>&1

# --- block io ------------------------------------------------------------------------------

# A loop device gives io.max a real block device (the VM has no disk).
loopdev=
if [ -e /dev/loop0 ] && truncate -s 16M /tmp/loop0.img 2>/dev/null && losetup /dev/loop0 /tmp/loop0.img 2>/dev/null; then
    loopdev=$(cat /sys/block/loop0/dev)   # "7:0"
fi
if [ -n "$loopdev" ]; then
    lmaj=${loopdev%:*}
    lmin=${loopdev#*:}
    mkbundle io1 "\"blockIO\": {\"weight\": 500,
        \"throttleReadBpsDevice\": [{\"major\": $lmaj, \"minor\": $lmin, \"rate\": 1048576}],
        \"throttleWriteIOPSDevice\": [{\"major\": $lmaj, \"minor\": $lmin, \"rate\": 100}]}"
else
    mkbundle io1 '"blockIO": {"weight": 500}'
fi
if group_start io io1; then
    d=$CG/vmtest/io1
    # runc: BFQ's io.bfq.weight takes the weight as is; else io.weight gets
    # 1 + (weight - 10) * 9999 / 990 = 4950.
    if [ "$io_weight_file" = io.bfq.weight ]; then
        check "io: weight 500 -> io.bfq.weight" want_line "$d/io.bfq.weight" "default 500"
    elif [ "$io_weight_file" = io.weight ]; then
        check "io: weight 500 -> io.weight 4950" want_line "$d/io.weight" "default 4950"
    else
        skip "io: weight 500 -> io.weight" "neither io.weight nor io.bfq.weight in this kernel"
    fi
    if [ -n "$loopdev" ]; then
        check "io: throttle read bps and write iops on $loopdev -> io.max" \
            want_line "$d/io.max" "$loopdev rbps=1048576 wbps=max riops=max wiops=100"
    else
        skip "io: throttle -> io.max" "no block device in the VM (no loop module)"
    fi
    check "io: delete --force removes the cgroup" delete_gone io1 /vmtest/io1
fi
rt delete --force io1 >/dev/null 2>&1
[ -n "$loopdev" ] && losetup -d /dev/loop0 2>/dev/null

# --- hugetlb -------------------------------------------------------------------------------

if $have_hugetlb_2m; then
    mkbundle h1 '"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]'
    if group_start hugetlb h1; then
        check "hugetlb: 2MB limit 4M -> hugetlb.2MB.max" want "$CG/vmtest/h1/hugetlb.2MB.max" 4194304
        check "hugetlb: delete --force removes the cgroup" delete_gone h1 /vmtest/h1
    fi
    rt delete --force h1 >/dev/null 2>&1
else
    skip "hugetlb: 2MB limit -> hugetlb.2MB.max" "no hugetlb controller or no 2MB pages"
fi

# --- unified -------------------------------------------------------------------------------

mkbundle u1 '"unified": {"memory.high": "50M", "pids.max": "7"}'
if group_start unified u1; then
    check "unified: memory.high 50M -> memory.high" want "$CG/vmtest/u1/memory.high" 52428800
    check "unified: pids.max 7 -> pids.max" want "$CG/vmtest/u1/pids.max" 7
    check "unified: delete --force removes the cgroup" delete_gone u1 /vmtest/u1
fi
rt delete --force u1 >/dev/null 2>&1

# --- devices (eBPF) ------------------------------------------------------------------------

# runc appends its default devices (/dev/null, /dev/zero, /dev/full, /dev/tty, /dev/random,
# /dev/urandom, ...) after the spec's rules, so a rule denying one of them has no effect; the
# checks use /dev/kmsg (c 1:11), made through linux.devices, which is not among them.
kmsg='[{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 438, "uid": 0, "gid": 0}]'
LINUX_DEVICES=$kmsg DEVICES='[{"allow": true, "access": "rwm"}, {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "rwm"}]' \
    mkbundle dev1
if group_start devices dev1; then
    check "devices: deny c 1:11 after allow-all: writing /dev/kmsg is refused" \
        fails_with 'Operation not permitted' rt exec dev1 sh -c 'echo berth-vm-test > /dev/kmsg'
    check "devices: /dev/null stays writable" rt exec dev1 sh -c 'echo x > /dev/null'
    check "devices: delete --force removes the cgroup" delete_gone dev1 /vmtest/dev1
fi
rt delete --force dev1 >/dev/null 2>&1

LINUX_DEVICES=$kmsg DEVICES='[{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}]' \
    mkbundle dev2
if group_start devices-allow dev2; then
    check "devices-allow: deny all, allow c 1:11 w: writing /dev/kmsg works" \
        rt exec dev2 sh -c 'echo berth-vm-test > /dev/kmsg'
    check "devices-allow: the default /dev/zero is readable" rt exec dev2 head -c 1 /dev/zero
    check "devices-allow: delete --force removes the cgroup" delete_gone dev2 /vmtest/dev2
fi
rt delete --force dev2 >/dev/null 2>&1

# --- pause / resume ------------------------------------------------------------------------

mkbundle pr1
if group_start pause pr1; then
    d=$CG/vmtest/pr1
    check "pause: pause succeeds" rt pause pr1
    check "pause: cgroup.freeze is 1" want "$d/cgroup.freeze" 1
    check "pause: cgroup.events says frozen 1" want_line "$d/cgroup.events" "frozen 1"
    check "pause: state is paused" wait_status pr1 paused
    check "pause: resume succeeds" rt resume pr1
    check "pause: cgroup.freeze is 0 after resume" want "$d/cgroup.freeze" 0
    check "pause: state is running after resume" wait_status pr1 running
    check "pause: delete --force removes the cgroup" delete_gone pr1 /vmtest/pr1
fi
rt delete --force pr1 >/dev/null 2>&1

# --- update --------------------------------------------------------------------------------

mkbundle up1 '"memory": {"limit": 33554432}, "pids": {"limit": 10}'
if group_start update up1; then
    d=$CG/vmtest/up1
    check "update: memory.max starts at 32M" want "$d/memory.max" 33554432
    check "update: update --memory 64m succeeds" rt update --memory 64m up1
    check "update: memory.max is 64M" want "$d/memory.max" 67108864
    check "update: update --pids-limit 20 succeeds" rt update --pids-limit 20 up1
    check "update: pids.max is 20" want "$d/pids.max" 20
    check "update: memory.max is still 64M" want "$d/memory.max" 67108864
    cat > "$W/up1-resources.json" <<'EOF'
{"cpu": {"quota": 20000, "period": 100000}}
EOF
    check "update: update --resources FILE succeeds" rt update --resources "$W/up1-resources.json" up1
    check "update: --resources sets cpu.max" want "$d/cpu.max" "20000 100000"
    check "update: delete --force removes the cgroup" delete_gone up1 /vmtest/up1
fi
rt delete --force up1 >/dev/null 2>&1

# --- events --stats ------------------------------------------------------------------------

mkbundle ev1 '"memory": {"limit": 67108864}'
if group_start events ev1; then
    rt events --stats ev1 > "$W/ev1.stats" 2>&1
    check "events: --stats prints a stats event" output_has '"type": *"stats"' cat "$W/ev1.stats"
    check "events: --stats has memory usage" output_has '"memory": *\{.*"usage": *\{' cat "$W/ev1.stats"
    check "events: --stats has pids.current >= 1" output_has '"pids": *\{ *"current": *[1-9]' cat "$W/ev1.stats"
    check "events: delete --force removes the cgroup" delete_gone ev1 /vmtest/ev1
fi
rt delete --force ev1 >/dev/null 2>&1

# exec_detached ID CMD...: `exec --detach`, the process's stdio away from check's pipe.
exec_detached() {
    _id=$1
    shift
    rt exec --detach "$_id" "$@" </dev/null >/dev/null 2>"$W/$_id.exec.err" || { cat "$W/$_id.exec.err"; return 1; }
}

# --- ps ------------------------------------------------------------------------------------

mkbundle ps1
if group_start ps ps1; then
    pid=$(state_field ps1 pid)
    check "ps: --format json lists the init pid" output_has "(\\[|,) *$pid *(,|\\])" rt ps --format json ps1
    # A detached process keeps the stdio it is given: not the pipe check reads.
    check "ps: exec --detach adds a process" exec_detached ps1 sleep 500
    check "ps: --format json lists two pids" \
        output_has '^\[ *[0-9]+ *, *[0-9]+ *\]$' rt ps --format json ps1
    check "ps: delete --force removes the cgroup" delete_gone ps1 /vmtest/ps1
fi
rt delete --force ps1 >/dev/null 2>&1

# --- nothing left ----------------------------------------------------------------------------

for id in $(rt list -q 2>/dev/null); do
    rt delete --force "$id" >/dev/null 2>&1
done
leftovers() {
    _l=$(find "$CG/vmtest" "$CG/berth" -mindepth 1 -type d 2>/dev/null)
    [ -z "$_l" ] || { echo "left behind: $_l"; return 1; }
}
check "cleanup: nothing left under /sys/fs/cgroup/vmtest or /sys/fs/cgroup/berth" leftovers
check "cleanup: no container left in the state root" output_has '^$' rt list -q

echo "cgroup-v2: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
