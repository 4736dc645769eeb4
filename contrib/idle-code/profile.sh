#!/bin/sh
# Measures which functions the daemon runs at rest and writes link/idle-code.ld again
# (ARCHITECTURE.md "Memory at rest"). Run it from the repository after a change to the loops that
# run at rest (sweeps, polls, health checks, timers); a stale script still links, it only packs less.
# Needs valgrind (Debian: apt-get install valgrind) and about five minutes.
set -eu
for tool in valgrind callgrind_control python3; do
    command -v "$tool" >/dev/null || { echo "profile.sh needs $tool (Debian: apt-get install valgrind python3)" >&2; exit 1; }
done
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Symbols are needed to name the functions; the layout is otherwise that of the release build.
CARGO_PROFILE_RELEASE_STRIP=false cargo build --release
cp "$target/release/smshub" "$work/smshub"
SMSHUB_BENCH_WRAPPER="valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
--callgrind-out-file=$work/callgrind.out" \
    "$work/smshub" bench idle --seconds 150 &
bench=$!
# `bench idle` warms the daemon up for 105 s (start-up, the first pass of every loop, the first
# give-back of start-up memory); the profile is what runs after that.
sleep 110
callgrind_control --dump=start-up >/dev/null
sleep 135
callgrind_control --dump=rest >/dev/null
wait "$bench"
python3 contrib/idle-code/order.py "$work/callgrind.out.2" "$work/smshub" >link/idle-code.ld
echo "wrote link/idle-code.ld: $(grep -o "[0-9]* functions" link/idle-code.ld)"
