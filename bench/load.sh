#!/usr/bin/env bash
# Load script: how /users/me (a full token check: signature, claims, and the
# database lookup of user, session and deny list) compares with /healthz
# (no auth at all) in one run, and whether token checks keep answering
# while logins hash. Loopback only; every phase is bounded in time.
#
#   bash bench/load.sh [path/to/portcullis]    (default: target/release/portcullis)
#
# Needs wrk (apt-get install wrk), curl, python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/release/portcullis}"
secs="${LOAD_SECONDS:-10}"
work="$(mktemp -d)"
password="load-test-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"

cd "$work"
PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD="$password" RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" >server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.2; done

token="$(curl -s -X POST "$url/token" -d username=admin -d "password=$password" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

rps() { awk '/Requests\/sec/ {print $2}'; }
p99() { awk '/ 99%/ {print $2}'; }

echo "== /healthz vs /users/me, ${secs}s each, 16 connections"
healthz="$(wrk -t1 -c16 -d"${secs}s" --latency "$url/healthz" | tee healthz.txt | rps)"
me="$(wrk -t1 -c16 -d"${secs}s" --latency -H "Authorization: Bearer $token" "$url/users/me" | tee me.txt | rps)"
echo "healthz:  $healthz req/s (p99 $(p99 <healthz.txt))"
echo "users/me: $me req/s (p99 $(p99 <me.txt))"
python3 -c "print(f'users/me runs at {float($me) / float($healthz):.2f} of healthz throughput')"

echo "== /users/me while logins hash, ${secs}s"
cat >login.lua <<LUA
wrk.method = "POST"
wrk.body = "username=admin&password=$password"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
LUA
wrk -t1 -c8 -d"${secs}s" -s login.lua "$url/token" >logins.txt &
logins=$!
sleep 1
under="$(wrk -t1 -c16 -d"$((secs - 2))s" --latency -H "Authorization: Bearer $token" "$url/users/me" | tee under.txt | rps)"
wait $logins
echo "logins:   $(rps <logins.txt) req/s (each one an argon2id verification)"
echo "users/me: $under req/s during the login flood (p99 $(p99 <under.txt)); non-2xx: $(grep -c 'Non-2xx' under.txt || true)"
echo "== memory: $(ps -o rss= -p $server | awk '{printf "%.1f MiB RSS", $1/1024}') after the runs"
