#!/usr/bin/env bash
# Debian package leg of CI: build the amd64 .deb with cargo-deb, check its contents and maintainer scripts,
# install it into a throwaway root (dpkg --root, scripts run chrootless with DPKG_ROOT), check the install /
# upgrade / remove / purge behaviour, and run lintian.
#
# Tool acquisition problems (cargo-deb cannot be installed, no root for apt-get) print a loud
# "DEB CHECK SKIPPED: <reason>" and exit 0; any problem with the package itself fails (exit 1).
# Measured on 2 cores: cargo install cargo-deb ~61-130 s (once), cargo deb ~70-100 s (release build),
# apt-get install lintian 19.5 s (147 packages), lintian 3 s. Env: DEB_SKIP_LINTIAN=1 skips lintian.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

skip() { echo; echo "=================================================================="; echo "DEB CHECK SKIPPED: $*"; echo "=================================================================="; exit 0; }
fail() { echo "deb check FAILED: $*" >&2; exit 1; }

echo "== cargo deb (amd64)"
if ! command -v cargo-deb >/dev/null; then
    cargo install cargo-deb --locked || skip "cargo install cargo-deb failed (no network?)"
fi
for f in smshub.example.toml README.md; do
    [ -f "$f" ] || fail "$f is missing (it is a package asset)"
done
cargo deb
version=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"name":"smshub","version":"\([^"]*\)".*/\1/p')
deb="target/debian/smshub_${version}-1_amd64.deb"
[ -f "$deb" ] || fail "expected $deb"
echo "built $deb ($(stat -c %s "$deb") bytes)"

echo "== dpkg-deb -c: contents"
dpkg-deb -c "$deb" | tee "$work/contents"
need() {  # need <mode> <path>
    grep -Eq "^$1 +(root/root|0/0) .* \./$2\$" "$work/contents" || fail "missing or wrong mode: $1 $2"
}
need '-rwxr-xr-x' usr/bin/smshub
need '-rw-r--r--' usr/lib/systemd/system/smshub.service
need '-rw-r-----' etc/smshub/smshub.toml
need '-rw-r--r--' usr/share/doc/smshub/smshub.example.toml
need '-rw-r--r--' usr/lib/sysusers.d/smshub.conf
need '-rw-r--r--' usr/lib/tmpfiles.d/smshub.conf
need '-rw-r--r--' usr/lib/udev/rules.d/99-smshub-modem.rules
need '-rw-r--r--' usr/lib/modules-load.d/smshub.conf
need '-rw-r--r--' usr/share/doc/smshub/openapi.json
need '-rw-r--r--' usr/share/doc/smshub/prometheus/smshub.rules.yml
echo "contents: binary, unit, conffile (0640), example, sysusers, tmpfiles, modules-load, udev rules, API document, alert rules present"

echo "== dpkg-deb -I: control, conffiles, scripts"
dpkg-deb -I "$deb"
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/smshub/smshub.toml "$work/control/conffiles" || fail "/etc/smshub/smshub.toml is not a conffile"
for s in postinst prerm postrm; do
    [ -x "$work/control/$s" ] || fail "maintainer script $s missing"
    sh -n "$work/control/$s" || fail "$s: shell syntax error"
done
grep -q 'systemd-sysusers' "$work/control/postinst" || fail "postinst does not create the user"
# Installing must not start or enable the service (enable = false, start = false in Cargo.toml).
# enable = false generates the "debian-installed" template (re-enables only what the admin had enabled);
# enable = true would generate an unconditional first-install enable. start = true would add a start call.
grep -q 'deb-systemd-helper debian-installed smshub.service' "$work/control/postinst" || fail "postinst enables smshub.service on install"
# shellcheck disable=SC2016 # a literal $_dh_action is what the start template contains
if grep -Eq 'deb-systemd-invoke +(start|"?\$_dh_action)' "$work/control/postinst"; then fail "postinst starts smshub.service"; fi
grep -q 'try-restart smshub.service' "$work/control/postinst" || fail "postinst does not restart a running daemon on upgrade"
grep -q 'stop smshub.service' "$work/control/prerm" || fail "prerm does not stop the service on removal"
if command -v shellcheck >/dev/null; then
    shellcheck -s sh debian/postinst debian/postrm || fail "shellcheck"
