#!/usr/bin/env bash
# `make dev`: the whole broker on this machine. Starts moto (Secrets Manager and DynamoDB), the
# RingCX simulator (unless DEV_ENGAGE_BASE_URL points at a real RingCX), seeds credentials, a caller
# key and a sample hook, runs the refresher on its interval and the HTTP function on
# 127.0.0.1:$DEV_API_PORT, then prints a curl and a signed hook event that work. Ctrl-C stops
# everything it started.
#
# Settings (environment): DEV_API_PORT (3000), DEV_SIM_PORT (8900), DEV_MOTO_PORT (5055),
# DEV_ENGAGE_BASE_URL + DEV_RINGCENTRAL_SERVER_URL + DEV_CREDENTIALS_FILE (a real RingCX account
# instead of the simulator), VENV (.venv), CARGO_TARGET_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."

api_port=${DEV_API_PORT:-3000}
sim_port=${DEV_SIM_PORT:-8900}
moto_port=${DEV_MOTO_PORT:-5055}
venv=${VENV:-.venv}
target=${CARGO_TARGET_DIR:-$PWD/target}
# Under the checkout's ignored target dir: kept when make dev fails, removed when it stops cleanly.
mkdir -p "$target/dev"
run_dir=$(mktemp -d "$target/dev/run.XXXXXX")
pids=()

say() { printf '%s\n' "$*"; }
fail() { say "make dev: $*" >&2; exit 1; }

