#!/bin/bash
# Docker Engine drives the runtime as a `runtimes` entry of daemon.json ("berth"), through the
# containerd and runc shim that dockerd starts itself. dockerd runs with its data root, exec
# root, pid file, socket and config in a temp dir, the cgroupfs driver, and a bridge of its own
# (berthd0, made and removed here) so the host's docker0, if any, is untouched. Its iptables
# rules and chains, the FORWARD policy and ip_forward it sets are undone at exit.
#
#   CLIENT_RUNTIME=target/debug/berth scripts/clients/docker.sh
#   CLIENT_RUNTIME=/usr/sbin/runc scripts/clients/docker.sh     # the oracle
SUITE=docker
. "$(dirname "$0")/lib.sh"

for tool in dockerd containerd docker-init docker-proxy iptables script curl ss; do
    command -v $tool >/dev/null || die "$tool not found (apt-get install docker.io curl)"
done
[ -x "$DOCKER_CLI" ] || die "$DOCKER_CLI not found (apt-get install docker.io)"

RT=$(client_runtime)
# containerd 1.6's shims put their sockets in /run/containerd/s, and dockerd its plugin
# sockets in /run/docker/plugins, whatever the flags say.
own_host_paths /run/containerd /run/docker
own_cgroups berth-clients-docker # daemon.json's cgroup-parent
BRIDGE=berthd0
BRIDGE_ADDR=10.213.47.1/24
SOCK=$W/docker.sock
export DOCKER_CONFIG=$W/client

cat >"$W/daemon.json" <<EOF
{
  "runtimes": { "berth": { "path": "$RT" } },
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "cgroup-parent": "/berth-clients-docker",
  "bridge": "$BRIDGE",
  "default-ulimits": { "nofile": { "Name": "nofile", "Soft": 1024, "Hard": 1024 } },
  "log-driver": "json-file"
}
EOF

# dockerd 20.10 writes its identity key into /etc/docker (a directory of the package).
[ -e /etc/docker/key.json ] || on_exit "rm -f /etc/docker/key.json"
delete_link $BRIDGE
ip link add $BRIDGE type bridge && ip addr add $BRIDGE_ADDR dev $BRIDGE && ip link set $BRIDGE up ||
    die "could not make the bridge $BRIDGE"
on_exit "delete_link $BRIDGE"

docker() {
    "$DOCKER_CLI" -H "unix://$SOCK" "$@"
}

# Stop dockerd at exit: remove our containers first, so that nothing outlives it.
stop_docker() {
    local ids
    ids=$(docker ps -aq 2>/dev/null)
    [ -z "$ids" ] || docker rm -f $ids
    stop_pidfile "$W/dockerd.pid" dockerd
}

dockerd --config-file "$W/daemon.json" --data-root "$W/data" --exec-root "$W/exec" \
    --pidfile "$W/dockerd.pid" -H "unix://$SOCK" >"$W/dockerd.log" 2>&1 &
on_exit stop_docker
wait_for 60 docker version >/dev/null || die "dockerd did not start: $(tail -n 5 "$W/dockerd.log")"

make_image || die "could not make the busybox image"
IMG=$IMAGE_REF

# run [FLAGS...] CMD...: `docker run` on our runtime.
run() {
    docker run --runtime berth "$@"
}

# inspect FORMAT NAME
inspect() {
    docker inspect -f "$1" "$2"
}

# init_pid NAME: the host pid of the container's init.
init_pid() {
    inspect '{{.State.Pid}}' "$1"
}

# stop_takes MIN MAX NAME [STOP-FLAGS...]: `docker stop` returns after MIN to MAX seconds.
stop_takes() {
    local min=$1 max=$2 start took
    shift 2
    start=$(date +%s%N)
    docker stop "$@" >/dev/null || return 1
    took=$((($(date +%s%N) - start) / 1000000))
    [ $took -ge $((min * 1000)) ] && [ $took -le $((max * 1000)) ] ||
        { echo "docker stop took ${took} ms, want ${min} to ${max} s"; return 1; }
}

check load want_has "Loaded image: busybox:berth-clients" docker load -i "$W/image/busybox-archive.tar"
check import docker import "$W/image/busybox-rootfs.tar" busybox:imported
check run-imported-image want_out "from the imported image" run --rm busybox:imported echo from the imported image

