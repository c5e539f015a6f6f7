#!/usr/bin/env python3
"""Sends a webhook to a hook as a Standard Webhooks sender does (standardwebhooks.com): the
headers webhook-id, webhook-timestamp and webhook-signature (v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">, keyed with the base64 key after "whsec_"). Standard library only.

    python3 tests/send-hook.py --url http://127.0.0.1:3000/v1/hooks/crm-new-lead \
        --secret whsec_... --file lead.json [--id msg_1]

Prints the answer's status, its Idempotent-Replayed header when set, and its body; exits 0 for
a 2xx answer, 1 otherwise."""

import argparse
import base64
import hashlib
import hmac
import sys
import time
import urllib.error
import urllib.request
import uuid


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the hook's URL, <ApiUrl>/v1/hooks/<name>")
    p.add_argument("--secret", required=True, help="the hook's whsec_ secret")
    p.add_argument("--file", required=True, help="the JSON payload to send")
    p.add_argument("--id", default=None, help="the event id (default: a new one); send the same id again to see a replay")
    a = p.parse_args()
    body = open(a.file, "rb").read()
    event_id = a.id or f"msg_{uuid.uuid4().hex}"
    ts = str(int(time.time()))
    key = base64.b64decode(a.secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{event_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    request = urllib.request.Request(a.url, data=body, method="POST", headers={
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    })
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, headers, text = r.status, r.headers, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        status, headers, text = e.code, e.headers, e.read().decode(errors="replace")
    replayed = headers.get("idempotent-replayed")
    print(f"{status} (event {event_id}{', replayed' if replayed else ''})")
    print(text)
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
