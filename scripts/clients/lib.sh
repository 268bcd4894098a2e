# Shared by the client suites (containerd.sh, docker.sh, podman.sh): the check framework, the
# busybox image made from bundles/busybox/rootfs, the host snapshot/restore and the cleanup
# stack. Sourced with bash; `set -e` is off so that one failed check does not stop the suite.
#
# Environment:
#   CLIENT_RUNTIME  the OCI runtime the client drives (berth, or /usr/sbin/runc as the oracle)
#   CLIENT_TRACE=1  put a wrapper in front of the runtime that logs each call's argv, cwd and
#                   open fds to $W/runtime-calls.log, and keep $W at the end to read it
#   CLIENT_KEEP=1   keep the temp dir (daemon logs, state) at the end
#
# Output: one line per check, `ok NAME`, `FAIL NAME: details` or `skip NAME: reason`, then
# `SUITE: N passed, M failed, K skipped`; the exit status is 1 if any check failed.

set -u
set -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROOTFS=${ROOTFS:-$REPO/bundles/busybox/rootfs}
RUNTIME=${CLIENT_RUNTIME:?set CLIENT_RUNTIME to the OCI runtime binary (berth or runc)}
# Debian's docker client matches Debian's dockerd; /usr/local/bin may hold a newer one.
DOCKER_CLI=/usr/bin/docker
# Every command a check runs is cut off after this long, so a hung client fails the check
# instead of the suite.
CHECK_TIMEOUT=${CHECK_TIMEOUT:-60}

passed=0
failed=0
skipped=0

die() {
    echo "$SUITE: setup failed: $*" >&2
    exit 1
}

[ -x "$RUNTIME" ] || die "CLIENT_RUNTIME=$RUNTIME is not an executable file"
RUNTIME=$(readlink -f "$RUNTIME")
[ -x "$ROOTFS/bin/busybox" ] || die "no busybox rootfs at $ROOTFS (run: make rootfs)"

# One suite at a time on a host, from any checkout: they share the host's iptables, ip_forward
# and the fixed paths the daemons use (/run/containerd, ...), and name their bridges alike. The
# suite runs again under flock(1), which holds the lock itself (-o: the suite, and so the
# daemons it starts, never inherit the lock's fd, and an orphaned shim cannot keep it).
CLIENTS_LOCK=${CLIENTS_LOCK:-/run/lock/berth-clients.lock}
if [ "${CLIENTS_LOCK_HELD:-}" != "$CLIENTS_LOCK" ]; then
    export CLIENTS_LOCK_HELD=$CLIENTS_LOCK
    flock -o -w 600 -E 75 "$CLIENTS_LOCK" "$BASH" "$0" "$@"
    rc=$?
    [ $rc -ne 75 ] || echo "$SUITE: another client suite held $CLIENTS_LOCK for 10 minutes" >&2
    exit $rc
fi

W=$(mktemp -d "/tmp/berth-clients-$SUITE-XXXXXX") || die "mktemp"
chmod 711 "$W"

# --- the check framework -------------------------------------------------------------------

# check NAME CMD [ARGS...]: run CMD (a command or one of the functions below); `ok NAME` if it
# exits 0, else `FAIL NAME: the last lines of its output`. CMD runs as a job of its own (set -m)
# so that, after CHECK_TIMEOUT seconds, its whole process group is killed. Being in other
# process groups, the job and its watchdog miss a TERM sent to the suite's: the trap passes it
# on (else the watchdog would hold the output pipe open, and the suite's cleanup wait on it).
check() {
    local name=$1 out rc
    shift
    out=$(
        set -m
        "$@" 2>&1 &
        job=$!
        (sleep "$CHECK_TIMEOUT" && echo "timed out after ${CHECK_TIMEOUT}s" && kill -KILL -- -$job) 2>/dev/null &
        watchdog=$!
        trap 'kill -KILL -- -$job -$watchdog 2>/dev/null; exit 143' TERM INT
        wait $job
        rc=$?
        kill -- -$watchdog 2>/dev/null
        exit $rc
    )
    rc=$?
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "ok $name"
        return 0
    fi
    failed=$((failed + 1))
    echo "FAIL $name: (exit $rc) $(printf '%s\n' "$out" | tail -n 12 | awk 'NR > 1 { printf " | " } { printf "%s", $0 }')"
    return 1
}

