#!/usr/bin/env bash
# Tear down every ACTIVE Domain Service of one app, from a CI job. Never prompts.
#
# Needs:  APP_ID             the AppID to tear down
#         OMICTL_REGISTRY    the registry base URL (else derived from the AppID)
#         OMICTL_KEY         e.g. env:OMICTL_MASTER_SEED, with the seed in a CI secret
# Writes: teardown-result.json (omictl's JSON report) for the job's artifacts.
set -euo pipefail
: "${APP_ID:?set APP_ID}"

status=0
omictl -o json decommission "$APP_ID" --all --yes --concurrency "${CONCURRENCY:-8}" \
  > teardown-result.json || status=$?

# The report: a batch document ({"results": [...], "summary": ...}), an error document
# ({"error": ...}: a missing secret, a bad AppID), or nothing at all (a second Ctrl-C).
# Printing it must never replace omictl's exit status with its own.
python3 - <<'PY' || true
import json
try:
    doc = json.load(open("teardown-result.json"))
except (OSError, ValueError):
    doc = {}
for r in doc.get("results", []):
    err = (r.get("error") or {}).get("message", "")
    print(f"{r['status']:<8} {r['service_id']:<24} {r.get('receipt_id') or '-'} {err}")
if "summary" in doc:
    print("summary:", doc["summary"])
elif "error" in doc:
    print("error:", doc["error"].get("message"))
else:
    print("no JSON report (see the lines above)")
PY

case "$status" in
  0) echo "teardown complete" ;;
  8) echo "partly done (providers terminated, registry not yet, or a bundle not written): re-run this job" >&2 ;;
  5) echo "VERIFICATION FAILED: a receipt or record did not verify; investigate" >&2 ;;
  130) echo "interrupted: re-run this job to finish (each service resumes from its journal)" >&2 ;;
  *) echo "teardown failed with exit $status" >&2 ;;
esac
exit "$status"
