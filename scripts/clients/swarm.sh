#!/bin/bash
# Docker Swarm on berth: a dockerd of the suite's own (as scripts/clients/docker.sh runs it:
# data root, exec root, pid file, socket and config in a temp dir, cgroupfs, a bridge of its
# own) with "default-runtime": "berth", made a one-node swarm. A service of busybox httpd with
# 3 replicas behind a published port, scaled, updated, and a stack deployed from a compose file;
# every task container must be a berth container (known to berth under dockerd's runtime root),
# with dockerd's AppArmor profile where the kernel has AppArmor on.
# `swarm leave --force` must leave no task, and the host (links, iptables, ip_forward) is
# restored at exit.
#
# The published ports (Swarm's routing mesh) need IPVS in the kernel: without it their checks
# skip, unless SWARM_NEED_IPVS=1 (the systemd VM, scripts/vm-tests-systemd/swarm.sh, whose
# Debian kernel has it), where they must pass: several requests, to 127.0.0.1 and to this
# machine's own address, each answered by a task, and not all by the same one.
#
#   CLIENT_RUNTIME=target/debug/berth scripts/clients/swarm.sh
#   CLIENT_RUNTIME=/usr/sbin/runc scripts/clients/swarm.sh     # the oracle
SUITE=swarm
. "$(dirname "$0")/lib.sh"

for tool in dockerd containerd docker-init iptables curl; do
    command -v $tool >/dev/null || die "$tool not found (apt-get install docker.io iptables curl)"
done

RT=$(client_runtime)
own_host_paths /run/containerd /run/docker
own_cgroups berth-clients-swarm
BRIDGE=berthsw0
BRIDGE_ADDR=10.213.48.1/24
ADDR=10.213.48.1
SOCK=$W/docker.sock
export DOCKER_CONFIG=$W/client

cat >"$W/daemon.json" <<EOF
{
  "runtimes": { "berth": { "path": "$RT" } },
  "default-runtime": "berth",
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "cgroup-parent": "/berth-clients-swarm",
  "bridge": "$BRIDGE",
  "log-driver": "json-file"
}
EOF

[ -e /etc/docker/key.json ] || on_exit "rm -f /etc/docker/key.json"
delete_link $BRIDGE
ip link add $BRIDGE type bridge && ip addr add $BRIDGE_ADDR dev $BRIDGE && ip link set $BRIDGE up ||
    die "could not make the bridge $BRIDGE"
on_exit "delete_link $BRIDGE"
# Swarm's own bridge for its tasks' outside traffic, made by dockerd.
ip link show docker_gwbridge >/dev/null 2>&1 || on_exit "delete_link docker_gwbridge"

docker() {
    "$DOCKER_CLI" -H "unix://$SOCK" "$@"
}

stop_docker() {
    docker swarm leave --force
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
docker load -i "$W/image/busybox-archive.tar" >/dev/null || die "could not load the busybox image"
IMG=$IMAGE_REF
# Each task's page names the task (its hostname, the container's short id).
HTTPD='mkdir -p /www && echo served by berth from $(hostname) >/www/index.html && exec httpd -f -p 80 -h /www'

# running_tasks SERVICE N: N tasks of SERVICE running, each a berth container.
# Polled for 3/4 of the check's time, so that a failure has the time to say why.
running_tasks() {
    local ids id n=0 end=$((SECONDS + CHECK_TIMEOUT * 3 / 4))
    while :; do
        ids=$(docker ps -q --no-trunc --filter "label=com.docker.swarm.service.name=$1")
        n=$(echo "$ids" | grep -c .)
        [ "$n" = "$2" ] || [ $SECONDS -ge $end ] && break
        sleep 0.5
    done
    [ "$n" = "$2" ] || { echo "$n tasks of $1 running, want $2"; docker service ps --no-trunc "$1"; return 1; }
    for id in $ids; do
        st=$("$RUNTIME" --root "$W/exec/runtime-runc/moby" state "$id") &&
            case $st in *'"status": "running"'*) ;; *) false ;; esac ||
            { echo "task container $id is not a running berth container: $st"; return 1; }
    done
}

