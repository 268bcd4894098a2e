#!/bin/bash
# Podman drives the runtime through conmon (create, exec) and directly (start, kill, pause,
# resume, update, delete, state): `podman --runtime RUNTIME` with its storage, run root, tmp
# dir, network configs and containers.conf in a temp dir, cgroupfs and file events (no
# systemd). Podman passes the runtime no --root, so the runtime's default root is used. The `-p`
# check runs on a network of the suite's own (netavark, no DNS daemon); the
# iptables rules and chains, the FORWARD policy and ip_forward it sets are undone at exit.
#
#   CLIENT_RUNTIME=target/debug/berth scripts/clients/podman.sh
#   CLIENT_RUNTIME=/usr/sbin/runc scripts/clients/podman.sh     # the oracle
SUITE=podman
. "$(dirname "$0")/lib.sh"

for tool in podman conmon iptables script curl ss /usr/lib/podman/netavark; do
    command -v $tool >/dev/null || die "$tool not found (apt-get install podman conmon netavark curl)"
done

RT=$(client_runtime)
NET=berth-clients
# Where the runtime keeps its state when not given --root (runc's and berth's defaults).
case $(basename "$RUNTIME") in
runc | crun) RT_DEFAULT_ROOT=/run/$(basename "$RUNTIME") ;;
*) RT_DEFAULT_ROOT=/run/berth ;;
esac

# Podman 4.3 keeps some state at fixed paths whatever its flags say (netavark's ipam.db in
# /run/containers/networks, the blob info cache of load/import in /var/lib/containers/cache):
# what the suite creates there it removes (lib.sh).
own_host_paths /run/containers /var/lib/containers /run/libpod
# cgroupfs: podman's containers and conmons go under /libpod_parent.
own_cgroups libpod_parent

mkdir -p "$W/networks" "$W/tmp"
export CONTAINERS_CONF=$W/containers.conf
# No CAP_SYS_RESOURCE on the test hosts: podman's default nofile and nproc (1048576 and
# 4194304 for root) could not be set. Pin them below podman's own limits (it lowers its nproc
# to 32768 at start, and the runtime inherits that through conmon).
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
network_config_dir = "$W/networks"
EOF

# Every podman call: all its state in $W (never /var/lib/containers, /run/containers, ...).
PODMAN=(podman --runtime "$RT" --root "$W/storage" --runroot "$W/run" --tmpdir "$W/tmp"
    --cgroup-manager cgroupfs --events-backend file --network-config-dir "$W/networks")
podman() {
    command "${PODMAN[@]}" "$@"
}

# At exit: remove our containers (their network set-up is undone with them), our network and
# the storage's mounts.
stop_podman() {
    podman rm -af -t 0
    podman network rm -f $NET
    podman system reset -f
    wait_processes_gone
}
on_exit stop_podman

make_image || die "could not make the busybox image"
IMG=$IMAGE_REF

# state_of NAME: podman's status of a container.
state_of() {
    podman inspect -f '{{.State.Status}}' "$1"
}

init_pid() {
    podman inspect -f '{{.State.Pid}}' "$1"
}

# runtime_status NAME: the status the runtime itself reports (`state`, default root).
runtime_status() {
    "$RUNTIME" state "$(podman inspect -f '{{.Id}}' "$1")" | sed -n 's/^ *"status": "\(.*\)",*$/\1/p'
}

# The runtime's default root as it was: what the suite's containers add must be gone at the end.
# Made by the runtime for the suite, it is removed at exit if empty (never with what is in it).
[ -d "$RT_DEFAULT_ROOT" ] || on_exit "rmdir $RT_DEFAULT_ROOT"
root_entries() {
    find "$RT_DEFAULT_ROOT" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null
}
RT_ROOT_BEFORE=$(root_entries)

# no_state_for_suite: no container directory left in the runtime's default root (none that was
# not there at the start; and none holding a bundle path of this suite).
no_state_for_suite() {
    local left
    left=$(root_entries | grep -vxF -- "$RT_ROOT_BEFORE")
    left+=$(grep -rlsF -- "$W/" "$RT_DEFAULT_ROOT" --include=state.json)
    [ -z "$left" ] || { echo "left in $RT_DEFAULT_ROOT: $left"; return 1; }
}

