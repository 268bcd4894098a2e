#!/bin/sh
# Build a minimal busybox root filesystem for berth's example bundles and tests.
#
#   scripts/mkrootfs.sh DIR
#
# DIR gets bin/busybox (from Debian's busybox-static), one symlink per applet
# at the path busybox itself names (bin/, sbin/, usr/bin/, usr/sbin/),
# /etc/passwd and /etc/group (root, nobody, and a user "berth" uid 1000), and
# empty mount-point directories. Running it again on the same DIR is harmless.
set -eu

log() { printf 'mkrootfs: %s\n' "$*"; }
die() { printf 'mkrootfs: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DIR"
dir=$1
BUSYBOX=${BUSYBOX:-/bin/busybox}

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install Debian's busybox-static (apt-get install -y busybox-static)"
# A dynamically linked busybox would need the host's libc inside the rootfs.
if command -v file >/dev/null 2>&1; then
    case "$(file -L "$BUSYBOX")" in
        *"dynamically linked"*) die "$BUSYBOX is dynamically linked: install busybox-static, not busybox" ;;
    esac
elif [ -e /lib64/ld-linux-x86-64.so.2 ] && grep -q 'ld-linux' "$BUSYBOX" 2>/dev/null; then
    die "$BUSYBOX looks dynamically linked: install busybox-static, not busybox"
fi

log "building busybox rootfs in $dir from $BUSYBOX"
for d in bin sbin usr/bin usr/sbin etc proc sys dev tmp run var mnt root home/berth; do
    mkdir -p "$dir/$d"
done
chmod 1777 "$dir/tmp"
chmod 0700 "$dir/root"

log "installing $BUSYBOX as $dir/bin/busybox"
cp -f "$BUSYBOX" "$dir/bin/busybox.new"
chmod 0755 "$dir/bin/busybox.new"
mv -f "$dir/bin/busybox.new" "$dir/bin/busybox"

n=0
for applet in $("$dir/bin/busybox" --list-full); do
    case "$applet" in
        */*) ;;            # bin/sh, usr/bin/awk, ...
        *) continue ;;     # "linuxrc": no directory, not wanted
    esac
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$dir/$(dirname "$applet")"
    ln -sfn /bin/busybox "$dir/$applet"
    n=$((n + 1))
done
log "linked $n applets to /bin/busybox"

log "writing $dir/etc/passwd and $dir/etc/group"
cat > "$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
berth:x:1000:1000:berth:/home/berth:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$dir/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
berth:x:1000:
nogroup:x:65534:
GROUP
chown 1000:1000 "$dir/home/berth" 2>/dev/null || true
log "done: $dir"
