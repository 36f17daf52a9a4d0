#!/usr/bin/env bash
# Render a weightwise HTML report in headless Chromium and save a PNG (checks it renders in a
# real browser). Needs Debian's chromium: apt-get install chromium.
#   bash benchmarks/screenshot_report.sh report.html docs/report.png
set -euo pipefail
html=$(realpath "$1"); png=$2
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium not found (apt-get install chromium)" >&2; exit 2; }
profile=$(mktemp -d)
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1280,2600 \
  --screenshot="$png" "file://$html" 2> "$profile/stderr.log" || { cat "$profile/stderr.log" >&2; exit 1; }
rm -rf "$profile"
[ -s "$png" ] && echo "wrote $png"
