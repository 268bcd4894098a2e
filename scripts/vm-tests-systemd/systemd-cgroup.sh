#!/bin/sh
# The systemd cgroup driver, run INSIDE the systemd VM by scripts/vm-systemd-test.sh (root,
# systemd as pid 1 on cgroup v2). Each check prints `ok NAME` or `FAIL NAME: details`.
#
# A container with limits is created with --systemd-cgroup in a nested slice; systemd must
# list its scope (Delegate=yes, the slice, the limits as properties), the scope's cgroup must
# hold the init and the limits in its files; `update` changes both; `delete` leaves no unit and
# no cgroup; a create that fails part-way leaves nothing either.

BERTH=${BERTH:?set BERTH to the runtime binary}
ROOTFS=${ROOTFS:-/vm/rootfs}
CG=/sys/fs/cgroup
W=/tmp/systemd-cgroup
rm -rf "$W"
mkdir -p "$W/b"
cp -a "$ROOTFS" "$W/b/rootfs"

passed=0
failed=0
check() {
    _name=$1
    shift
    if _out=$("$@" 2>&1); then
        passed=$((passed + 1))
        echo "ok $_name"
    else
        failed=$((failed + 1))
        echo "FAIL $_name: $(printf '%s\n' "$_out" | tail -n 8 | tr '\n' '|')"
    fi
}
want() {
    _got=$(cat "$1" 2>&1)
    [ "$_got" = "$2" ] || { echo "$1 is '$_got', want '$2'"; return 1; }
}
# prop UNIT NAME VALUE: systemctl show's NAME=VALUE
prop() {
    _got=$(systemctl show "$1" -p "$2" --value 2>&1)
    [ "$_got" = "$3" ] || { echo "$1 $2 is '$_got', want '$3'"; return 1; }
}
gone() {
    if systemctl list-units --all --no-legend | grep -F "$1"; then
        echo "systemd still lists $1"
        return 1
    fi
    [ ! -e "$2" ] || { echo "$2 is still there"; return 1; }
}

cd "$W/b" || exit 1
"$BERTH" spec
# A long-running init, no terminal, and the limits; the scope goes in a nested slice.
sed -i -e 's/"terminal": true/"terminal": false/' \
    -e 's/^\( *\)"sh"$/\1"sleep", "1000"/' \
    -e 's/^  "linux": {$/  "linux": {\n    "cgroupsPath": "berthtest-a-b.slice:berth:c1",/' \
    -e 's/^    "resources": {$/    "resources": {\n      "memory": {"limit": 67108864, "reservation": 33554432, "swap": 100663296},\n      "cpu": {"shares": 1024, "quota": 25000, "period": 100000, "cpus": "0", "mems": "0"},\n      "pids": {"limit": 20},\n      "blockIO": {"weight": 500},/' \
    config.json
SCOPE=berth-c1.scope
DIR=$CG/berthtest.slice/berthtest-a.slice/berthtest-a-b.slice/$SCOPE

check systemd-is-pid-1 sh -c '[ "$(cat /proc/1/comm)" = systemd ] && [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]'
# detached: the container's process keeps what create's stdio was, so not a pipe.
check create sh -c '"$0" --systemd-cgroup create c1 >"$1" 2>&1 || { cat "$1"; exit 1; }' "$BERTH" "$W/create.log"
check scope-active prop $SCOPE ActiveState active
check scope-delegated prop $SCOPE Delegate yes
check scope-in-slice prop $SCOPE Slice berthtest-a-b.slice
check nested-slices-made test -d "$CG/berthtest.slice/berthtest-a.slice/berthtest-a-b.slice"
check scope-cgroup-path prop $SCOPE ControlGroup /berthtest.slice/berthtest-a.slice/berthtest-a-b.slice/$SCOPE
pid=$("$BERTH" state c1 | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
check init-in-scope sh -c "grep -qx '$pid' '$DIR/cgroup.procs' && grep -q '$SCOPE\$' /proc/$pid/cgroup"
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
check start "$BERTH" --systemd-cgroup start c1
check exec-runs "$BERTH" --systemd-cgroup exec c1 true
check update "$BERTH" --systemd-cgroup update --memory 134217728 --pids-limit 30 --cpu-quota 50000 c1
check update-prop-memory prop $SCOPE MemoryMax 134217728
check update-prop-tasks prop $SCOPE TasksMax 30
check update-prop-quota prop $SCOPE CPUQuotaPerSecUSec 500ms
check update-file-memory want "$DIR/memory.max" 134217728
check update-file-pids want "$DIR/pids.max" 30
check update-file-cpu-max want "$DIR/cpu.max" "50000 100000"
check delete-force "$BERTH" --systemd-cgroup delete --force c1
check delete-leaves-nothing gone $SCOPE "$DIR"
check delete-leaves-no-state sh -c '! "$0" state c1' "$BERTH"

# The container exits on its own: systemd may collect the scope first; delete still succeeds.
sed -i 's/"sleep", "1000"/"true"/' config.json
check run-to-exit "$BERTH" --systemd-cgroup run c2
check exited-leaves-nothing gone $SCOPE "$DIR"

# A create that fails after the scope is started (a failing prestart hook) leaves nothing.
sed -i 's/^  "linux": {$/  "hooks": {"prestart": [{"path": "\/bin\/false"}]},\n  "linux": {/' config.json
check failed-create-fails sh -c '! "$0" --systemd-cgroup create c3 >"$1" 2>&1' "$BERTH" "$W/create3.log"
check failed-create-leaves-nothing gone $SCOPE "$DIR"
check failed-create-leaves-no-state sh -c '! "$0" state c3' "$BERTH"

# What the driver costs (informational, under qemu's TCG: relative figures only): 5 creates
# and deletes of a container with limits, with the systemd driver and with cgroupfs.
sed -i -e '/"hooks": {"prestart"/d' -e 's/"true"/"sleep", "1000"/' config.json
for mode in systemd cgroupfs; do
    flag=; [ $mode = systemd ] && flag=--systemd-cgroup
    [ $mode = cgroupfs ] && sed -i 's/"cgroupsPath": "[^"]*"/"cgroupsPath": "\/berthtest\/t"/' config.json
    t0=$(date +%s%N)
    for i in 1 2 3 4 5; do
        "$BERTH" $flag create t$i >/dev/null 2>&1 </dev/null || echo "vmtest: timing: create t$i with $mode failed"
        "$BERTH" $flag delete --force t$i >/dev/null 2>&1
    done
    echo "vmtest: timing: create+delete --force with $mode: $(( ($(date +%s%N) - t0) / 5000000 )) ms each"
done
rmdir /sys/fs/cgroup/berthtest 2>/dev/null

echo "systemd-cgroup: $passed passed, $failed failed"
[ "$failed" = 0 ]
