#!/usr/bin/env bash
# Load benchmark (issue 10's six targets): starts a release server on a
# fresh SQLite database, drives it with wrk on loopback (every phase bounded
# in time), prints each target as `name: measured (target)` and a last line
# `N of 6 targets met`, and draws /users/me latency over a login flood
# (PNG). Also reports, as figures beside the targets, client_credentials
# and PAT-exchange grants at /token, each as a ratio to /healthz. See
# bench/load.py for what each phase does.
#
#   bash bench/load.sh [path/to/portcullis]
#
# LOAD_SHORT=1: 2 s phases and 100k requests for the memory check (CI runs
# this; its figures are printed, not asserted). LOAD_OUT: where the
# picture goes (default bench/out). Needs wrk (apt-get install wrk) and
# python3; installs matplotlib from PyPI if missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$here/../target}"
bin="${1:-$target/release/portcullis}"
out="${LOAD_OUT:-$here/out}"

if ! command -v wrk >/dev/null; then
  echo "bench/load.sh needs wrk: apt-get install wrk" >&2
  exit 1
fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check matplotlib
if [ $# -eq 0 ]; then
  (cd "$here/.." && cargo build --release -p portcullis --quiet)
fi
exec python3 "$here/load.py" "$bin" "$out"