fi
echo "control: conffile registered, scripts parse, no start/enable on install, try-restart on upgrade"

echo "== install into a throwaway root (dpkg --root, chrootless scripts)"
R="$work/root"
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/etc"
: > "$R/var/lib/dpkg/status"; : > "$R/var/lib/dpkg/available"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\ndialout:x:20:\n' > "$R/etc/group"
: > "$R/etc/shadow"; : > "$R/etc/gshadow"
# --force-depends: the root has no libc6/systemd packages registered; the host's tools run the scripts.
dpkg_r() { dpkg --root="$R" --force-script-chrootless --force-depends "$@" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg $*"; }; }
dpkg_r -i "$deb"
uid=$(awk -F: '$1 == "smshub" { print $3 }' "$R/etc/passwd")
gid=$(awk -F: '$1 == "smshub" { print $3 }' "$R/etc/group")
if [ -z "$uid" ] || [ -z "$gid" ]; then fail "user/group smshub not created"; fi
grep -Eq '^dialout:x:20:(.*,)?smshub(,|$)' "$R/etc/group" || fail "smshub is not in group dialout"
[ "$(stat -c '%a %u:%g' "$R/etc/smshub/smshub.toml")" = "640 0:$gid" ] || fail "conffile is $(stat -c '%a %u:%g' "$R/etc/smshub/smshub.toml"), want 640 root:smshub"
[ "$(stat -c '%a %u:%g' "$R/var/lib/smshub")" = "750 $uid:$gid" ] || fail "/var/lib/smshub is $(stat -c '%a %u:%g' "$R/var/lib/smshub"), want 750 smshub:smshub"
if find "$R/etc/systemd" -name 'smshub.service' 2>/dev/null | grep -q .; then fail "install enabled the service"; fi
echo "install: user smshub ($uid) in dialout, conffile 640 root:smshub, /var/lib/smshub 750, service not enabled"

echo "# edited by the admin" >> "$R/etc/smshub/smshub.toml"
echo "not really sqlite" > "$R/var/lib/smshub/smshub.db"
dpkg_r -i "$deb"
tail -n 1 "$R/etc/smshub/smshub.toml" | grep -q 'edited by the admin' || fail "upgrade lost the edited config"
[ -f "$R/var/lib/smshub/smshub.db" ] || fail "upgrade lost the database"
[ "$(stat -c '%a %g' "$R/etc/smshub/smshub.toml")" = "640 $gid" ] || fail "upgrade changed the conffile permissions"
echo "upgrade (reinstall): config edit and database kept"

dpkg_r -r smshub
[ ! -e "$R/usr/bin/smshub" ] || fail "remove left the binary"
if [ ! -f "$R/etc/smshub/smshub.toml" ] || [ ! -f "$R/var/lib/smshub/smshub.db" ]; then fail "remove deleted config or database"; fi
dpkg_r -P smshub
if [ -e "$R/etc/smshub" ] || [ -e "$R/var/lib/smshub" ]; then fail "purge left /etc/smshub or /var/lib/smshub"; fi
echo "remove: config and database kept; purge: both gone (user smshub kept, by decision)"

if [ "${DEB_SKIP_LINTIAN:-0}" != 1 ]; then
    echo "== lintian"
    if ! command -v lintian >/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q lintian; } >"$work/apt.log" 2>&1 \
                || { tail -n 20 "$work/apt.log"; echo "lintian skipped: apt-get install lintian failed"; }
        else
            echo "lintian skipped: not installed and not root"
        fi
    fi
    if command -v lintian >/dev/null; then
        lintian --tag-display-limit 0 --fail-on error,warning "$deb" 2>&1 | grep -v 'running with root privileges' || true
        lintian --tag-display-limit 0 --fail-on error,warning "$deb" >/dev/null 2>&1 || fail "lintian reported errors or warnings"
        echo "lintian: clean (overrides in debian/smshub.lintian-overrides)"
    fi
fi

echo "deb checks passed: $deb"
