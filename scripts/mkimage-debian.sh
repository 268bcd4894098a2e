#!/usr/bin/env bash
# The Debian test image: a bookworm minbase userland made with debootstrap from Debian's
# archive, with nginx (nginx-light) as its server and a few apt-installed tools (procps,
# iproute2, curl), written as a docker-archive that `berth load` and `docker load` both read.
#
#   scripts/mkimage-debian.sh OUT.tar
#
# Two layers, as a Dockerfile would make them: the debootstrap root (apt's caches, the
# documentation and the device nodes removed), then the image's own changes: nginx's logs as
# symlinks to /dev/stdout and /dev/stderr (as nginx's official image has them, so that `logs`
# shows the requests), an index.html, and a whiteout deleting Debian's default page. The config
# is that of nginx's official image: Cmd nginx -g 'daemon off;', ExposedPorts 80/tcp,
# StopSignal SIGQUIT; plus VOLUME /var/www/html (filled from the image on first use).
#
# debootstrap runs once per version of this script: the archive is kept in the cache
# (BERTH_TEST_CACHE, default /var/cache/berth-tests) under the script's hash, and the packages
# debootstrap fetched in its debs/ folder. Concurrent callers wait on a lock. The mirror is the
# host's apt source for Debian (DEBIAN_MIRROR overrides it).
set -euo pipefail

usage() { echo "usage: $0 OUT.tar" >&2; exit 2; }
[ $# -eq 1 ] || usage
out=$1
script=$(readlink -f "$0")
cache_dir=${BERTH_TEST_CACHE:-/var/cache/berth-tests}
key=$(sha256sum "$script" | cut -c1-16)
name=debian-nginx
cached=$cache_dir/$name-$key.tar
tag=berth-tests/debian-nginx:bookworm
suite=bookworm
packages=nginx-light,procps,iproute2,curl

say() { echo "mkimage-debian: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "debootstrap needs root"

# The host's Debian mirror: the first apt source whose URI ends in /debian.
host_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }
             /^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' "$f"
    done | grep -E '/debian/?$' | head -n 1
}

# debootstrap mounts /proc and /sys in the target, and may leave them mounted when it fails.
work=
remove_work() {
    [ -n "$work" ] || return 0
    awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf "$work" "$cached.part"
}

elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

build() {
    local mirror root layer2 t0 t l1 l2 cfg created
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    mirror=${DEBIAN_MIRROR:-$(host_mirror)}
    [ -n "$mirror" ] || die "no Debian mirror among the apt sources: set DEBIAN_MIRROR"
    work=$(mktemp -d /var/tmp/berth-mkimage-debian.XXXXXX)
    trap remove_work EXIT
    root=$work/rootfs
    mkdir -p "$cache_dir/debs"

    t0=$(date +%s)
    say "debootstrap --variant=minbase --include=$packages $suite from $mirror (log: $work/debootstrap.log)"
    if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$cache_dir/debs" \
        "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 20 "$work/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    say "debootstrap took $(elapsed "$t0")"

    # What an image has no use for: package caches and lists, documentation, device nodes
    # (the runtime makes /dev), the host's resolver and name (the engine writes its own).
    if grep -qF " $root/" /proc/self/mountinfo; then die "something is still mounted in $root"; fi
    rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/var/log/*.log "$root"/var/log/apt/*
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
    find "$root/dev" "$root/proc" "$root/sys" "$root/run" "$root/tmp" -mindepth 1 -delete
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

    # The second layer, written beside the root: each directory it holds takes the owner and
    # mode the first layer gives it, so that it changes nothing but its files.
    layer2=$work/layer2
    mkdir -p "$layer2/var/log/nginx" "$layer2/var/www/html"
    ln -s /dev/stdout "$layer2/var/log/nginx/access.log"
    ln -s /dev/stderr "$layer2/var/log/nginx/error.log"
    echo "berth test image: nginx on Debian $suite" >"$layer2/var/www/html/index.html"
    [ -e "$root/var/www/html/index.nginx-debian.html" ] || die "no default page to delete"
    : >"$layer2/var/www/html/.wh.index.nginx-debian.html"
    for d in var var/log var/log/nginx var/www var/www/html; do
        chown --reference="$root/$d" "$layer2/$d"
        chmod --reference="$root/$d" "$layer2/$d"
    done

    say "writing the archive"
    t=$(date +%s)
    mkdir "$work/archive"
    tar -C "$root" --numeric-owner --sort=name -cf "$work/layer1.tar" .
    tar -C "$layer2" --numeric-owner --sort=name -cf "$work/layer2.tar" .
    l1=$(sha256sum "$work/layer1.tar" | cut -d' ' -f1)
    l2=$(sha256sum "$work/layer2.tar" | cut -d' ' -f1)
    mkdir "$work/archive/$l1" "$work/archive/$l2"
    mv "$work/layer1.tar" "$work/archive/$l1/layer.tar"
    mv "$work/layer2.tar" "$work/archive/$l2/layer.tar"
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","created":"$created",
 "config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
  "Cmd":["nginx","-g","daemon off;"],"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT",
  "Volumes":{"/var/www/html":{}},
  "Labels":{"org.opencontainers.image.title":"berth test image: nginx on Debian $suite"}},
 "rootfs":{"type":"layers","diff_ids":["sha256:$l1","sha256:$l2"]},
 "history":[
  {"created":"$created","created_by":"debootstrap --variant=minbase --include=$packages $suite"},
  {"created":"$created","created_by":"nginx logs to stdout and stderr; index.html"}]}
EOF
    cfg=$(sha256sum "$work/config.json" | cut -d' ' -f1)
    mv "$work/config.json" "$work/archive/$cfg.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar","%s/layer.tar"]}]\n' \
        "$cfg" "$tag" "$l1" "$l2" >"$work/archive/manifest.json"
    tar -C "$work/archive" --sort=name -cf "$work/image.tar" .
    mv "$work/image.tar" "$cached.part"
    mv "$cached.part" "$cached"
    say "archive written in $(elapsed "$t"): $cached ($(du -h "$cached" | cut -f1))"

    # Archives of earlier versions of this script.
    find "$cache_dir" -maxdepth 1 -name "$name-*.tar" ! -path "$cached" -print -delete | sed 's/^/mkimage-debian: removed /' >&2
}

mkdir -p "$cache_dir"
exec 9>"$cache_dir/$name.lock"
flock 9
if [ -s "$cached" ]; then
    say "cached: $cached"
else
    say "not cached ($cached): building it"
    build
fi
# A hard link where the cache and OUT share a filesystem (no copy of ~100 MB), else a copy.
rm -f "$out"
ln "$cached" "$out" 2>/dev/null || cp "$cached" "$out"
say "wrote $out ($tag)"