check run-output want_out "hello from busybox" run --rm $IMG echo hello from busybox
check run-exit-code want_exit 7 run --rm $IMG sh -c 'exit 7'
check run-stdin want_out "through stdin" sh -c 'echo through stdin | "$0" "$@"' \
    "$DOCKER_CLI" -H "unix://$SOCK" run --runtime berth --rm -i $IMG cat
check run-it want_has "tty:/dev/pts/0" in_tty "$DOCKER_CLI" -H "unix://$SOCK" run --runtime berth --rm -it \
    $IMG sh -c 'echo tty:$(tty)'
# The runtime's error (the last "error" line of its --log JSON) reaches the user; Docker maps
# "no such file or directory" to 127.
check run-missing-command-error want_fail 127 "/nonexistent: no such file or directory" \
    run --rm $IMG /nonexistent
check run-init want_out "docker-init" run --rm --init $IMG cat /proc/1/comm

# The options Docker turns into config.json fields, each seen from inside the container.
mkdir -p "$W/volume"
check run-bind-volume want_out "written through the volume" sh -c \
    '"$@" && cat "$0/volume/file"' "$W" "$DOCKER_CLI" -H "unix://$SOCK" run --runtime berth --rm \
    -v "$W/volume:/data" $IMG sh -c 'echo written through the volume >/data/file'
check run-read-only want_has "Read-only file system" run --rm --read-only $IMG sh -c 'touch /file; exit 0'
check run-read-only-tmpfs want_out "tmpfs written" run --rm --read-only --tmpfs /scratch $IMG \
    sh -c 'echo tmpfs written >/scratch/f && cat /scratch/f'
check run-user-groups want_out "uid=1000(berth) gid=1000(berth) groups=44,1000(berth)" \
    run --rm -u 1000:1000 --group-add 44 $IMG id
check run-cap-drop-add want_out "CapEff:	0000000000000400" \
    run --rm --cap-drop ALL --cap-add NET_BIND_SERVICE $IMG grep CapEff /proc/self/status
check run-no-new-privileges want_out "NoNewPrivs:	1" \
    run --rm --security-opt no-new-privileges $IMG grep NoNewPrivs /proc/self/status
check run-ulimit want_out "512" run --rm --ulimit nofile=512:512 $IMG sh -c 'ulimit -n'
check run-hostname want_out "berth-host" run --rm --hostname berth-host $IMG hostname
check run-sysctl want_out "1024" run --rm --sysctl net.ipv4.ip_unprivileged_port_start=1024 $IMG \
    cat /proc/sys/net/ipv4/ip_unprivileged_port_start
check run-oom-score-adj want_out "500" run --rm --oom-score-adj 500 $IMG cat /proc/self/oom_score_adj
check run-shm-size want_match '^shm +16384 ' run --rm --shm-size 16m $IMG df -k /dev/shm
check run-network-none want_out "lo" run --rm --network none $IMG ls /sys/class/net
check run-pid-host want_out "host pid 1" sh -c '[ "$("$@")" != 1 ] && echo host pid 1' sh \
    "$DOCKER_CLI" -H "unix://$SOCK" run --runtime berth --rm --pid host $IMG sh -c 'echo $$'
check run-cpus-pids-limit want_out "50000 100000 20" run --rm --cpus 0.5 --pids-limit 20 $IMG \
    sh -c 'echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/pids/pids.max)'

check run-device want_match '^crw-rw-rw- +1 root +root +1, +3 ' run --rm --device /dev/null:/dev/berthnull $IMG \
    ls -l /dev/berthnull
check run-cgroupns-private want_match '^[0-9]+:memory:/$' run --rm --cgroupns private $IMG cat /proc/self/cgroup
check run-large-output want_out 10000000 sh -c '"$@" | wc -c' sh "$DOCKER_CLI" -H "unix://$SOCK" run \
    --runtime berth --rm $IMG sh -c 'yes 0123456789abcdefghi | head -c 10000000'

# A container that exits 0 on TERM (a shell as pid 1 ignores TERM unless it traps it), with a
# memory limit.
check run-detached run -d --name bg -m 64m $IMG \
    sh -c 'trap "exit 0" TERM; echo started; while :; do sleep 0.2; done'
