#!/usr/bin/env bash
# Browser test of portcullis' Swagger UI: starts a throw-away server on a free
# loopback port in a temp dir, then runs docs.test.mjs (headless Debian
# chromium through playwright-core) against it.
#
#   bash tests/browser/run.sh [path/to/portcullis]   (default: target/debug/portcullis)
#
# Needs: node + npm, python3, curl, and /usr/bin/chromium (apt-get install chromium).
# Optional env: PORTCULLIS_SCREENSHOT=/path/to/shot.png to keep a screenshot.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${1:-target/debug/portcullis}"
case "$bin" in
  /*) ;;
  *) bin="$root/$bin" ;;
esac
if [[ ! -x "$bin" ]]; then
  echo "run.sh: portcullis binary not found or not executable: $bin" >&2
  exit 2
fi
chromium="${PORTCULLIS_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "run.sh: $chromium not found (apt-get install -y chromium)" >&2
  exit 2
fi

if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-browser.XXXXXX")"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port="$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
password="browser-test-$(python3 -c 'import secrets;print(secrets.token_hex(16))')"
log="$workdir/server.log"

(
  cd "$workdir"
  exec env PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD="$password" "$bin" serve --bind "127.0.0.1:$port"
) >"$log" 2>&1 &
server_pid=$!

ready=""
deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: portcullis exited before becoming ready; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/healthz" || true)" == "200" ]]; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  echo "run.sh: $base/healthz did not answer 200 within 30 s; server log:" >&2
  cat "$log" >&2
  exit 1
fi

status=0
(
  cd "$here"
  PORTCULLIS_URL="$base" PORTCULLIS_USER=admin PORTCULLIS_PASSWORD="$password" \
    PORTCULLIS_CHROMIUM="$chromium" node --test docs.test.mjs
) || status=$?

if [[ "$status" -ne 0 ]]; then
  echo "run.sh: browser test failed ($status); server log:" >&2
  cat "$log" >&2
fi
exit "$status"