check load want_has "Loaded image: $IMG" podman load -i "$W/image/busybox-archive.tar"
check import podman import "$W/image/busybox-rootfs.tar" localhost/busybox:imported
# An imported image has no config: no PATH, so the command by its path.
check run-imported-image want_out "from the imported image" podman run --rm localhost/busybox:imported \
    /bin/echo from the imported image

check run-rm-output want_out "hello from busybox" podman run --rm $IMG echo hello from busybox
check run-exit-code want_exit 7 podman run --rm $IMG sh -c 'exit 7'
check run-stdin want_out "through stdin" sh -c 'echo through stdin | "$0" "$@"' \
    "${PODMAN[@]}" run --rm -i $IMG cat
# The sleep: podman attaches to a terminal container after starting it, and loses what it
# printed before (1 run in 6 with runc, without the sleep).
check run-it want_has "tty:/dev/pts/0" in_tty "${PODMAN[@]}" run --rm -it $IMG sh -c 'sleep 0.3; echo tty:$(tty)'

# The runtime's error reaches the user (through conmon); Podman maps "no such file or
# directory" to 127.
check run-missing-command-error want_fail 127 "/nonexistent: no such file or directory" \
    podman run --rm $IMG /nonexistent
# Podman passes --log-format=json --log FILE only to a runtime named crun, runc, kata, runsc or
# krun: the runtime under the name runc, where its errors come back through that JSON log.
mkdir -p "$W/as-runc"
ln -s "$RT" "$W/as-runc/runc"
PODMAN_AS_RUNC=(podman --runtime "$W/as-runc/runc" "${PODMAN[@]:3}")
check run-runtime-named-runc want_out "named runc" "${PODMAN_AS_RUNC[@]}" run --rm $IMG echo named runc
check run-runtime-named-runc-error want_fail 127 "/nonexistent: no such file or directory" \
    "${PODMAN_AS_RUNC[@]}" run --rm $IMG /nonexistent
# The runtime chosen in containers.conf (engine.runtime and engine.runtimes) instead of --runtime.
sed 's/^\[engine\]$/[engine]\nruntime = "berth-under-test"/' "$CONTAINERS_CONF" >"$W/containers-runtime.conf"
printf '[engine.runtimes]\nberth-under-test = ["%s"]\n' "$RT" >>"$W/containers-runtime.conf"
PODMAN_CONF_RUNTIME=(env CONTAINERS_CONF="$W/containers-runtime.conf" podman "${PODMAN[@]:3}")
check run-runtime-from-containers-conf want_out "chosen in containers.conf" \
    "${PODMAN_CONF_RUNTIME[@]}" run --name conf-runtime $IMG echo chosen in containers.conf
check containers-conf-runtime-used want_out berth-under-test \
    "${PODMAN_CONF_RUNTIME[@]}" inspect -f '{{.OCIRuntime}}' conf-runtime
check rm-conf-runtime "${PODMAN_CONF_RUNTIME[@]}" rm conf-runtime
check run-init want_out podman-init podman run --rm --init $IMG cat /proc/1/comm
echo "passed as fd 3" >"$W/fd3"
check run-preserve-fds want_out "passed as fd 3" podman run --rm --preserve-fds 1 $IMG cat /proc/self/fd/3 3<"$W/fd3"

check create podman create --name staged $IMG sh -c 'echo created, initialized, started; exit 5'
check created want_out created state_of staged
check init podman init staged
check initialized want_out initialized state_of staged
check initialized-runtime-created want_out created runtime_status staged
check start-attach-exit-code want_exit 5 podman start -a staged
check start-attach-output want_out "created, initialized, started" podman logs staged
check rm-stopped podman rm staged

# A container that exits 0 on TERM (a shell as pid 1 ignores TERM unless it traps it), with a
# memory limit.
check run-detached podman run -d --name bg -m 64m $IMG \
    sh -c 'trap "exit 0" TERM; echo started; while :; do sleep 0.2; done'
check running want_out running state_of bg
check runtime-running want_out running runtime_status bg
check exec-output want_out "in the container" podman exec bg echo in the container
check exec-exit-code want_exit 3 podman exec bg sh -c 'exit 3'
check exec-it want_has "tty:/dev/pts/" in_tty "${PODMAN[@]}" exec -it bg sh -c 'sleep 0.3; echo tty:$(tty)'
check exec-user-workdir-env want_out "1000 /tmp bar" podman exec -u 1000 -w /tmp -e FOO=bar bg \
    sh -c 'echo $(id -u) $(pwd) $FOO'