cleanup() {
  local code=$?
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping: ${pids[*]}"
    kill "${pids[@]}" 2>/dev/null
    for _ in $(seq 1 50); do
      alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null
    wait 2>/dev/null
  fi
  if [ "$code" = 0 ] || [ "$code" = 130 ]; then
    rm -rf "$run_dir"
  else
    say "make dev failed; its logs are kept in $run_dir" >&2
  fi
  say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prerequisites, each in one sentence with its fix.
command -v python3 >/dev/null || fail "python3 is missing: install it (apt-get install python3 python3-venv) and run make dev again."
command -v cargo >/dev/null || fail "cargo is missing: install Rust from https://rustup.rs and run make dev again."
[ -x "$venv/bin/moto_server" ] || fail "moto is not installed in $venv: run 'make venv' (make dev does it for you)."
port_busy() { "$venv/bin/python" -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', $1)) == 0 else 1)"; }
for spec in "api:$api_port:DEV_API_PORT" "moto:$moto_port:DEV_MOTO_PORT" "simulator:$sim_port:DEV_SIM_PORT"; do
  IFS=: read -r what port var <<<"$spec"
  if [ "$what" = simulator ] && [ -n "${DEV_ENGAGE_BASE_URL:-}" ]; then continue; fi
  port_busy "$port" && fail "port $port (for the $what) is busy: stop what uses it, or run: $var=<free port> make dev"
done
if [ -n "${DEV_ENGAGE_BASE_URL:-}" ] && [ ! -r "${DEV_CREDENTIALS_FILE:-}" ]; then
  fail "DEV_ENGAGE_BASE_URL is set, so DEV_CREDENTIALS_FILE must name a readable credentials JSON file (see README)."
fi

say "building (debug)..."
cargo build --quiet --workspace --bins || fail "the build failed (see above)."

wait_http() { # url, what
  for _ in $(seq 1 300); do
    "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$1', timeout=1)" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "$2 did not come up at $1 within 30 s (its log: $run_dir)"
}

"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$run_dir/moto.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$moto_port/moto-api/" "moto"

export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:$moto_port" \
  AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$moto_port" AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
export SECRET_PREFIX=${SECRET_PREFIX:-ringcx/} TENANTS=${TENANTS:-default} BIND_ADDR="127.0.0.1:$api_port"
export RUST_LOG=${RUST_LOG:-info}
# Hooks' idempotency table, as the template makes it (partition key id; moto ignores the TTL).
export IDEMPOTENCY_TABLE=${IDEMPOTENCY_TABLE:-ringcx-dev-idempotency}
"$venv/bin/python" - "$IDEMPOTENCY_TABLE" <<'PY' || fail "could not create the DynamoDB table in moto"
import os, sys, boto3
boto3.client("dynamodb", region_name=os.environ["AWS_REGION"],
             endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"]).create_table(
    TableName=sys.argv[1], BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
PY
# Queued hooks' queue and dead-letter queue, as the template makes them (SSE, a redrive policy).
queues=$("$venv/bin/python" - <<'PY'
import json, os, boto3
sqs = boto3.client("sqs", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"])
dlq = sqs.create_queue(QueueName="ringcx-dev-hooks-dlq", Attributes={"SqsManagedSseEnabled": "true"})["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
queue = sqs.create_queue(QueueName="ringcx-dev-hooks", Attributes={
    "SqsManagedSseEnabled": "true", "VisibilityTimeout": "720",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 100})})["QueueUrl"]
print(queue, dlq)
PY
) || fail "could not create the SQS queues in moto"
read -r HOOK_QUEUE_URL HOOK_DLQ_URL <<<"$queues"
export HOOK_QUEUE_URL HOOK_DLQ_URL

if [ -n "${DEV_ENGAGE_BASE_URL:-}" ]; then
  export ENGAGE_BASE_URL="$DEV_ENGAGE_BASE_URL"
  export RINGCENTRAL_SERVER_URL=${DEV_RINGCENTRAL_SERVER_URL:-https://platform.ringcentral.com}
  cp "$DEV_CREDENTIALS_FILE" "$run_dir/credentials.json"
else
  "$target/debug/ringcx-sim" --bind "127.0.0.1:$sim_port" >"$run_dir/sim.out" 2>"$run_dir/sim.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:$sim_port/__sim/health" "the RingCX simulator"
  export ENGAGE_BASE_URL="http://127.0.0.1:$sim_port" RINGCENTRAL_SERVER_URL="http://127.0.0.1:$sim_port"
  "$venv/bin/python" -c "import json,sys; print(json.dumps(json.loads(open(sys.argv[1]).readline())['ringexCredentials']))" \
    "$run_dir/sim.out" >"$run_dir/credentials.json" || fail "could not read the simulator's credentials"
fi

first_tenant=${TENANTS%%,*}
"$target/debug/operator" seed-credentials --tenant "$first_tenant" --file "$run_dir/credentials.json" \
  || fail "seeding the credentials failed (see above)."
"$target/debug/operator" add-caller --id dev --tenant "$first_tenant" \
  --scopes engage:proxy,token:read,api-tokens:admin >"$run_dir/caller.txt" 2>/dev/null \
  || fail "adding the dev caller failed."
key=$(sed -n 's/^key: //p' "$run_dir/caller.txt")

# A sample hook: a CRM lead into campaign 42's lead loader, signed as Standard Webhooks.
cat >"$run_dir/hook.json" <<JSON
{"name": "crm-new-lead", "tenant": "$first_tenant",
 "verify": {"scheme": "standard-webhooks"},
 "request": {"method": "POST",
             "path": "v1/admin/accounts/{{ account_id }}/campaigns/{{ payload.campaign }}/leadLoader/direct",
             "body": {"description": "crm", "listState": "ACTIVE", "duplicateHandling": "REMOVE_FROM_LIST",
                      "uploadLeads": [{"leadPhone": "{{ payload.phone }}", "firstName": "{{ payload.first_name }}",
                                       "externId": "{{ payload.id }}"}]}}}
JSON
printf '%s\n' '{"id": "crm-1", "campaign": 42, "phone": "5550100", "first_name": "Ada"}' >"$run_dir/lead.json"
"$target/debug/operator" hook add --file "$run_dir/hook.json" --generate-secret >"$run_dir/hook.txt" 2>/dev/null \
  || fail "adding the sample hook failed."
hook_secret=$(sed -n 's/^secret: //p' "$run_dir/hook.txt")
# The same hook, queued: 202 at once, the hook worker delivers from the queue.
"$venv/bin/python" - "$run_dir/hook.json" "$hook_secret" >"$run_dir/hook-queued.json" <<'PY'
import json, sys
hook = json.load(open(sys.argv[1]))
hook.update(name="crm-new-lead-queued", delivery="queued")
hook["verify"]["secrets"] = [sys.argv[2]]
print(json.dumps(hook))
PY
"$target/debug/operator" hook add --file "$run_dir/hook-queued.json" >/dev/null 2>&1 \
  || fail "adding the queued sample hook failed."

"$target/debug/refresher" >"$run_dir/refresher.log" 2>&1 &
pids+=($!)
"$target/debug/api" >"$run_dir/api.log" 2>&1 &
pids+=($!)
# Outside Lambda the worker polls the queue itself, as the event source mapping would.
"$target/debug/hook-worker" >"$run_dir/hook-worker.log" 2>&1 &
pids+=($!)
code=0
for _ in $(seq 1 100); do
  code=$("$venv/bin/python" -c "import urllib.request,urllib.error
try: print(urllib.request.urlopen('http://127.0.0.1:$api_port/v1/health', timeout=1).status)
except urllib.error.HTTPError as e: print(e.code)
except Exception: print(0)")
  [ "$code" = 200 ] && break
  sleep 0.2
done
[ "$code" = 200 ] || fail "the broker has no usable token after 20 s; see $run_dir/refresher.log"

operator_env="AWS_ENDPOINT_URL_SECRETS_MANAGER=$AWS_ENDPOINT_URL_SECRETS_MANAGER AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_SQS=$AWS_ENDPOINT_URL_SQS AWS_REGION=$AWS_REGION AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_EC2_METADATA_DISABLED=true SECRET_PREFIX=$SECRET_PREFIX TENANTS=$TENANTS IDEMPOTENCY_TABLE=$IDEMPOTENCY_TABLE HOOK_QUEUE_URL=$HOOK_QUEUE_URL HOOK_DLQ_URL=$HOOK_DLQ_URL ENGAGE_BASE_URL=$ENGAGE_BASE_URL RINGCENTRAL_SERVER_URL=$RINGCENTRAL_SERVER_URL"
cat <<EOF

RingCX token broker is running (logs in $run_dir):
  HTTP function  http://127.0.0.1:$api_port   (health: /v1/health)
  RingCX         $ENGAGE_BASE_URL
  Secrets Mgr    $AWS_ENDPOINT_URL_SECRETS_MANAGER (moto)
  pids: ${pids[*]}

Dev caller: id dev, scopes engage:proxy,token:read,api-tokens:admin
Dev caller key (all scopes, shown once): $key

Try:
  curl -s -H 'Authorization: Bearer $key' http://127.0.0.1:$api_port/v1/engage/v1/admin/accounts
  curl -s -H 'X-Api-Key: $key' http://127.0.0.1:$api_port/v1/token
  curl -s -u 'dev:$key' -d grant_type=client_credentials http://127.0.0.1:$api_port/v1/oauth/token

Operator commands against this stack (make status, make add-caller, make hook-list, make hooks-dlq, ...),
from another shell in this checkout, after:
  export $operator_env

A sample hook (crm-new-lead: a CRM lead into campaign 42's lead loader; DynamoDB table
$IDEMPOTENCY_TABLE in moto). Send a signed sample event (again with --id to see a replay):
  python3 tests/send-hook.py --url http://127.0.0.1:$api_port/v1/hooks/crm-new-lead --secret $hook_secret --file $run_dir/lead.json
The same hook queued (202 at once; the hook worker delivers it from moto's SQS, log in
$run_dir/hook-worker.log):
  python3 tests/send-hook.py --url http://127.0.0.1:$api_port/v1/hooks/crm-new-lead-queued --secret $hook_secret --file $run_dir/lead.json
Its dead-letter queue: make hooks-dlq (after the export above).

ready
Press Ctrl-C to stop everything.
EOF

# Stay up until Ctrl-C, or until a component dies.
while true; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      # On Ctrl-C the components get SIGINT too and may stop first: give the INT trap its turn.
      sleep 1
      say "a component (pid $p) stopped; its logs are in $run_dir" >&2
      tail -n 20 "$run_dir"/*.log >&2
      exit 1
    fi
  done
  sleep 1
done
