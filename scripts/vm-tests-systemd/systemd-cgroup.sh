#!/bin/sh
# The systemd cgroup driver, run INSIDE the systemd VM by scripts/vm-systemd-test.sh (root,
# systemd as pid 1, on cgroup v2, or on cgroup v1 when the VM boots with
# systemd.unified_cgroup_hierarchy=0). Each check prints `ok NAME` or `FAIL NAME: details`.
#
# A container with limits is created with --systemd-cgroup in a nested slice; systemd must
# list its scope (Delegate=yes, the slice, the limits as properties under the layout's names),
# the scope's cgroup must hold the init and the limits in its files (v2's, or each v1
# controller's); `update` changes both; `delete` leaves no unit and no cgroup; a create that
# fails part-way leaves nothing either. On v1, a non-root user's --systemd-cgroup is refused
# with a clear error.

BERTH=${BERTH:?set BERTH to the runtime binary}
ROOTFS=${ROOTFS:-/vm/rootfs}
. /vm/checks.sh
CG=/sys/fs/cgroup
W=/tmp/systemd-cgroup
rm -rf "$W"
mkdir -p "$W/b"
cp -a "$ROOTFS" "$W/b/rootfs"
V2=
[ "$(stat -fc %T $CG)" = cgroup2fs ] && V2=1
# v1: the blkio weight is BFQ's (blkio.bfq.weight), there once its module is in.
[ -n "$V2" ] || modprobe bfq

cd "$W/b" || exit 1
"$BERTH" spec
# A long-running init, no terminal, and the limits; the scope goes in a nested slice.
sed -i -e 's/"terminal": true/"terminal": false/' \
    -e 's/^\( *\)"sh"$/\1"sleep", "1000"/' \
    -e 's/^  "linux": {$/  "linux": {\n    "cgroupsPath": "berthtest-a-b.slice:berth:c1",/' \
    -e 's/^    "resources": {$/    "resources": {\n      "memory": {"limit": 67108864, "reservation": 33554432, "swap": 100663296},\n      "cpu": {"shares": 1024, "quota": 25000, "period": 100000, "cpus": "0", "mems": "0"},\n      "pids": {"limit": 20},\n      "blockIO": {"weight": 500},/' \
    config.json
SCOPE=berth-c1.scope
REL=berthtest.slice/berthtest-a.slice/berthtest-a-b.slice/$SCOPE
# dir CONTROLLER: the scope's cgroup in that controller's hierarchy.
dir() {
    if [ -n "$V2" ]; then echo "$CG/$REL"; else echo "$CG/$1/$REL"; fi
}
DIR=$(dir systemd)

if [ -n "$V2" ]; then
    check systemd-is-pid-1 sh -c '[ "$(cat /proc/1/comm)" = systemd ] && [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]'
else
    check systemd-is-pid-1-on-v1 sh -c '[ "$(cat /proc/1/comm)" = systemd ] && [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] && [ -d /sys/fs/cgroup/memory ] && [ -d /sys/fs/cgroup/systemd ]'
