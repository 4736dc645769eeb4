#!/usr/bin/env bash
# The web UI and the Provet side panel in a real browser (tests/ui_browser.rs): headless Chromium from Debian
# driven over WebDriver by chromedriver. A plain `cargo test` lists these tests as ignored; here they must run:
# missing packages are installed, and if they still cannot be installed or a test fails, CI fails.
# Usage: .ci/browser.sh   (from anywhere; root or sudo for apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "browser tests FAILED: chromium and chromedriver could not be installed (apt-get install chromium chromium-driver)" >&2
    exit 1
fi
chromium --version
chromedriver --version

# One test at a time: each starts its own daemon, simulator, fake Provet and browser.
cargo test --test ui_browser -- --ignored --test-threads=1
