#!/bin/bash
# containerd drives the runtime through its runc shim (io.containerd.runc.v2), as `ctr` and
# the CRI plugin do. containerd runs with its own config, root, state and sockets in a temp dir
# (no systemd, the CRI plugin off); the busybox image is made from bundles/busybox/rootfs as a
# docker-archive and imported with `ctr image import`; every container is run with
# `ctr run --runc-binary RUNTIME --runc-root ROOT`.
#
#   CLIENT_RUNTIME=target/debug/berth scripts/clients/containerd.sh
#   CLIENT_RUNTIME=/usr/sbin/runc scripts/clients/containerd.sh     # the oracle
SUITE=containerd
. "$(dirname "$0")/lib.sh"

for tool in containerd ctr containerd-shim-runc-v2 script; do
    command -v $tool >/dev/null || die "$tool not found (apt-get install containerd util-linux)"
done

RT=$(client_runtime)
# containerd 1.6's shims put their sockets in /run/containerd/s, and ctr its fifos in
# /run/containerd/fifo, whatever the config says.
own_host_paths /run/containerd
RT_ROOT=$W/runtime-root
NS=berth-clients
# ctr puts a container in the cgroup /NAMESPACE/ID: the runtime removes ID, nobody the parent.
own_cgroups "$NS"
SOCK=$W/containerd.sock

cat >"$W/config.toml" <<EOF
version = 2
root = "$W/root"
state = "$W/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$W/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/opt"
EOF

# Stop containerd at exit: kill what is left of our namespace first, so that its shims exit.
stop_containerd() {
    local t
    for t in $(ctr_ task ls -q 2>/dev/null); do
        ctr_ task kill -a -s KILL "$t"
        ctr_ task delete -f "$t"
    done
    for t in $(ctr_ container ls -q 2>/dev/null); do ctr_ container rm "$t"; done
    stop_pidfile "$W/containerd.pid" containerd
}

ctr_() {
    ctr -a "$SOCK" -n "$NS" "$@"
}

containerd --config "$W/config.toml" >"$W/containerd.log" 2>&1 &
echo $! >"$W/containerd.pid"
on_exit stop_containerd
wait_for 60 ctr -a "$SOCK" version >/dev/null || die "containerd did not start: $(tail -n 5 "$W/containerd.log")"

make_image || die "could not make the busybox image"

# run ID [RUN-FLAGS...] -- CMD...: `ctr run` on our runtime and image.
run() {
    local id=$1 flags=()
    shift
    while [ "$1" != -- ]; do flags+=("$1"); shift; done
    shift
    ctr_ run --runc-binary "$RT" --runc-root "$RT_ROOT" "${flags[@]}" "$IMAGE_REF" "$id" "$@"
}

# task_field ID COLUMN: a column of `ctr task ls` (2 = PID, 3 = STATUS).
task_field() {
    ctr_ task ls | awk -v id="$1" -v c="$2" '$1 == id { print $c }'
}

task_status() {
    want_out "$2" task_field "$1" 3
}

check import ctr_ image import "$W/image/busybox-archive.tar"

check run-output want_out "hello from busybox" run c-out --rm -- echo hello from busybox
check run-exit-code want_exit 7 run c-exit --rm -- sh -c 'exit 7'
check run-stdin-pipe want_out "through the pipe" sh -c 'echo through the pipe | "$0" "$@"' \
    ctr -a "$SOCK" -n "$NS" run --runc-binary "$RT" --runc-root "$RT_ROOT" --rm "$IMAGE_REF" c-stdin sh -c 'read line; echo "$line"'
check run-tty want_has "tty:/dev/pts/0" in_tty ctr -a "$SOCK" -n "$NS" run --runc-binary "$RT" \
    --runc-root "$RT_ROOT" --rm -t "$IMAGE_REF" c-tty sh -c 'echo tty:$(tty)'