skip() {
    skipped=$((skipped + 1))
    echo "skip $1: $2"
}

# want_out WANT CMD...: CMD exits 0 and its output (stdout and stderr, trailing CRs and blank
# lines dropped) is exactly WANT.
want_out() {
    local want=$1 got
    shift
    got=$("$@" 2>&1) || { echo "exit $?: $got"; return 1; }
    got=$(printf '%s\n' "$got" | tr -d '\r')
    [ "$got" = "$want" ] || { echo "got '$got', want '$want'"; return 1; }
}

# want_has TEXT CMD...: CMD exits 0 and its output contains TEXT.
want_has() {
    local want=$1 got
    shift
    got=$("$@" 2>&1) || { echo "exit $?: $got"; return 1; }
    case $got in
    *"$want"*) return 0 ;;
    esac
    echo "output does not contain '$want': $got"
    return 1
}

# want_match REGEX CMD...: CMD exits 0 and a line of its output matches the extended REGEX.
want_match() {
    local re=$1 got
    shift
    got=$("$@" 2>&1) || { echo "exit $?: $got"; return 1; }
    printf '%s\n' "$got" | grep -Eq -- "$re" || { echo "no line matches '$re': $got"; return 1; }
}

# want_nothing CMD...: CMD prints nothing (whatever its exit status: grep, pgrep, ...).
want_nothing() {
    local got
    got=$("$@" 2>&1)
    [ -z "$got" ] || { echo "$got"; return 1; }
}

# want_exit CODE CMD...: CMD exits with CODE.
want_exit() {
    local want=$1 got out
    shift
    out=$("$@" 2>&1)
    got=$?
    [ "$got" = "$want" ] || { echo "exit $got, want $want: $out"; return 1; }
}

# want_fail CODE TEXT CMD...: CMD exits with CODE and its output contains TEXT (an error the
# client took from the runtime).
want_fail() {
    local code=$1 text=$2 got out
    shift 2
    out=$("$@" 2>&1)
    got=$?
    [ "$got" = "$code" ] || { echo "exit $got, want $code: $out"; return 1; }
    case $out in
    *"$text"*) return 0 ;;
    esac
    echo "output does not contain '$text': $out"
    return 1
}

# want_file FILE VALUE: FILE holds exactly VALUE.
want_file() {
    local got
    got=$(cat "$1" 2>&1) || { echo "$1: $got"; return 1; }
    [ "$got" = "$2" ] || { echo "$1 is '$got', want '$2'"; return 1; }
}

# wait_for SECONDS CMD...: CMD succeeds within SECONDS (polled every 0.1 s).
wait_for() {
    local i out tries=$(($1 * 10))
    shift
    for ((i = 0; i < tries; i++)); do
        out=$("$@" 2>&1) && return 0
        sleep 0.1
    done
    echo "$out"
    return 1
}

# eventually CMD...: CMD succeeds within 15 s (state changes the client makes asynchronously).
eventually() {
    wait_for 15 "$@"
}

# in_tty CMD...: run CMD with a pseudo-terminal as its stdin/stdout (util-linux `script`), for
# the `-t`/`-it` checks; prints what the terminal showed.
in_tty() {
    local cmd
    printf -v cmd '%q ' "$@"
    script -qec "$cmd" /dev/null </dev/null
}

