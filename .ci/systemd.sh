#!/usr/bin/env bash
# Checks the systemd integration files in systemd/:
#   1. `systemd-analyze security --offline=true` exposure must be <= MAX_EXPOSURE (1.5: the score the unit has
#      kept since wave 1, and the bound of the "safe on the internet" issue);
#   2. `systemd-analyze verify` must be clean, run on a copy of the unit whose ExecStart points at a freshly
#      built binary (the installed path /usr/bin/smshub does not exist on a CI host);
#   3. the sysusers.d and tmpfiles.d snippets are applied to a throwaway root and their effect is checked;
#   4. the udev rules in hardware/ are parsed by udevadm (syntax only: there is no modem to match against).
#      udevadm 252 has no `verify` and reads rules only from the system directories, so the file is placed
#      in /run/udev/rules.d for the duration of the check (root only; skipped with a message otherwise).
#      Without an installed udev, udevadm is taken from the udev .deb (apt-get download, not installed).
# Usage: .ci/systemd.sh   (from anywhere; needs systemd >= 252 tools and cargo)
set -euo pipefail

MAX_EXPOSURE=${MAX_EXPOSURE:-1.5}
root=$(cd "$(dirname "$0")/.." && pwd)
unit="$root/systemd/smshub.service"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! command -v systemd-analyze >/dev/null; then
    echo "systemd checks FAILED: systemd-analyze not found (apt-get install systemd)" >&2
    exit 1
fi

echo "== systemd-analyze security --offline=true systemd/smshub.service"
security_out=$(systemd-analyze security --offline=true "$unit" 2>&1) || true
# The line looks like: "→ Overall exposure level for smshub.service: 1.5 OK 🙂"
score=$(printf '%s\n' "$security_out" | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9.]*\).*/\1/p' | tail -n 1)
printf '%s\n' "$security_out" | grep -E '^✗|Overall exposure' || true
if [ -z "$score" ]; then
    printf '%s\n' "$security_out" >&2
    echo "systemd checks FAILED: no 'Overall exposure level' line in the output above" >&2
    exit 1
fi
if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
    echo "systemd checks FAILED: exposure $score > $MAX_EXPOSURE" >&2
    exit 1
fi
echo "exposure $score <= $MAX_EXPOSURE: OK"

echo "== systemd-analyze verify (ExecStart rewritten to the built binary)"
bin=""
for candidate in "${SMSHUB_BIN:-}" "$root/target/debug/smshub" "$root/target/release/smshub"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then bin=$candidate; break; fi
done
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --bin smshub)
    bin="$root/target/debug/smshub"
fi
mkdir -p "$work/unit"
sed "s|^ExecStart=/usr/bin/smshub |ExecStart=$bin |" "$unit" > "$work/unit/smshub.service"
grep -q "^ExecStart=$bin " "$work/unit/smshub.service" || {
    echo "systemd checks FAILED: could not rewrite ExecStart (does it still start with /usr/bin/smshub ?)" >&2
    exit 1
}
verify_out=$(cd "$work/unit" && systemd-analyze verify ./smshub.service 2>&1) && verify_rc=0 || verify_rc=$?
if [ "$verify_rc" -ne 0 ] || [ -n "$verify_out" ]; then
    printf '%s\n' "$verify_out" >&2
    echo "systemd checks FAILED: systemd-analyze verify exited $verify_rc with the output above" >&2
    exit 1
fi
echo "verify: clean (binary $bin)"

echo "== sysusers.d and tmpfiles.d snippets in a throwaway root"
fake="$work/root"
mkdir -p "$fake/etc" "$fake/usr/lib/sysusers.d" "$fake/usr/lib/tmpfiles.d"
# A minimal base system: root and the dialout group, as on Debian/Raspberry Pi OS.
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$fake/etc/passwd"
printf 'root:x:0:\ndialout:x:20:\n' > "$fake/etc/group"
: > "$fake/etc/shadow"; : > "$fake/etc/gshadow"
cp "$root/systemd/smshub.sysusers" "$fake/usr/lib/sysusers.d/smshub.conf"
cp "$root/systemd/smshub.tmpfiles" "$fake/usr/lib/tmpfiles.d/smshub.conf"
systemd-sysusers --root="$fake" smshub.conf
grep -q '^smshub:x:[0-9]*:[0-9]*:.*:/usr/sbin/nologin$' "$fake/etc/passwd" || { echo "FAILED: user smshub not created" >&2; exit 1; }
grep -q '^smshub:x:' "$fake/etc/group" || { echo "FAILED: group smshub not created" >&2; exit 1; }
grep -Eq '^dialout:x:20:(.*,)?smshub(,|$)' "$fake/etc/group" || { echo "FAILED: smshub is not in dialout" >&2; exit 1; }
systemd-tmpfiles --root="$fake" --create smshub.conf
mode=$(stat -c '%a' "$fake/var/lib/smshub")
[ "$mode" = 750 ] || { echo "FAILED: /var/lib/smshub has mode $mode, expected 750" >&2; exit 1; }
echo "sysusers: user smshub, group smshub, member of dialout; tmpfiles: /var/lib/smshub 0750"

echo "== udev rules syntax (hardware/99-smshub-modem.rules)"
udev_result="udev rules not checked"
udevadm_bin=$(command -v udevadm || true)
if [ -z "$udevadm_bin" ] && (cd "$work" && apt-get download udev >/dev/null 2>&1); then
    dpkg -x "$work"/udev_*.deb "$work/udev"
    udevadm_bin="$work/udev/bin/udevadm"
fi
if [ -z "$udevadm_bin" ] || [ ! -x "$udevadm_bin" ]; then
    echo "udev rules check skipped: no udevadm and apt-get download udev failed"
elif [ "$(id -u)" != 0 ]; then
    echo "udev rules check skipped: needs root to place the file in /run/udev/rules.d"
else
    rules_tmp=/run/udev/rules.d/99-smshub-modem-ci-check.rules
    mkdir -p /run/udev/rules.d
    cp "$root/hardware/99-smshub-modem.rules" "$rules_tmp"
    # Any tty works: the point is that udevadm reads and parses every rules file.
    udev_out=$("$udevadm_bin" test --action=add /sys/class/tty/ptmx 2>&1 || true)
    rm -f "$rules_tmp"
    if ! printf '%s\n' "$udev_out" | grep -q "Reading rules file: $rules_tmp"; then
        printf '%s\n' "$udev_out" | tail -n 20 >&2
        echo "systemd checks FAILED: udevadm did not read the rules file" >&2
        exit 1
    fi
    if printf '%s\n' "$udev_out" | grep "$rules_tmp:" >&2; then
        echo "systemd checks FAILED: udevadm reports problems in hardware/99-smshub-modem.rules (above)" >&2
        exit 1
    fi
    udev_result="udev rules parse cleanly"
    echo "$udev_result"
fi

echo "systemd checks passed: exposure $score, verify clean, $udev_result"