# The container's processes have only stdio open: nothing of conmon's or podman's leaks in.
check init-fds-stdio-only want_out "0 1 2" podman exec bg sh -c 'echo $(ls /proc/1/fd)'
check exec-fds-stdio-only want_out $'0\n1\n2' podman exec bg sh -c 'ls /proc/$$/fd; true'
check update podman update --cpu-shares 512 bg
check update-cpu-shares want_file "$(cgroup_file "$(init_pid bg)" cpu cpu.shares)" 512
# The update JSON carries 0 for what was not asked: the memory limit stays.
check update-memory-unchanged want_file "$(cgroup_file "$(init_pid bg)" memory memory.limit_in_bytes)" 67108864
check logs want_out "started" podman logs bg
check top want_has "sleep 0.2" podman top bg
check memory-limit-cgroup want_file "$(cgroup_file "$(init_pid bg)" memory memory.limit_in_bytes)" 67108864
check memory-limit-inside want_out 67108864 podman exec bg cat /sys/fs/cgroup/memory/memory.limit_in_bytes
check pause podman pause bg
check paused want_out paused state_of bg
check paused-freezer want_file "$(cgroup_file "$(init_pid bg)" freezer freezer.state)" FROZEN
check unpause podman unpause bg
check unpaused want_out running state_of bg
check stop-graceful podman stop -t 20 bg
check stop-graceful-exit-0 want_out "exited 0" podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' bg
check start-again podman start bg
check restart podman restart -t 20 bg
check restarted-exec want_out "restarted" podman exec bg echo restarted
check kill podman kill bg
check killed-exit-137 eventually want_out "exited 137" podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' bg
check rm podman rm bg

# TERM ignored: `podman stop -t 1` kills it (the runtime's `kill ID 9`) after 1 s.
check run-term-ignored podman run -d --name stubborn $IMG sh -c 'trap "" TERM; while :; do sleep 0.2; done'
check stop-kills-after-timeout podman stop -t 1 stubborn
check stop-killed-exit-137 eventually want_out "exited 137" podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' stubborn
check rm-stubborn podman rm stubborn
check rm-gone want_nothing podman ps -aq --filter name=bg

# A pod: its containers join the infra container's namespaces by path (podman builds the
# infra image from catatonit locally). The second reaches the first's server on localhost.
check pod-create podman pod create --name berth-pod
check pod-run-server podman run -d --pod berth-pod --name pod-server $IMG \
    sh -c 'mkdir /www && echo shared netns >/www/index.html && httpd -p 8080 -h /www && exec sleep 1000'
check pod-shared-network eventually want_out "shared netns" podman run --rm --pod berth-pod $IMG \
    wget -qO- http://127.0.0.1:8080/
check pod-rm podman pod rm -f -t 0 berth-pod

# A user namespace with mappings.
check run-userns-mapped want_out "0 100000 65536" podman run --rm --uidmap 0:100000:65536 \
    --gidmap 0:100000:65536 $IMG sh -c 'echo $(cat /proc/self/uid_map)'

check read-only want_has "Read-only file system" podman run --rm --read-only $IMG sh -c 'touch /file; exit 0'
check read-only-tmp-writable want_out "written" podman run --rm --read-only $IMG sh -c 'echo written >/tmp/f && cat /tmp/f'

# -p on a network of our own: busybox httpd behind the published port.
check network-create podman network create --disable-dns --subnet 10.213.48.0/24 $NET
# The bridge podman named for it, removed at exit if podman leaves it.
BRIDGE=$(podman network inspect -f '{{.NetworkInterface}}' $NET)
[ -z "$BRIDGE" ] || on_exit "delete_link $BRIDGE"
PORT=$(free_port)
check run-published-port podman run -d --name web --network $NET -p 127.0.0.1:$PORT:80 $IMG \
    sh -c 'mkdir /www && echo served by busybox httpd >/www/index.html && httpd -p 80 -h /www && exec sleep 1000'
check curl-published-port fetch "http://127.0.0.1:$PORT/" "served by busybox httpd"
# With a network, conmon passes podman's fds to the runtime: none may reach the container.
check published-port-init-fds-stdio-only want_out "0 1 2" podman exec web sh -c 'echo $(ls /proc/1/fd)'
check rm-force-running podman rm -f -t 0 web
check network-rm podman network rm $NET

check nothing-left-in-runtime-root no_state_for_suite
finish