check running want_out true inspect '{{.State.Running}}' bg
check exec-output want_out "in the container" docker exec bg echo in the container
check exec-exit-code want_exit 3 docker exec bg sh -c 'exit 3'
check exec-it want_has "tty:/dev/pts/" in_tty "$DOCKER_CLI" -H "unix://$SOCK" exec -it bg sh -c 'echo tty:$(tty)'
check exec-user want_out "uid=1000(berth) gid=1000(berth) groups=1000(berth)" docker exec -u 1000:1000 bg id
check exec-workdir want_out "/tmp" docker exec -w /tmp bg pwd
check exec-env want_out "bar" docker exec -e FOO=bar bg sh -c 'echo $FOO'
# The container's processes have only stdio open: nothing of the shim's leaks in.
check init-fds-stdio-only want_out "0 1 2" docker exec bg sh -c 'echo $(ls /proc/1/fd)'
check exec-fds-stdio-only want_out $'0\n1\n2' docker exec bg sh -c 'ls /proc/$$/fd; true'
check logs want_out "started" docker logs bg
# Another container in bg's network namespace (joined by path): the same interface.
check run-network-container want_out "$(docker exec bg cat /sys/class/net/eth0/address)" \
    run --rm --network container:bg $IMG cat /sys/class/net/eth0/address
check top want_has "sleep 0.2" docker top bg
check memory-limit-cgroup want_file "$(cgroup_file "$(init_pid bg)" memory memory.limit_in_bytes)" 67108864
check memory-limit-inside want_out 67108864 docker exec bg cat /sys/fs/cgroup/memory/memory.limit_in_bytes

check update docker update --cpu-shares 512 --pids-limit 100 bg
check update-cpu-shares want_file "$(cgroup_file "$(init_pid bg)" cpu cpu.shares)" 512
# The update JSON carries 0 for what was not asked: the memory limit stays.
check update-memory-unchanged want_file "$(cgroup_file "$(init_pid bg)" memory memory.limit_in_bytes)" 67108864
check update-pids-limit want_file "$(cgroup_file "$(init_pid bg)" pids pids.max)" 100

check pause docker pause bg
check paused want_out paused inspect '{{.State.Status}}' bg
check paused-freezer want_file "$(cgroup_file "$(init_pid bg)" freezer freezer.state)" FROZEN
check unpause docker unpause bg
check unpaused want_out running inspect '{{.State.Status}}' bg
check stats want_match '^bg [1-9][0-9.]*[KMG]iB / 64MiB$' docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' bg

check stop-graceful stop_takes 0 15 -t 30 bg
check stop-graceful-exit-0 want_out "exited 0" inspect '{{.State.Status}} {{.State.ExitCode}}' bg
check start-again docker start bg
check started-again-exec want_out "again" docker exec bg echo again
check restart docker restart -t 20 bg
check restarted-exec want_out "restarted" docker exec bg echo restarted
check kill docker kill bg
check killed-exit-137 want_out "exited 137" inspect '{{.State.Status}} {{.State.ExitCode}}' bg

# A signal by name reaches the container's init (a handler writes a file).
check run-signal-handler run -d --name sig $IMG \
    sh -c 'trap "echo got USR1 >/tmp/sig" USR1; while :; do sleep 0.2; done'
check kill-usr1 docker kill -s USR1 sig
check kill-usr1-delivered eventually want_out "got USR1" docker exec sig cat /tmp/sig
check rm-signal-container docker rm -f sig

# TERM ignored: `docker stop -t 2` kills it after 2 s.
check run-term-ignored run -d --name stubborn $IMG sh -c 'trap "" TERM; while :; do sleep 0.2; done'
check stop-kills-after-timeout stop_takes 2 20 -t 2 stubborn
check stop-killed-exit-137 want_out "exited 137" inspect '{{.State.Status}} {{.State.ExitCode}}' stubborn

# -p: busybox httpd (a daemon, so pid 1's fds are only its own) behind the published port,
# through the bridge (Docker's prestart hook must have run for its networking to be set up).
PORT=$(free_port)
check run-published-port run -d --name web -p 127.0.0.1:$PORT:80 $IMG \
    sh -c 'mkdir /www && echo served by busybox httpd >/www/index.html && httpd -p 80 -h /www && exec sleep 1000'
check curl-published-port fetch "http://127.0.0.1:$PORT/" "served by busybox httpd"
check published-port-init-fds-stdio-only want_out "0 1 2" docker exec web sh -c 'echo $(ls /proc/1/fd)'

check rm-force-running docker rm -f web
check rm-force-gone want_out "" docker ps -aq --filter name=web
check rm-stopped docker rm bg stubborn
# dockerd gives runc-shim runtimes the root EXEC-ROOT/runtime-runc/moby.
check nothing-left-in-runtime-root runtime_root_empty "$W/exec/runtime-runc"

finish