# cgroup_file PID CONTROLLER FILE: the path of FILE in PID's cgroup of a v1 CONTROLLER (or the
# unified hierarchy when the host has no v1 hierarchy for it).
cgroup_file() {
    local rel
    rel=$(awk -F: -v c="$2" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' "/proc/$1/cgroup")
    if [ -n "$rel" ] && [ -d "/sys/fs/cgroup/$2" ]; then
        echo "/sys/fs/cgroup/$2$rel/$3"
    else
        rel=$(awk -F: '$1 == "0" { print $3 }' "/proc/$1/cgroup")
        echo "/sys/fs/cgroup$rel/$3"
    fi
}

# runtime_root_empty DIR: the shim gave the runtime --root DIR/NAMESPACE, and no container
# directory is left in any of them (DIR must exist: the client did use it).
runtime_root_empty() {
    local left
    [ -d "$1" ] || { echo "no runtime root $1: was it used?"; return 1; }
    left=$(find "$1" -mindepth 2 -maxdepth 2)
    [ -z "$left" ] || { echo "left in $1: $left"; return 1; }
}

# finish: stop the daemon and restore the host (the cleanup stack), check that nothing is left
# (host changes, processes and mounts of the suite), print the summary; the suite's exit status.
finish() {
    run_cleanups
    check host-restored want_nothing host_changes
    check host-paths-removed want_nothing own_host_paths_left
    check no-cgroup-left want_nothing own_cgroups_left
    check no-process-left want_nothing pgrep -af -- "$W/"
    check no-mount-left want_nothing grep -F -- "$W/" /proc/self/mountinfo
    echo "$SUITE: $passed passed, $failed failed, $skipped skipped (runtime $RUNTIME)"
    [ "$failed" -eq 0 ]
}

# --- cleanup -------------------------------------------------------------------------------

CLEANUPS=()
# on_exit CMD: run CMD (a shell string) at exit, in reverse order of registration.
on_exit() {
    CLEANUPS+=("$1")
}

run_cleanups() {
    local i
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUPS[i]}" >/dev/null 2>&1 || true
    done
    CLEANUPS=()
    # Whatever of the suite outlived its daemon (containerd's shims do, by design, when a
    # suite is interrupted): every process naming the temp dir, by pid.
    local pid
    for pid in $(pgrep -f -- "$W/"); do
        kill -KILL "$pid" 2>/dev/null
    done
    unmount_under "$W"
}

remove_workdir() {
    if [ "${CLIENT_KEEP:-}" = 1 ] || [ "${CLIENT_TRACE:-}" = 1 ]; then
        echo "$SUITE: kept $W"
    else
        rm -rf "$W"
    fi
}
trap 'rc=$?; run_cleanups; remove_workdir; exit $rc' EXIT
trap 'exit 130' INT TERM

# unmount_under DIR: lazily unmount every mount point under DIR, deepest first.
unmount_under() {
    awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null; done
}

# stop_pidfile FILE NAME: TERM the daemon whose pid is in FILE, KILL it after 20 s.
stop_pidfile() {
    local pid i
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "$SUITE: $2 ($pid) did not stop on TERM, killing it" >&2
    kill -KILL "$pid" 2>/dev/null
}

# wait_processes_gone: wait up to 10 s for the processes of the suite (any process with $W in
# its command line: daemons, shims, conmon, podman's cleanup processes) to exit.
wait_processes_gone() {
    local i
    for i in $(seq 100); do
        pgrep -f -- "$W/" >/dev/null || return 0
        sleep 0.1
    done
}

# --- the host: what daemons change, saved first and restored at exit ------------------------

# host_save: remember net.ipv4.ip_forward, the FORWARD policy and every iptables/ip6tables
# rule and chain, and restore them at exit: the rules and chains a daemon added are deleted,
# the others are left alone.
host_save() {
    local t
    HOST_IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)
    mkdir -p "$W/host"
    for ipt in iptables ip6tables; do
        command -v $ipt >/dev/null || continue
        for t in filter nat mangle raw; do
            $ipt -w -t $t -S >"$W/host/$ipt-$t" 2>/dev/null
        done
    done
    on_exit host_restore
}

host_restore() {
    local ipt t line chain
    for ipt in iptables ip6tables; do
        command -v $ipt >/dev/null || continue
        for t in filter nat mangle raw; do
            [ -f "$W/host/$ipt-$t" ] || continue
            # Rules first (their chains may be in use), then chains, then policies.
            $ipt -w -t $t -S 2>/dev/null | grep '^-A ' | grep -vxF -f "$W/host/$ipt-$t" |
                while read -r line; do eval "$ipt -w -t $t -D ${line#-A }"; done
            $ipt -w -t $t -S 2>/dev/null | grep '^-N ' | grep -vxF -f "$W/host/$ipt-$t" |
                while read -r _ chain; do $ipt -w -t $t -F "$chain"; $ipt -w -t $t -X "$chain"; done
            grep '^-P ' "$W/host/$ipt-$t" | while read -r _ chain policy; do
                $ipt -w -t $t -P "$chain" "$policy"
            done
        done
    done
    echo "$HOST_IP_FORWARD" >/proc/sys/net/ipv4/ip_forward
}