fi
# detached: the container's process keeps what create's stdio was, so not a pipe.
check create quiet "$W/create.log" "$BERTH" --systemd-cgroup create c1
check scope-active prop $SCOPE ActiveState active
check scope-delegated prop $SCOPE Delegate yes
check scope-in-slice prop $SCOPE Slice berthtest-a-b.slice
check nested-slices-made test -d "$(dirname "$DIR")"
check scope-cgroup-path prop $SCOPE ControlGroup /${REL%/*}/$SCOPE
pid=$("$BERTH" state c1 | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
check init-in-scope sh -c "grep -qx '$pid' '$DIR/cgroup.procs' && grep -q '$SCOPE\$' /proc/$pid/cgroup"
if [ -n "$V2" ]; then
    check prop-memory-max prop $SCOPE MemoryMax 67108864
    check prop-memory-low prop $SCOPE MemoryLow 33554432
    check prop-swap-max prop $SCOPE MemorySwapMax 33554432
    check prop-cpu-weight prop $SCOPE CPUWeight 39
    check prop-cpu-quota prop $SCOPE CPUQuotaPerSecUSec 250ms
    check prop-tasks-max prop $SCOPE TasksMax 20
    check prop-allowed-cpus prop $SCOPE AllowedCPUs 0
    check prop-io-weight prop $SCOPE IOWeight "$(( 1 + (500 - 10) * 9999 / 990 ))"
    check file-memory-max want "$DIR/memory.max" 67108864
    check file-memory-low want "$DIR/memory.low" 33554432
    check file-swap-max want "$DIR/memory.swap.max" 33554432
    check file-cpu-max want "$DIR/cpu.max" "25000 100000"
    check file-cpu-weight want "$DIR/cpu.weight" 39
    check file-pids-max want "$DIR/pids.max" 20
    check file-cpuset want "$DIR/cpuset.cpus" 0
else
    # The init is in the scope's cgroup of every controller (berth makes cpuset's, which
    # systemd does not manage on v1).
    for c in memory cpu pids blkio cpuset devices freezer; do
        check "init-in-$c" grep -qx "$pid" "$(dir $c)/cgroup.procs"
    done
    check prop-memory-limit prop $SCOPE MemoryLimit 67108864
    check prop-cpu-shares prop $SCOPE CPUShares 1024
    check prop-cpu-quota prop $SCOPE CPUQuotaPerSecUSec 250ms
    check prop-tasks-max prop $SCOPE TasksMax 20
    check prop-blockio-weight prop $SCOPE BlockIOWeight 500
    check file-memory-limit want "$(dir memory)/memory.limit_in_bytes" 67108864
    check file-memory-soft-limit want "$(dir memory)/memory.soft_limit_in_bytes" 33554432
    check file-memsw-limit want "$(dir memory)/memory.memsw.limit_in_bytes" 100663296
    check file-cpu-shares want "$(dir cpu)/cpu.shares" 1024
    check file-cfs-quota want "$(dir cpu)/cpu.cfs_quota_us" 25000
    check file-cfs-period want "$(dir cpu)/cpu.cfs_period_us" 100000
    check file-pids-max want "$(dir pids)/pids.max" 20
    check file-cpuset-cpus want "$(dir cpuset)/cpuset.cpus" 0
    check file-blkio-weight want "$(dir blkio)/blkio.bfq.weight" 500
fi
check start "$BERTH" --systemd-cgroup start c1
check exec-runs "$BERTH" --systemd-cgroup exec c1 true
check update "$BERTH" --systemd-cgroup update --memory 134217728 --memory-swap 268435456 --pids-limit 30 --cpu-quota 50000 c1
check update-prop-tasks prop $SCOPE TasksMax 30
check update-prop-quota prop $SCOPE CPUQuotaPerSecUSec 500ms
if [ -n "$V2" ]; then
    check update-prop-memory prop $SCOPE MemoryMax 134217728
    check update-file-memory want "$DIR/memory.max" 134217728
    check update-file-pids want "$DIR/pids.max" 30
    check update-file-cpu-max want "$DIR/cpu.max" "50000 100000"
else
    check update-prop-memory prop $SCOPE MemoryLimit 134217728
    check update-file-memory want "$(dir memory)/memory.limit_in_bytes" 134217728
    check update-file-memsw want "$(dir memory)/memory.memsw.limit_in_bytes" 268435456
    check update-file-pids want "$(dir pids)/pids.max" 30
    check update-file-cfs-quota want "$(dir cpu)/cpu.cfs_quota_us" 50000
fi
# Every hierarchy's cgroup of the scope (one on v2).
ALL_DIRS=$DIR
[ -n "$V2" ] || ALL_DIRS=$(for c in systemd memory cpu pids blkio cpuset devices freezer; do dir $c; done)
check delete-force "$BERTH" --systemd-cgroup delete --force c1
check delete-leaves-nothing gone $SCOPE $ALL_DIRS
check delete-leaves-no-state sh -c '! "$0" state c1' "$BERTH"

# The container exits on its own: systemd may collect the scope first; delete still succeeds.
sed -i 's/"sleep", "1000"/"true"/' config.json
check run-to-exit "$BERTH" --systemd-cgroup run c2
check exited-leaves-nothing gone $SCOPE $ALL_DIRS

# A create that fails after the scope is started (a failing prestart hook) leaves nothing.
sed -i 's/^  "linux": {$/  "hooks": {"prestart": [{"path": "\/bin\/false"}]},\n  "linux": {/' config.json
check failed-create-fails sh -c '! "$0" --systemd-cgroup create c3 >"$1" 2>&1' "$BERTH" "$W/create3.log"
check failed-create-leaves-nothing gone $SCOPE $ALL_DIRS
check failed-create-leaves-no-state sh -c '! "$0" state c3' "$BERTH"
sed -i '/"hooks": {"prestart"/d' config.json

if [ -z "$V2" ]; then
    # A user's systemd instance has no v1 hierarchy of its own: a clear error, and nothing
    # made (runc refuses this too).
    id tester >/dev/null 2>&1 || useradd -u 1000 tester
    mkdir -p "$W/xdg" && chown tester "$W/xdg" && chmod 755 "$W" "$W/b"
    check user-on-v1-refused fails_with "needs a cgroup v2 host" \
        setpriv --reuid=tester --regid=tester --init-groups env XDG_RUNTIME_DIR="$W/xdg" "$BERTH" --systemd-cgroup create u1
    check user-on-v1-leaves-nothing sh -c '[ -z "$(ls -A "$0/berth" 2>/dev/null)" ] && ! systemctl list-units --all --no-legend | grep -F berth-u1' "$W/xdg"
fi

# What the driver costs (informational, under qemu's TCG: relative figures only): 5 creates
# and deletes of a container with limits, with the systemd driver and with cgroupfs.
sed -i -e 's/"true"/"sleep", "1000"/' config.json
for mode in systemd cgroupfs; do
    flag=; [ $mode = systemd ] && flag=--systemd-cgroup
    [ $mode = cgroupfs ] && sed -i 's/"cgroupsPath": "[^"]*"/"cgroupsPath": "\/berthtest\/t"/' config.json
    t0=$(date +%s%N)
    for i in 1 2 3 4 5; do
        "$BERTH" $flag create t$i >/dev/null 2>&1 </dev/null || echo "vmtest: timing: create t$i with $mode failed"
        "$BERTH" $flag delete --force t$i >/dev/null 2>&1
    done
    echo "vmtest: timing ($([ -n "$V2" ] && echo v2 || echo v1)): create+delete --force with $mode: $(( ($(date +%s%N) - t0) / 5000000 )) ms each"
done
rmdir $CG/berthtest $CG/*/berthtest 2>/dev/null

summary systemd-cgroup
