#!/bin/sh
# The systemd cgroup driver for a non-root user, run INSIDE the systemd VM (cgroup v2) by
# scripts/vm-systemd-test.sh: berth run by the user `tester` with --systemd-cgroup asks the
# user's own systemd instance (user@1000.service, kept running by `loginctl enable-linger`)
# over $XDG_RUNTIME_DIR/systemd/private for the scope, as runc's rootless driver does.
#
# First with what Debian's systemd 252 delegates to a user instance (user@.service:
# Delegate=pids memory cpu): memory, pids and cpu limits work; cpuset (or io) limits cannot
# be written and fail, naming the field, leaving nothing. Then with a drop-in that delegates
# cpuset and io too (what Podman's rootless documentation asks for): those work as well.

BERTH=${BERTH:?set BERTH to the runtime binary}
ROOTFS=${ROOTFS:-/vm/rootfs}
. /vm/checks.sh
U=tester
id $U >/dev/null 2>&1 || useradd -u 1000 -m $U
UID_U=$(id -u $U)
XDG=/run/user/$UID_U
MGR=/sys/fs/cgroup/user.slice/user-$UID_U.slice/user@$UID_U.service
# as_user CMD...: CMD as the user, in their session's environment.
as_user() {
    setpriv --reuid=$U --regid=$U --init-groups env HOME=/home/$U XDG_RUNTIME_DIR=$XDG \
        PATH=/usr/bin:/bin "$@"
}
SYSTEMCTL="as_user systemctl --user"
# wait_manager: the user's instance answers on its private socket.
wait_manager() {
    for _i in $(seq 120); do
        [ -S $XDG/systemd/private ] && $SYSTEMCTL is-system-running >/dev/null 2>&1 && return 0
        $SYSTEMCTL is-system-running 2>/dev/null | grep -q degraded && return 0
        sleep 0.5
    done
    echo "user@$UID_U.service: $(systemctl is-active user@$UID_U.service), no answer on $XDG/systemd/private"
    journalctl -b --no-pager -o cat -u user@$UID_U.service | tail -n 6
    return 1
}

check linger loginctl enable-linger $U
check user-manager-running wait_manager
echo "vmtest: user@$UID_U.service delegates: $(cat $MGR/cgroup.controllers 2>&1) (subtree: $(cat $MGR/cgroup.subtree_control 2>&1))"

W=/home/$U/b
rm -rf "$W"
mkdir -p "$W"
cp -a "$ROOTFS" "$W/rootfs"
chown -R $U:$U "$W"
cd "$W" || exit 1
as_user "$BERTH" spec --rootless
# A long-running init, no terminal, memory, pids and cpu limits, in a nested slice of the
# user's instance.
sed -i -e 's/"terminal": true/"terminal": false/' \
    -e 's/^\( *\)"sh"$/\1"sleep", "1000"/' \
    -e 's/^  "linux": {$/  "linux": {\n    "cgroupsPath": "berthu-a.slice:berth:r1",\n    "resources": {"memory": {"limit": 67108864}, "cpu": {"shares": 1024, "quota": 25000, "period": 100000}, "pids": {"limit": 20}},/' \
    config.json
SCOPE=berth-r1.scope
DIR=$MGR/berthu.slice/berthu-a.slice/$SCOPE