# host_changes: what differs from the saved host state (empty when restored); for the last
# check of a suite, after the daemon stopped and host_restore ran.
host_changes() {
    local ipt t
    [ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$HOST_IP_FORWARD" ] ||
        echo "net.ipv4.ip_forward is $(cat /proc/sys/net/ipv4/ip_forward), was $HOST_IP_FORWARD"
    for ipt in iptables ip6tables; do
        for t in filter nat mangle raw; do
            [ -f "$W/host/$ipt-$t" ] || continue
            $ipt -w -t $t -S 2>/dev/null | diff "$W/host/$ipt-$t" - | grep '^[<>]' | sed "s/^/$ipt -t $t: /"
        done
    done
}

# own_host_paths PATH...: the daemons create these fixed paths whatever their flags say; those
# that do not exist yet are removed at exit, and `finish` checks that they are gone.
OWN_HOST_PATHS=()
own_host_paths() {
    local p
    for p in "$@"; do
        [ -e "$p" ] || OWN_HOST_PATHS+=("$p")
    done
    on_exit 'rm -rf "${OWN_HOST_PATHS[@]}"'
}

own_host_paths_left() {
    local p
    for p in "${OWN_HOST_PATHS[@]}"; do [ ! -e "$p" ] || echo "$p left"; done
}

# own_cgroups NAME...: cgroups (relative to each hierarchy's root) that the client makes as
# parents of the suite's containers; those that do not exist yet are removed at exit (when
# empty), and `finish` checks that they are gone.
OWN_CGROUPS=()
own_cgroups() {
    local c
    for c in "$@"; do
        compgen -G "/sys/fs/cgroup/*/$c" >/dev/null || [ -d "/sys/fs/cgroup/$c" ] || OWN_CGROUPS+=("$c")
    done
    on_exit remove_own_cgroups
}

remove_own_cgroups() {
    local c d pids i
    for c in "${OWN_CGROUPS[@]}"; do
        # What a client failed to remove (an interrupted suite): thaw, kill, wait for the exit.
        for i in $(seq 50); do
            pids=$(cat /sys/fs/cgroup/*/"$c"/{,*/,*/*/}cgroup.procs 2>/dev/null | sort -u)
            [ -n "$pids" ] || break
            for d in /sys/fs/cgroup/freezer/"$c"/{,*/,*/*/}freezer.state; do
                [ -f "$d" ] && echo THAWED >"$d"
            done
            kill -KILL $pids
            sleep 0.1
        done
        for d in /sys/fs/cgroup/*/"$c" /sys/fs/cgroup/"$c"; do
            [ -d "$d" ] || continue
            # Children first: rmdir only removes empty cgroups.
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
}

own_cgroups_left() {
    local c d
    for c in "${OWN_CGROUPS[@]}"; do
        for d in /sys/fs/cgroup/*/"$c" /sys/fs/cgroup/"$c"; do [ ! -d "$d" ] || echo "$d left"; done
    done
}

# delete_link NAME: remove a network interface the suite made (a bridge), if present.
delete_link() {
    ip link show "$1" >/dev/null 2>&1 && ip link delete "$1"
    return 0
}

# --- the runtime, as the clients see it ----------------------------------------------------

# client_runtime: the path to give the client. With CLIENT_TRACE=1 a wrapper of the same base
# name (Podman picks flags by the runtime's name) that logs every call, then execs the runtime.
client_runtime() {
    [ "${CLIENT_TRACE:-}" = 1 ] || { echo "$RUNTIME"; return; }
    local wrapper
    wrapper="$W/trace/$(basename "$RUNTIME")"
    mkdir -p "$W/trace"
    cat >"$wrapper" <<EOF
#!/bin/bash
{
    echo "== \$(date +%T.%N) pid \$\$ cwd \$PWD"
    printf ' %q' "\$0" "\$@"; echo
    ls -l /proc/\$\$/fd | awk 'NR > 1 { print "  fd", \$9, \$10, \$11 }'
} >>"$W/runtime-calls.log" 2>&1
exec "$RUNTIME" "\$@"
EOF
    chmod 755 "$wrapper"
    echo "$wrapper"
}

# --- the busybox image, made locally --------------------------------------------------------

# make_image: $W/image/busybox-rootfs.tar (the rootfs as one layer, for `import`) and
# $W/image/busybox-archive.tar (`docker save` format with the tag $IMAGE_REF, for `load`).
IMAGE_REF=docker.io/library/busybox:berth-clients
make_image() {
    local d=$W/image layer_sha config_sha created
    mkdir -p "$d/archive"
    tar -C "$ROOTFS" --numeric-owner --sort=name -cf "$d/busybox-rootfs.tar" . || return 1
    layer_sha=$(sha256sum "$d/busybox-rootfs.tar" | cut -d' ' -f1)
    mkdir -p "$d/archive/$layer_sha"
    cp "$d/busybox-rootfs.tar" "$d/archive/$layer_sha/layer.tar"
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    cat >"$d/config.json" <<EOF
{"architecture":"amd64","os":"linux","created":"$created",
 "config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},
 "rootfs":{"type":"layers","diff_ids":["sha256:$layer_sha"]},
 "history":[{"created":"$created","created_by":"berth client tests: bundles/busybox/rootfs"}]}
EOF
    config_sha=$(sha256sum "$d/config.json" | cut -d' ' -f1)
    cp "$d/config.json" "$d/archive/$config_sha.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
        "$config_sha" "$IMAGE_REF" "$layer_sha" >"$d/archive/manifest.json"
    tar -C "$d/archive" -cf "$d/busybox-archive.tar" . || return 1
    rm -rf "$d/archive"
}

# bench_dockerd: a private dockerd for the benchmarks (scripts/bench-*.sh): no bridge and no
# iptables rules, cgroupfs under /berth-bench-docker, nofile 1024; its data root, exec root,
# socket and the client's config dir (podman reads DOCKER_CONFIG too, for registry auth) in $W.
# Exports DOCKER_HOST (docker-compose reads it) and sets DOCKER to the client; at exit its
# containers are removed and it is stopped.
bench_dockerd() {
    own_host_paths /run/containerd /run/docker /etc/docker/key.json
    own_cgroups berth-bench-docker
    export DOCKER_CONFIG=$W/client
    mkdir -p "$DOCKER_CONFIG" && echo '{}' >"$DOCKER_CONFIG/config.json"
    cat >"$W/daemon.json" <<EOF
{"bridge": "none", "iptables": false, "ip6tables": false, "ip-forward": false, "ip-masq": false,
 "exec-opts": ["native.cgroupdriver=cgroupfs"], "cgroup-parent": "/berth-bench-docker",
 "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 1024}}}
EOF
    export DOCKER_HOST=unix://$W/docker.sock
    DOCKER=("$DOCKER_CLI" -H "$DOCKER_HOST")
    dockerd --config-file "$W/daemon.json" --data-root "$W/docker" --exec-root "$W/exec" \
        --pidfile "$W/dockerd.pid" -H "$DOCKER_HOST" >"$W/dockerd.log" 2>&1 &
    on_exit 'ids=$("${DOCKER[@]}" ps -aq); [ -z "$ids" ] || "${DOCKER[@]}" rm -f $ids; stop_pidfile "$W/dockerd.pid" dockerd'
    wait_for 60 "${DOCKER[@]}" version >/dev/null || die "dockerd did not start: $(tail -n 5 "$W/dockerd.log")"
}

# free_port: a TCP port nobody listens on, for the `-p` checks.
free_port() {
    local p
    for p in $(shuf -i 20000-40000 -n 50); do
        ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
    return 1
}

# fetch URL WANT: curl URL until its body contains WANT (the proxy may need a moment).
fetch() {
    local i body
    for i in $(seq 50); do
        body=$(curl -fsS --max-time 3 "$1" 2>&1) && case $body in *"$2"*) return 0 ;; esac
        sleep 0.2
    done
    echo "curl $1: $body"
    return 1
}

# Every suite: the host as it was, restored last at exit.
host_save

# The benchmarks' figures. median FILE-GLOB NAME [DECIMALS]: the median, in ms, of NAME's times
# over every hyperfine JSON export the glob matches (all rounds of a benchmark).
median() {
    python3 -c "
import glob, json, statistics, sys
t = [x for f in glob.glob(sys.argv[1]) for r in json.load(open(f))['results'] if r['command'] == sys.argv[2] for x in r['times']]
print(f'{statistics.median(t) * 1000:.{int(sys.argv[3])}f}')" "$1" "$2" "${3:-1}"
}
# ratio A B: A / B to two decimals, '-' when B is 0.
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else '-')" "$1" "$2"; }
