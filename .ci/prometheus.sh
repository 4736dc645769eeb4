#!/usr/bin/env bash
# Checks the shipped Prometheus alert rules (contrib/prometheus/): `promtool check rules` (syntax,
# expressions) and `promtool test rules` (the unit tests: each alert fires when it should and
# not when it should not). promtool comes with Debian's `prometheus` package, installed here when
# missing (CI runs as root).
# Usage: .ci/prometheus.sh   (from anywhere)
set -euo pipefail

dir="$(cd "$(dirname "$0")/.." && pwd)/contrib/prometheus"

if ! command -v promtool >/dev/null; then
    echo "== promtool not found: apt-get install prometheus"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The package starts a Prometheus server; CI needs only the tool.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi

cd "$dir"
echo "== promtool check rules smshub.rules.yml"
promtool check rules smshub.rules.yml
echo "== promtool test rules smshub.rules.test.yml"
promtool test rules smshub.rules.test.yml
