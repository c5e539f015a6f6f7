#!/usr/bin/env bash
# Runs a command with a moto server (Secrets Manager, DynamoDB, SQS) on a free loopback port (MOTO_URL), and
# stops the server afterwards whatever happens.
set -euo pipefail
venv=${VENV:-.venv}
[ -x "$venv/bin/moto_server" ] || { echo "moto is not installed in $venv: run 'make venv'" >&2; exit 1; }
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t moto.XXXXXX.log)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 200); do
  if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
    ready=1; break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "moto_server exited at start:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ "${ready:-}" = 1 ] || { echo "moto_server did not answer on port $port within 20 s" >&2; cat "$log" >&2; exit 1; }
export MOTO_URL="http://127.0.0.1:$port"
# The AWS SDK's own variables, so tests configure it exactly as the functions do; dummy
# credentials, and nothing inherited that could reach a real account.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL
export AWS_ENDPOINT_URL_SECRETS_MANAGER="$MOTO_URL" AWS_ENDPOINT_URL_DYNAMODB="$MOTO_URL" \
  AWS_ENDPOINT_URL_SQS="$MOTO_URL" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
"$@"
