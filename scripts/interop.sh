#!/usr/bin/env bash
# Interop tests against a real `tern serve`: headless Chromium and Firefox ESR on the demo page,
# and aiortc as a scripted client (tools/interop). Installs what they need on a fresh Debian
# machine: browsers, chromedriver, PulseAudio and sox from apt, geckodriver from crates.io, the
# Python clients from PyPI into target/interop-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh chromium chromium-driver firefox-esr pulseaudio pulseaudio-utils python3 python3-venv \
  golang-go golang-github-pion-webrtc.v3-dev opus-tools \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice \
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0

# Node.js clients (werift, the agents SDK page): the machine's Node.js, else Debian's.
command -v npm >/dev/null || ./scripts/setup.sh nodejs npm

# geckodriver has no Debian package; Mozilla publishes it on crates.io.
export PATH="$HOME/.cargo/bin:$PATH"
command -v geckodriver >/dev/null || cargo install --locked --quiet geckodriver@0.37.1

venv=target/interop-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/interop/requirements.txt

cargo build --quiet -p tern-engine --bin tern
rm -f target/interop/results.jsonl
"$venv/bin/python" -m pytest tools/interop -v -s -p no:cacheprovider "$@"
echo "interop results (also in target/interop/results.jsonl):"
cat target/interop/results.jsonl
