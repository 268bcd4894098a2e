# The check helpers of the VM tests' scripts (scripts/vm-tests/ and scripts/vm-tests-systemd/),
# sourced from /vm/checks.sh, where scripts/vm-test.sh and scripts/vm-systemd-test.sh put this
# file. Each check prints `ok NAME` or `FAIL NAME: details`, and `skip NAME: reason` for what
# cannot run; SYSTEMCTL is the systemctl command the unit checks ask (the user instance's for
# a user's units).

passed=0
failed=0
skipped=0
SYSTEMCTL=${SYSTEMCTL:-systemctl}
# check NAME CMD [ARGS...]: run CMD; `ok NAME` if it exits 0, else `FAIL NAME: its output`.
check() {
    _name=$1
    shift
    if _out=$("$@" 2>&1); then
        passed=$((passed + 1))
        echo "ok $_name"
        return 0
    fi
    failed=$((failed + 1))
    echo "FAIL $_name: $(printf '%s\n' "$_out" | tail -n 8 | awk 'NR > 1 { printf " | " } { printf "%s", $0 }')"
    return 1
}
# skip NAME REASON
skip() {
    skipped=$((skipped + 1))
    echo "skip $1: $2"
}
# want FILE VALUE: FILE holds exactly VALUE.
want() {
    _got=$(cat "$1" 2>&1)
    [ "$_got" = "$2" ] || { echo "$1 is '$_got', want '$2'"; return 1; }
}
# prop UNIT NAME VALUE: systemctl show's NAME=VALUE
prop() {
    _got=$($SYSTEMCTL show "$1" -p "$2" --value 2>&1)
    [ "$_got" = "$3" ] || { echo "$1 $2 is '$_got', want '$3'"; return 1; }
}
# gone UNIT DIR...: systemd lists no UNIT, and no DIR exists.
gone() {
    _unit=$1
    shift
    if $SYSTEMCTL list-units --all --no-legend | grep -F "$_unit"; then
        echo "systemd still lists $_unit"
        return 1
    fi
    for _d in "$@"; do
        [ ! -e "$_d" ] || { echo "$_d is still there"; return 1; }
    done
}
# summary NAME: the script's last line and exit status.
summary() {
    echo "$1: $passed passed, $failed failed"
    [ "$failed" = 0 ]
}
# fails_with TEXT CMD...: CMD fails, and its output contains TEXT.
fails_with() {
    _text=$1
    shift
    if _out=$("$@" 2>&1 </dev/null); then
        echo "succeeded: $_out"
        return 1
    fi
    echo "$_out"
    case $_out in *"$_text"*) ;; *) return 1 ;; esac
}
# quiet LOG CMD...: CMD with its output in LOG (a detached container's stdio must not be a
# pipe), shown if it fails.
quiet() {
    _log=$1
    shift
    "$@" >"$_log" 2>&1 </dev/null || { cat "$_log"; return 1; }
}
# want_nothing CMD...: CMD prints nothing (whatever its exit status).
want_nothing() {
    _out=$("$@" 2>&1)
    [ -z "$_out" ] || { echo "$_out"; return 1; }
}