check user-create quiet /tmp/r1.log as_user "$BERTH" --systemd-cgroup create r1
check user-scope-active prop $SCOPE ActiveState active
check user-scope-delegated prop $SCOPE Delegate yes
check user-scope-in-slice prop $SCOPE Slice berthu-a.slice
check user-scope-cgroup-path prop $SCOPE ControlGroup "${DIR#/sys/fs/cgroup}"
check user-scope-not-in-pid1 want_nothing systemctl list-units --all --no-legend $SCOPE
pid=$(as_user "$BERTH" state r1 | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
check user-init-in-scope grep -qx "$pid" "$DIR/cgroup.procs"
check user-init-is-the-users test "$(stat -c %u /proc/$pid)" = "$UID_U"
check user-prop-memory-max prop $SCOPE MemoryMax 67108864
check user-prop-tasks-max prop $SCOPE TasksMax 20
check user-prop-cpu-weight prop $SCOPE CPUWeight 39
check user-prop-cpu-quota prop $SCOPE CPUQuotaPerSecUSec 250ms
check user-file-memory-max want "$DIR/memory.max" 67108864
check user-file-pids-max want "$DIR/pids.max" 20
check user-file-cpu-max want "$DIR/cpu.max" "25000 100000"
check user-file-cpu-weight want "$DIR/cpu.weight" 39
check user-start as_user "$BERTH" --systemd-cgroup start r1
check user-exec as_user "$BERTH" --systemd-cgroup exec r1 true
check user-update as_user "$BERTH" --systemd-cgroup update --memory 134217728 --pids-limit 30 r1
check user-update-prop-memory prop $SCOPE MemoryMax 134217728
check user-update-prop-tasks prop $SCOPE TasksMax 30
check user-update-file-memory want "$DIR/memory.max" 134217728
check user-update-file-pids want "$DIR/pids.max" 30
check user-delete as_user "$BERTH" --systemd-cgroup delete --force r1
check user-delete-leaves-nothing gone $SCOPE "$DIR"
check user-delete-leaves-no-state fails_with r1 as_user "$BERTH" state r1

# A second container (its own scope, r2) asks for cpus and an io weight. cpuset is not
# delegated by default: the cpuset limit fails, naming its field, and leaves
# nothing behind.
sed -i 's/:berth:r1"/:berth:r2"/; s/"pids": {"limit": 20}}/"pids": {"limit": 20}, "blockIO": {"weight": 500}}/; s/"period": 100000}/"period": 100000, "cpus": "0"}/' config.json
check user-cpuset-undelegated-fails fails_with linux.resources.cpu.cpus as_user "$BERTH" --systemd-cgroup create r2
check user-cpuset-undelegated-leaves-nothing gone berth-r2.scope "$MGR/berthu.slice/berthu-a.slice/berth-r2.scope"

# Delegated: a drop-in for user@.service, the user's instance restarted.
mkdir -p /etc/systemd/system/user@.service.d
printf '[Service]\nDelegate=cpu cpuset io memory pids\n' >/etc/systemd/system/user@.service.d/delegate.conf
systemctl daemon-reload
check user-manager-restarted systemctl restart user@$UID_U.service
check user-manager-running-again wait_manager
echo "vmtest: with the drop-in, user@$UID_U.service delegates: $(cat $MGR/cgroup.controllers 2>&1)"
DIR2=$MGR/berthu.slice/berthu-a.slice/berth-r2.scope
check user-cpuset-create quiet /tmp/r2.log as_user "$BERTH" --systemd-cgroup create r2
pid2=$(as_user "$BERTH" state r2 | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
echo "vmtest: r2: init $pid2 in $(cat /proc/$pid2/cgroup 2>&1); $($SYSTEMCTL show berth-r2.scope -p ActiveState -p ControlGroup 2>&1 | tr '\n' ' ')"
check user-prop-allowed-cpus prop berth-r2.scope AllowedCPUs 0
check user-prop-io-weight prop berth-r2.scope IOWeight "$(( 1 + (500 - 10) * 9999 / 990 ))"
check user-file-cpuset want "$DIR2/cpuset.cpus" 0
check user-cpuset-delete as_user "$BERTH" --systemd-cgroup delete --force r2
check user-cpuset-delete-leaves-nothing gone berth-r2.scope "$DIR2"
rm -f /etc/systemd/system/user@.service.d/delegate.conf
systemctl daemon-reload

# Without the user's instance: a clear error naming it.
check user-without-instance fails_with /nonexistent/systemd/private setpriv --reuid=$U \
    --regid=$U --init-groups env XDG_RUNTIME_DIR=/nonexistent "$BERTH" --root /tmp/berth-r3 \
    --systemd-cgroup create r3
loginctl disable-linger $U

summary rootless-systemd