# The runtime's error (the last "error" line of its --log JSON) reaches the user through the shim.
check run-missing-command-error want_fail 1 "/nonexistent: no such file or directory" \
    run c-missing --rm -- /nonexistent

# A detached container that exits 0 on TERM (a shell as pid 1 ignores TERM unless it traps it),
# and one with a memory limit that ignores TERM.
check run-detached run c-bg -d -- sh -c 'trap "exit 0" TERM; echo started; while :; do sleep 0.2; done'
check run-detached-running eventually task_status c-bg RUNNING
BG_PID=$(task_field c-bg 2)

check exec-output want_out "in the container" ctr_ task exec --exec-id e1 c-bg echo in the container
check exec-exit-code want_exit 3 ctr_ task exec --exec-id e2 c-bg sh -c 'exit 3'
check exec-tty want_has "tty:/dev/pts/" in_tty ctr -a "$SOCK" -n "$NS" task exec -t --exec-id e3 c-bg \
    sh -c 'echo tty:$(tty)'
# The container's processes have only stdio open: nothing of the shim's (its fd 3) leaks in.
check init-fds-stdio-only want_out "0 1 2" ctr_ task exec --exec-id e5 c-bg sh -c 'echo $(ls /proc/1/fd)'
check exec-fds-stdio-only want_out $'0\n1\n2' ctr_ task exec --exec-id e6 c-bg sh -c 'ls /proc/$$/fd; true'
check exec-sees-init want_has "sleep" ctr_ task exec --exec-id e4 c-bg ps -o comm
check task-ps want_has "$BG_PID" ctr_ task ps c-bg

# A new container in c-bg's network namespace, joined by path: the same interfaces.
check run-with-ns want_out "$(ctr_ task exec --exec-id e7 c-bg cat /proc/net/dev)" \
    run c-ns --rm --with-ns "network:/proc/$BG_PID/ns/net" -- cat /proc/net/dev
check run-cwd-env want_out "/tmp bar" run c-cwd --rm --cwd /tmp --env FOO=bar -- sh -c 'echo $(pwd) $FOO'
check run-userns-mapped want_out "0 100000 65536" run c-userns --rm --uidmap 0:100000:65536 \
    --gidmap 0:100000:65536 -- sh -c 'echo $(cat /proc/self/uid_map)'

check run-memory-limit run c-mem -d --memory-limit 67108864 -- sleep 1013
check memory-limit-in-cgroup eventually want_file "$(cgroup_file "$(task_field c-mem 2)" memory memory.limit_in_bytes)" 67108864

check pause ctr_ task pause c-bg
check paused-status eventually task_status c-bg PAUSED
check paused-freezer want_file "$(cgroup_file "$BG_PID" freezer freezer.state)" FROZEN
check resume ctr_ task resume c-bg
check resumed-status eventually task_status c-bg RUNNING
check metrics want_has "memory.usage_in_bytes" ctr_ task metrics c-bg

check task-kill ctr_ task kill c-bg
check task-kill-stopped eventually task_status c-bg STOPPED
# ctr prints nothing for an exit status of 0, a warning naming any other.
check task-delete-exit-0 want_out "" ctr_ task delete c-bg
check task-deleted want_out "" task_field c-bg 1

# kill -a: the init and an exec'd process, all in the container's cgroup, all killed (their
# sleep length is this check's own: other suites on the machine sleep 1000).
ctr_ task exec -d --exec-id extra c-mem sleep 1013 >/dev/null 2>&1
check kill-all ctr_ task kill -a -s SIGKILL c-mem
check kill-all-stopped eventually task_status c-mem STOPPED
check kill-all-no-process eventually sh -c "! ps -eo ppid=,pid=,args= | grep -v grep | grep -q 'sleep 1013'"
check task-delete-killed want_has "exit code 137" ctr_ task delete c-mem

for c in c-bg c-mem; do ctr_ container rm $c >/dev/null 2>&1; done
check nothing-left-in-runtime-root runtime_root_empty "$RT_ROOT"

finish
