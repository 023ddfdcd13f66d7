#!/usr/bin/env bash
# Property-based API tests with Schemathesis: checks a running Herald against its OpenAPI
# document with every Schemathesis check on, and exits non-zero on any finding.
#
#   HERALD_ST_URL=http://127.0.0.1:18080 HERALD_ST_KEY=<admin key> scripts/schemathesis.sh [SCHEMA [ST-RUN-OPTIONS...]]
#
# SCHEMA defaults to src/api/openapi.json (the file, so an edited document is tested without a
# rebuild; the server itself serves the copy compiled into it). The caller starts the server,
# with a throwaway data directory and its dispatcher off (HERALD_DISPATCH_ENABLED=false), e.g.
#
#   HERALD_ADMIN_KEY=st-admin-key-0123456789abcdef HERALD_LISTEN=127.0.0.1:18080 \
#   HERALD_DATA_DIR=$(mktemp -d) HERALD_DISPATCH_ENABLED=false herald serve
#
# The run sends thousands of generated messages, to webhook URLs on arbitrary public hosts
# among them: with the dispatcher off they are stored and never delivered (the script refuses
# a server whose /readyz shows running workers unless HERALD_ST_ALLOW_DISPATCH=1). It also
# creates API keys and audit entries and switches providers and modes (always back to
# `normal`, see schemathesis/hooks.py), so it needs an admin key. The document's examples
# send to the inbox and to https://hooks.example.com, which the default
# webhook.allowed_hosts (`*`) allows.
#
# Optional: HERALD_ST_MAX_EXAMPLES (per operation and phase, default 30), HERALD_ST_SEED (default
# 20261201), HERALD_ST_MAX_TIME (seconds for the whole run, default 120),
# HERALD_ST_REQUEST_TIMEOUT (seconds, default 10), HERALD_ST_VENV, HERALD_ST_REPORT_DIR,
# HERALD_ST_EXCUSED (where the findings hooks.py excuses are listed, one JSON line each).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

: "${HERALD_ST_URL:?set HERALD_ST_URL to the base URL of a running Herald, e.g. http://127.0.0.1:18080}"
: "${HERALD_ST_KEY:?set HERALD_ST_KEY to an admin API key of that Herald}"
schema="${1:-${HERALD_ST_SCHEMA:-$root/src/api/openapi.json}}"
[ -f "$schema" ] || { echo "schemathesis.sh: no schema at $schema" >&2; exit 2; }

version=4.32.5
venv="${HERALD_ST_VENV:-$HOME/.cache/herald-st-venv}"
if [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)" != "$version" ]; then
  echo "schemathesis.sh: installing schemathesis==$version into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi

workers=$("$venv/bin/python" - "$HERALD_ST_URL" 2>/dev/null <<'PY' || true
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1].rstrip("/") + "/readyz", timeout=10) as r:
        body = r.read()
except urllib.error.HTTPError as e:
    body = e.read()
print(json.loads(body)["checks"]["workers"]["status"])
PY
)
if [ -z "$workers" ]; then
  echo "schemathesis.sh: no Herald answers at $HERALD_ST_URL/readyz" >&2
  exit 2
fi
if [ "$workers" != disabled ] && [ "${HERALD_ST_ALLOW_DISPATCH:-0}" != 1 ]; then
  echo "schemathesis.sh: the server's dispatcher is $workers: it would deliver generated webhooks to arbitrary hosts;" >&2
  echo "  start it with HERALD_DISPATCH_ENABLED=false (or set HERALD_ST_ALLOW_DISPATCH=1)" >&2
  exit 2
fi

report="${HERALD_ST_REPORT_DIR:-$(mktemp -d /tmp/herald-st.XXXXXX)}"
mkdir -p "$report"
export HERALD_ST_EXCUSED="${HERALD_ST_EXCUSED:-$report/excused.jsonl}"
export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$here/schemathesis${PYTHONPATH:+:$PYTHONPATH}"
echo "schemathesis.sh: st run $schema --url $HERALD_ST_URL -H 'Authorization: Bearer ***' --checks all --max-examples ${HERALD_ST_MAX_EXAMPLES:-30} --seed ${HERALD_ST_SEED:-20261201} --max-time ${HERALD_ST_MAX_TIME:-120} (report: $report)"
"$venv/bin/st" --config-file "$here/schemathesis/config.toml" run "$schema" \
  --url "$HERALD_ST_URL" \
  -H "Authorization: Bearer $HERALD_ST_KEY" \
  --checks all \
  --max-examples "${HERALD_ST_MAX_EXAMPLES:-30}" \
  --seed "${HERALD_ST_SEED:-20261201}" \
  --max-time "${HERALD_ST_MAX_TIME:-120}" \
  --request-timeout "${HERALD_ST_REQUEST_TIMEOUT:-10}" \
  --workers 1 \
  --generation-database none \
  --no-color \
  --report junit,json --report-dir "$report" \
  "${@:2}" 2>&1 | tee "$report/st.out" && rc=0 || rc=$?
if [ -s "$HERALD_ST_EXCUSED" ]; then
  echo "schemathesis.sh: $(wc -l <"$HERALD_ST_EXCUSED") generated sends refused for reasons beyond the document (deployment, clock, stored keys, OpenAPI 3.0) or breaking its cross-field rules: $HERALD_ST_EXCUSED"
fi
# One plain closing line for whoever reads the log: "N passed, N failed".
passed=$(sed -n 's/.* generated, \([0-9][0-9]*\) passed.*/\1/p' "$report/st.out" | tail -n 1)
failed=$(sed -n 's/.* found \([0-9][0-9]*\) unique failure.*/\1/p' "$report/st.out" | tail -n 1)
if [ "$rc" -ne 0 ] && [ "${failed:-0}" = 0 ]; then failed=1; fi
echo "schemathesis: ${passed:-0} passed, ${failed:-0} failed"
exit "$rc"
