#!/usr/bin/env bash
# Build benchmark: `berth build` against `buildah bud` (Debian's buildah, overlay storage,
# --layers, --network host, runc: crun refuses hybrid cgroup hosts) on the same contexts, side by side with hyperfine: a cold build
# (berth's RUNs on its default bridge, as Docker's; also with --network host, as buildah here)
# (--no-cache: every RUN runs, every layer is made) and a fully cached rebuild. Contexts: the
# static site (COPY of 300 files into busybox, httpd as CMD) and a small app (three RUNs, a
# WORKDIR, ENV/LABEL/EXPOSE). Goals (issue 15): cached rebuild at most 0.2x buildah's time,
# cold build at most 0.8x. Everything lives in a temp dir removed at the end. Ratios only:
# nothing here asserts a time. Prints a table and writes it to bench/results/build-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
runs=${BENCH_BUILD_RUNS:-10}
say() { printf '== %s\n' "$*"; }
for tool in hyperfine buildah runc python3; do
    command -v "$tool" >/dev/null || { echo "bench-build: $tool is missing (see .ci/run)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench-build: run as root" >&2; exit 1; }
say "building berth (release)"
make --no-print-directory build >/dev/null
[ -x bundles/busybox/rootfs/bin/busybox ] || scripts/mkrootfs.sh bundles/busybox/rootfs >/dev/null

W=$(mktemp -d /tmp/berth-bench-build.XXXXXX)
BERTH=("$top/target/release/berth" --data-root "$W/berth-data" --root "$W/berth-run")
BUILDAH=(buildah --root "$W/buildah" --runroot "$W/buildah-run" --storage-driver overlay)
# berth's RUNs on its default network, on a bridge of this run's own: removed at the end, and
# its rules with it (berth's next network command sweeps the rules of a bridge that is gone).
BBRIDGE=berthbuild0
mkdir -p "$W/berth-data"
echo "{\"bridge\": \"$BBRIDGE\"}" >"$W/berth-data/network-config.json"
cleanup() {
    ip link del "$BBRIDGE" 2>/dev/null || true
    "${BERTH[@]}" network ls >/dev/null 2>&1 || true
    "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
    "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true
    # (No mount left is no error: the directory must still go.)
    { grep -o " $W[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT

say "the busybox image, in both stores"
tar -C bundles/busybox/rootfs -cf "$W/busybox-rootfs.tar" .
"${BERTH[@]}" import -c 'CMD ["sh"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$W/busybox-rootfs.tar" bench/busybox:latest >/dev/null
"${BERTH[@]}" save -o "$W/busybox.tar" bench/busybox:latest
"${BUILDAH[@]}" pull -q "docker-archive:$W/busybox.tar" >/dev/null

say "contexts"
mkdir -p "$W/site/www/pages" "$W/app"
for i in $(seq 300); do printf '<p>page %d</p>\n' "$i" >"$W/site/www/pages/$i.html"; done
printf '<h1>bench</h1>\n' >"$W/site/www/index.html"
cat >"$W/site/Dockerfile" <<'EOF2'
FROM bench/busybox
COPY www/ /www/
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
EOF2
printf 'echo app\n' >"$W/app/app.sh"
cat >"$W/app/Dockerfile" <<'EOF2'
FROM bench/busybox
ENV APP_HOME=/srv/app
LABEL org.example.bench=yes
WORKDIR /srv/app
RUN echo 'app:x:1000:1000::/srv/app:/bin/sh' >> /etc/passwd && mkdir -p /srv/app/data && chown app /srv/app/data
COPY app.sh ./
RUN for i in $(seq 200); do echo "line $i" >> /srv/app/data/log; done
RUN chmod +x app.sh && mkdir -p /usr/local/bin && ln -s /srv/app/app.sh /usr/local/bin/app
USER app
EXPOSE 9000
CMD ["app"]
EOF2

declare -A cold cached
median() { # JSON NAME: median in ms
    python3 -c "
import json, statistics, sys
t = [x for r in json.load(open(sys.argv[1]))['results'] if r['command'] == sys.argv[2] for x in r['times']]
print(f'{statistics.median(t) * 1000:.0f}')" "$1" "$2"
}
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else '-')" "$1" "$2"; }

for ctx in site app; do
    say "$ctx: a first build by each (checked), then hyperfine, $runs runs each"
    "${BERTH[@]}" build -q -t "bench/$ctx:berth" "$W/$ctx" >/dev/null
    "${BUILDAH[@]}" bud -q --runtime runc --layers --network host -t "bench/$ctx:buildah" "$W/$ctx" >/dev/null
    hyperfine -N --warmup 1 --runs "$runs" --export-json "$W/cold-$ctx.json" \
        -n berth "${BERTH[*]} build -q --no-cache -t bench/$ctx:berth $W/$ctx" \
        -n berth-host "${BERTH[*]} build -q --no-cache --network host -t bench/$ctx:berth $W/$ctx" \
        -n buildah "${BUILDAH[*]} bud -q --runtime runc --no-cache --layers --network host -t bench/$ctx:buildah $W/$ctx" >/dev/null
    hyperfine -N --warmup 1 --runs "$runs" --export-json "$W/cached-$ctx.json" \
        -n berth "${BERTH[*]} build -q -t bench/$ctx:berth $W/$ctx" \
        -n buildah "${BUILDAH[*]} bud -q --runtime runc --layers --network host -t bench/$ctx:buildah $W/$ctx" >/dev/null
done

out=$W/table.md
{
    echo "| context | build | berth (ms) | buildah (ms) | berth / buildah | goal | berth --network host (ms) |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for ctx in site app; do
        for kind in cold cached; do
            b=$(median "$W/$kind-$ctx.json" berth)
            h=$(median "$W/$kind-$ctx.json" buildah)
            bh=$([ $kind = cold ] && median "$W/$kind-$ctx.json" berth-host || echo -)
            goal=$([ $kind = cold ] && echo "<= 0.8" || echo "<= 0.2")
            printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$ctx" "$kind" "$b" "$h" "$(ratio "$b" "$h")" "$goal" "$bh"
        done
    done
} >"$out"
cat "$out"
mkdir -p "$top/bench/results"
dest=$top/bench/results/build-$(date -u +%Y-%m-%d).md
{
    echo "# berth build benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores"
    echo
    echo "buildah $(buildah --version | awk '{print $3}') (overlay storage, --layers, --network host);"
    echo "berth: RUN on its default bridge (berth0), and with --network host in the last column;"
    echo "medians of $runs runs; cold: --no-cache; cached: the same build again."
    echo
    cat "$out"
} >"$dest"
say "written to ${dest#"$top"/}"
