#!/usr/bin/env bash
# Cross-compile smshub for a Raspberry Pi WITHOUT Docker, using Debian's cross toolchains (.cargo/config.toml
# names the linkers and qemu runners).
#
#   cross/build.sh aarch64-unknown-linux-gnu        # 64-bit Raspberry Pi OS  -> target/aarch64-unknown-linux-gnu/release/smshub
#   cross/build.sh armv7-unknown-linux-gnueabihf    # 32-bit Raspberry Pi OS  -> target/armv7-unknown-linux-gnueabihf/release/smshub
#   cross/build.sh aarch64-unknown-linux-gnu --deb  # also package it: target/debian/smshub_<ver>-1_arm64.deb
#
# Run as root, it installs missing Debian packages with apt-get; otherwise it prints the apt-get line to run.
# It adds the Rust target with rustup if missing. Tested on Debian 12 (bookworm) x86_64.
set -euo pipefail

usage() { echo "usage: $0 aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf [--deb]" >&2; exit 2; }
[ $# -ge 1 ] || usage
target=$1
want_deb=no
[ "${2:-}" = "--deb" ] && want_deb=yes

case "$target" in
    aarch64-unknown-linux-gnu)
        pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static"
        cc=aarch64-linux-gnu-gcc ;;
    armv7-unknown-linux-gnueabihf)
        pkgs="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static"
        cc=arm-linux-gnueabihf-gcc ;;
    *) usage ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

missing=()
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing: ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    else
        echo "missing Debian packages: ${missing[*]}" >&2
        echo "run: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
command -v "$cc" >/dev/null || { echo "$cc not found after installing packages" >&2; exit 1; }

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

start=$(date +%s)
cargo build --release --target "$target"
end=$(date +%s)
bin="target/$target/release/smshub"
echo "built $bin in $((end - start)) s, $(stat -c %s "$bin") bytes (stripped by the release profile)"

if [ "$want_deb" = yes ]; then
    command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
    # --no-build: use the binary just built; --no-strip: the release profile already stripped it (cargo-deb's
    # own strip would need the target's objcopy/strip configured).
    cargo deb --target "$target" --no-build --no-strip
fi