# The routing mesh (a published port of a service) is IPVS in the ingress network's sandbox:
# a kernel without it (no CONFIG_IP_VS) runs the tasks but nothing answers on the port.
have_ipvs() {
    [ -e /proc/net/ip_vs ] || modprobe ip_vs 2>/dev/null
}
# mesh_answers URL N: URL answers (once the mesh is up), then N requests in a row are each
# answered by a task, and by more than one task (IPVS balances connections round robin).
mesh_answers() {
    local i body from=
    fetch "$1" "served by berth" || return 1
    for i in $(seq "$2"); do
        body=$(curl -fsS --max-time 5 "$1" 2>&1) || { echo "request $i to $1: $body"; return 1; }
        case $body in
        "served by berth from "*) from+="${body#served by berth from }"$'\n' ;;
        *) echo "request $i to $1: $body"; return 1 ;;
        esac
    done
    [ "$(printf '%s' "$from" | sort -u | grep -c .)" -ge 2 ] ||
        { echo "all $2 requests to $1 were answered by one task: $from"; return 1; }
}
# port_answers NAME PORT: the published PORT answers on 127.0.0.1 and on $ADDR.
port_answers() {
    local host
    for host in 127.0.0.1 $ADDR; do
        if have_ipvs; then
            check "$1-$host" mesh_answers "http://$host:$2/" 8
        elif [ "${SWARM_NEED_IPVS:-}" = 1 ]; then
            check "$1-$host" sh -c 'echo "no IPVS in this kernel (modprobe ip_vs failed), SWARM_NEED_IPVS=1"; false'
        else
            skip "$1-$host" "this kernel has no IPVS (CONFIG_IP_VS), which swarm's routing mesh needs"
        fi
    done
}

# task_profiles SERVICE: with AppArmor on, dockerd gives each task its docker-default profile,
# which berth must have applied to the task's init.
task_profiles() {
    local id pid cur
    for id in $(docker ps -q --filter "label=com.docker.swarm.service.name=$1"); do
        pid=$(docker inspect -f '{{.State.Pid}}' "$id")
        cur=$(cat "/proc/$pid/attr/current")
        [ "$cur" = "docker-default (enforce)" ] || { echo "task $id (pid $pid): AppArmor label '$cur'"; return 1; }
    done
}

check swarm-init docker swarm init --advertise-addr $ADDR
PORT=$(free_port)
# A task's shell, pid 1, ignores SIGTERM: a short grace period, or each replaced task of the
# update below costs Docker's 10 s.
check service-create docker service create --detach --name web --replicas 3 --stop-grace-period 1s -p $PORT:80 $IMG sh -c "$HTTPD"
check service-3-tasks running_tasks web 3
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
    check service-tasks-apparmor task_profiles web
else
    skip service-tasks-apparmor "AppArmor is not enabled in this kernel"
fi
port_answers service-port-answers $PORT
check service-scale docker service scale --detach web=5
check service-5-tasks running_tasks web 5
check service-update docker service update --detach --update-parallelism 0 --env-add GREETING=updated web
check service-updated-tasks wait_for 120 sh -c '[ "$("$0" -H "unix://$1" service ps -q --filter desired-state=running web | wc -l)" = 5 ] && for c in $("$0" -H "unix://$1" ps -q --filter label=com.docker.swarm.service.name=web); do "$0" -H "unix://$1" exec $c env | grep -q GREETING=updated || exit 1; done' "$DOCKER_CLI" "$SOCK"
port_answers updated-port-answers $PORT
check service-rm docker service rm web

PORT2=$(free_port)
cat >"$W/stack.yml" <<EOF
version: "3.8"
services:
  front:
    image: $IMG
    command: ["sh", "-c", "${HTTPD//\$/\$\$}"]
    ports: ["$PORT2:80"]
    deploy:
      replicas: 2
EOF
check stack-deploy docker stack deploy -c "$W/stack.yml" st
check stack-2-tasks running_tasks st_front 2
port_answers stack-port-answers $PORT2
check swarm-leave docker swarm leave --force
check no-task-left wait_for 30 sh -c '[ -z "$("$0" -H "unix://$1" ps -q)" ]' "$DOCKER_CLI" "$SOCK"
check nothing-left-in-runtime-root runtime_root_empty "$W/exec/runtime-runc/moby"

finish
