#!/usr/bin/env bash
# Starts and stops a local registry (Debian's docker-registry, distribution 2.8) for tests and
# benchmarks: it listens on 127.0.0.1 on a port the kernel picks, keeps its storage in DIR, and
# writes its address to DIR/addr and its pid to DIR/pid.
#
#   scripts/registry.sh start DIR [--tls CERT KEY] [--htpasswd FILE]
#                                 [--token REALM SERVICE ISSUER ROOTCERTBUNDLE]
#   scripts/registry.sh stop DIR      # kills it and removes DIR
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 2 ] || usage
action=$1 dir=$2
shift 2

case "$action" in
start)
    tls="" auth=""
    while [ $# -gt 0 ]; do
        case "$1" in
        --tls) [ $# -ge 3 ] || usage
            tls=$(printf '  tls:\n    certificate: %s\n    key: %s\n' "$2" "$3"); shift 3 ;;
        --htpasswd) [ $# -ge 2 ] || usage
            auth=$(printf 'auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n' "$2"); shift 2 ;;
        --token) [ $# -ge 5 ] || usage
            auth=$(printf 'auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n' \
                "$2" "$3" "$4" "$5"); shift 5 ;;
        *) usage ;;
        esac
    done
    command -v docker-registry >/dev/null || { echo "registry.sh: docker-registry is not installed (apt-get install docker-registry)" >&2; exit 1; }
    mkdir -p "$dir/data"
    cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
  secret: berth-test-secret
$tls
$auth
YAML
    # Its own session, so that it outlives this script and no terminal signal reaches it.
    setsid docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 < /dev/null &
    echo $! > "$dir/pid"
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*msg="listening on \([0-9.:]*\)[,"].*/\1/p' "$dir/registry.log" | head -1)
        if [ -n "$addr" ]; then
            echo "$addr" > "$dir/addr"
            echo "$addr"
            exit 0
        fi
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "registry.sh: the registry did not start; its log:" >&2
    cat "$dir/registry.log" >&2
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    exit 1
    ;;
stop)
    if [ -f "$dir/pid" ]; then
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*) usage ;;
esac
