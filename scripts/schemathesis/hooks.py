"""Schemathesis hooks for Herald (loaded by scripts/schemathesis.sh via SCHEMATHESIS_HOOKS).

Three things are handled here, and nothing else:

1. `before_load_schema`: `SendRequest` (and `BatchItem`, the same plus `idempotency_key`)
   states its cross-field rules (a listed channel needs its address in `to`; content must
   suit every channel used; `to.push` needs explicit channels; not both `ttl` and
   `expires_at`) as an `allOf` of `anyOf`s. Schemathesis cannot generate
   from that many alternatives at once (its canonical form grows exponentially), so tests
   generate sends from those schemas without that `allOf`. Negative cases lose nothing (a
   body the relaxed schema refuses, the full one refuses too); for positive ones see 2.

2. `filter_failure`, for generated (never the document's examples) sends answered 422, drops
   a "schema-valid request rejected" finding when an Idempotency-Key was already used with
   another body or batch (stored data), for `POST /v1/api-keys` when the name is taken by a
   stored key (or is the reserved `admin`), for contact writes when the id exists or others edit
   it at once (409), or every error is a chat id that names no configured chat provider or
   quiet hours that start and end at the same minute, and for `POST /v1/messages` only when EVERY error the
   server names is
   - one the document cannot know: which channels have a provider, which chat robots and
     templates are configured (and what a template needs), `webhook.allowed_hosts`,
     "send_at within a year" and the expires_at window (the clock); or one OpenAPI 3.0 cannot state
     (metadata key lengths and total size; limits counted in UTF-8 bytes); or
   - a cross-field rule of 1., when the body breaks the FULL document (checked here with
     the document's own `SendRequest`): such a body was never valid.
   Any other error (a rule the document fails to state) still fails the run.

   For schedule and policy writes (`/v1/schedules`, `/v1/escalation-policies`, POST and PUT)
   a 422 is dropped when every error is a contact or schedule it names that does not exist
   (`no contact `x` exists`, `no schedule `x` exists`: stored data, in every phase), and for
   generated bodies also an override whose end is not after its start or that replaces its
   own person (rules between fields), or a chat target that names no configured chat
   provider (the deployment); and a 409 when the document exists, changed, is in use or
   busy (stored data). For `GET /v1/incidents/stats`, a generated `since` that is not
   before `until` (a rule between the two; `until` defaults to now: the clock). For
   `POST /v1/drills/page`, a policy that does not exist (stored data). For contact writes,
   also paging rules that name one channel twice (uniqueness of a field among objects).

3. `after_call`: a test that switches the gateway to `core_only` or `read_only` is followed
   at once by a switch back to `normal`, so that later sends are not refused with 503
   `degraded_mode` for the rest of the run (the script runs one worker, so nothing is sent
   in between).
"""

import copy
import json
import os
import re

import jsonschema_rs
import requests
import schemathesis

SEND = "POST /v1/messages"
BATCH = "POST /v1/messages/batch"
_FULL = {}  # the SendRequest schema as the document states it, as JSON Schema


def _json_schema(node, components):
    """OpenAPI 3.0 to JSON Schema (draft 4): `$ref`s inlined, `nullable` as a null type."""
    if isinstance(node, list):
        return [_json_schema(x, components) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(components[node["$ref"].rsplit("/", 1)[1]], components)
    out = {k: _json_schema(v, components) for k, v in node.items() if k not in ("nullable", "example", "examples")}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@schemathesis.hook
def before_load_schema(context, raw_schema):
    schemas = raw_schema["components"]["schemas"]
    full = _json_schema(copy.deepcopy(schemas["SendRequest"]), schemas)
    _FULL["validator"] = jsonschema_rs.Draft4Validator(full)
    for name in ("SendRequest", "BatchItem"):
        if name in schemas:
            schemas[name].pop("allOf", None)


def _valid_send(body):
    validator = _FULL.get("validator")
    return validator is None or validator.is_valid(body)

# (field regex, message regex) pairs the running deployment decides.
_DEPLOYMENT = [
    (r"^channels(\[\d+\])?$", r"^no provider is configured for channel `[a-z]+`$"),
    (r"^to\.chat$", r"is not the id of a configured chat provider$"),
    (r"^template$", r"^unknown template `"),
    (r"^to\.webhook$", r"(is a loopback name and is not in webhook\.allowed_hosts"
                       r"|is a cloud metadata service"
                       r"|is not in webhook\.allowed_hosts"
                       r"|is link-local, metadata, multicast or unspecified and is never allowed"
                       r"|is private or loopback; add .* to webhook\.allowed_hosts to allow it"
                       r"|a private or loopback address; add .* to webhook\.allowed_hosts to allow it)$"),
    (r"^send_at$", r"^must be within a year$"),
    (r"^expires_at$", r"^(must be later than now and than send_at|must be within 30 days of send_at)$"),
    (r"^metadata$", r"^(keys must be 1 to 128 characters|at most 16384 bytes)$"),
]
# With a template, what the configured template renders and needs is the deployment's too.
_TEMPLATE = [
    (r"^params$", r""),
    (r"^content(\.[a-z]+)?$", r""),
    (r"^to\.[a-z]+$", r"^is required for channel `[a-z]+`$"),
]
# What the server says when a body breaks one of the cross-field rules (the `allOf` that
# generation leaves out).
_CROSS = [
    (r"^content$", r"^channel `[a-z]+` needs "),
    (r"^ttl$", r"^give either `ttl` or `expires_at`, not both$"),
    (r"^to\.[a-z]+$", r"^is required for channel `[a-z]+`$"),
]
_BYTE_LIMITS = {"content.subject": 998, "content.text": 262144, "content.html": 262144}


def _cross_rule(field, message):
    return any(re.search(f, field) and re.search(m, message) for f, m in _CROSS)


def _excused(field, message, body):
    for f, m in _DEPLOYMENT:
        if re.search(f, field) and re.search(m, message):
            return True
    if isinstance(body, dict) and isinstance(body.get("template"), str):
        for f, m in _TEMPLATE:
            if re.search(f, field) and re.search(m, message):
                return True
    # "at most N bytes" where the text is within N characters: a limit in UTF-8 bytes.
    if field in _BYTE_LIMITS and message == f"at most {_BYTE_LIMITS[field]} bytes" and isinstance(body, dict):
        name = field.split(".", 1)[1]
        value = (body.get("content") or {}).get(name)
        if isinstance(value, str) and len(value) <= _BYTE_LIMITS[field]:
            return True
    return False


def _phase(case):
    meta = getattr(case, "meta", None)
    phase = getattr(meta, "phase", None)
    name = getattr(phase, "name", None)
    return str(getattr(name, "value", name) or "")


def _log(why, case, response):
    """With HERALD_ST_EXCUSED=FILE, each dropped finding is appended there (one JSON line)."""
    path = os.environ.get("HERALD_ST_EXCUSED")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"why": why, "body": case.body, "status": response.status_code,
                                "response": response.content.decode("utf-8", "replace")[:2000]}, default=str) + "\n")


@schemathesis.hook
def filter_failure(context, failure, case, response):
    return _keep(failure, case, response)


KEYS = "POST /v1/api-keys"


def _name_taken(case, response):
    """A key name already used by a live key (stored data), or `admin` (reserved)."""
    try:
        problem = json.loads(response.content)
    except ValueError:
        return False
    errors = problem.get("errors") or []
    return (
        response.status_code == 422
        and len(errors) == 1
        and errors[0].get("field") == "name"
        and "already the name of another key" in errors[0].get("message", "")
    )


CONTACT_WRITES = (
    "POST /v1/contacts",
    "PUT /v1/contacts/{id}",
    "PATCH /v1/contacts/{id}",
    "POST /v1/contacts/{id}/push-subscriptions",
)
# What a contact write may be refused for beyond the document: chat ids name configured chat
# providers (the deployment), and quiet hours must not start and end at the same minute
# (a rule between two fields).
_CONTACT = [
    (r"^chat\[\d+\]$", r"is not the id of a configured chat provider$"),
    (r"^preferences\.quiet_hours\.end$", r"^must differ from start$"),
    # A patch of one end of quiet hours on a contact that has none: the stored data.
    (r"^preferences\.quiet_hours\.(start|end)$", r"^missing field"),
    # A subscription added to a contact that holds 20 already: the stored data.
    (r"^push\.webpush$", r"^must hold at most 20 items$"),
    # Paging rules name each channel once (uniqueness of one field among objects).
    (r"^preferences\.paging\[\d+\]\.channel$", r"^is listed twice$"),
]

EVENTS = "POST /v1/alerts/events"
# What an Events v2 body may be refused for beyond the document: PagerDuty's rules between
# fields (a trigger needs a non-blank summary and source; acknowledge and resolve a
# dedup_key) and the deployment (the routing key names a configured route).
_EVENTS = [
    r"^'payload(\.summary|\.source|\.severity)?' (is missing|must be)",
    r"^'dedup_key' is required to acknowledge or resolve$",
    r"^'routing_key' is not the routing key of any route$",
    r"^'routing_key' is missing or blank$",
]


MAINTENANCE = "POST /v1/maintenance-windows"
# Beyond the document: the clock and the rule between the two times, matcher syntax, and a
# reason of spaces only.
_MAINTENANCE = [
    (r"^(starts_at|ends_at)$", r"^must be an RFC 3339 timestamp"),
    (r"^ends_at$", r"^must be (after starts_at|in the future)$"),
    (r"^matchers\[\d+\]$", r"."),
    (r"^reason$", r"^say why"),
]


def _maintenance_excused(response):
    try:
        problem = json.loads(response.content)
    except ValueError:
        return False
    errors = problem.get("errors") or []
    return (
        response.status_code == 422
        and bool(errors)
        and all(any(re.search(f, e.get("field", "")) and re.search(m, e.get("message", "")) for f, m in _MAINTENANCE) for e in errors)
    )


def _events_excused(response):
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    errors = body.get("errors") or []
    return (
        response.status_code == 400
        and body.get("status") == "invalid event"
        and bool(errors)
        and all(any(re.search(p, e) for p in _EVENTS) for e in errors if isinstance(e, str))
    )


def _contact_excused(case, response):
    """A contact write refused for stored data (the id exists; others editing at once) or
    for a rule of `_CONTACT`."""
    try:
        problem = json.loads(response.content)
    except ValueError:
        return False
    if response.status_code == 409 and problem.get("code") in ("contact_exists", "contact_busy", "contact_changed"):
        return True
    errors = problem.get("errors") or []
    return (
        response.status_code == 422
        and problem.get("code") == "validation_failed"
        and bool(errors)
        and all(
            any(re.search(f, e.get("field", "")) and re.search(m, e.get("message", "")) for f, m in _CONTACT)
            for e in errors
        )
    )


SCHEDULE_WRITES = ("POST /v1/schedules", "PUT /v1/schedules/{id}")
POLICY_WRITES = ("POST /v1/escalation-policies", "PUT /v1/escalation-policies/{id}")
STATS = "GET /v1/incidents/stats"
DISABLE = "POST /v1/providers/{id}/disable"
STATUS_POSTS = ["POST /v1/status/incidents", "POST /v1/status/incidents/{id}/updates"]
DRILL = "POST /v1/drills/page"
# What a schedule or policy write may be refused for beyond the document. Stored data (any
# phase, the examples' too: a policy's example pages the schedule of the schedule's example):
# the contacts and schedules it names must exist.
_DOCUMENT_STORED = [
    (r"^(layers\[\d+\]\.participants\[\d+\]|overrides\[\d+\]\.(person|replaces))$", r"^no contact `[^`]*` exists$"),
    (r"^steps\[\d+\]\.targets\[\d+\]\.id$", r"^no (contact|schedule) `[^`]*` exists$"),
]
# Generated bodies only: rules between fields, and the deployment.
_DOCUMENT_GENERATED = [
    # An override ends after it starts, and replaces someone other than its person.
    (r"^overrides\[\d+\]\.end$", r"^must be after start$"),
    (r"^overrides\[\d+\]\.replaces$", r"^must be someone other than person$"),
    # Chat targets name configured chat providers.
    (r"^steps\[\d+\]\.targets\[\d+\]\.id$", r"^`[^`]*` is not a chat provider of the configuration$"),
]


def _errors_all(response, rules, status=422, code="validation_failed"):
    try:
        problem = json.loads(response.content)
    except ValueError:
        return False
    errors = problem.get("errors") or []
    return (
        response.status_code == status
        and problem.get("code") == code
        and bool(errors)
        and all(any(re.search(f, e.get("field", "")) and re.search(m, e.get("message", "")) for f, m in rules) for e in errors)
    )


def _document_excused(case, response):
    """A schedule or policy write refused for stored data (what it names does not exist; the
    id exists, changed or is being written: 409), or, for generated bodies, for a rule of
    `_DOCUMENT_GENERATED`."""
    try:
        problem = json.loads(response.content)
    except ValueError:
        return False
    if response.status_code == 409 and problem.get("code") in ("document_exists", "document_changed", "document_busy", "document_in_use"):
        return True
    rules = list(_DOCUMENT_STORED)
    if "example" not in _phase(case).lower():
        rules += _DOCUMENT_GENERATED
    return _errors_all(response, rules)


def _keep(failure, case, response):
    label = case.operation.label
    if type(failure).__name__ != "RejectedPositiveData":
        return True
    if label in SCHEDULE_WRITES + POLICY_WRITES and _document_excused(case, response):
        _log("on-call document: stored data or a rule beyond the document", case, response)
        return False
    # A paging drill names a stored policy (the document's example too).
    if label == DRILL and _errors_all(response, [(r"^policy$", r"^no escalation policy `[^`]*` exists$")]):
        _log("drill: the policy is stored data", case, response)
        return False
    # since and until are each valid; that since comes first (until defaults to now: the clock)
    # is a rule between them.
    if label == STATS and "example" not in _phase(case).lower() and _errors_all(response, [(r"^since$", r"^must be before until$")]):
        _log("stats: since not before until", case, response)
        return False
    if label == KEYS and "example" not in _phase(case).lower() and _name_taken(case, response):
        _log("key name taken by a stored key", case, response)
        return False
    if label == MAINTENANCE and "example" not in _phase(case).lower() and _maintenance_excused(response):
        _log("maintenance: the clock, the order of its times or matcher syntax", case, response)
        return False
    # When a disable ends must be ahead of the clock and within 30 days of it.
    if label == DISABLE and _errors_all(response, [(r"^(until|for)$", r"^(must end between now and 30 days from now|must be an RFC 3339 time)$")]):
        _log("disable: its end against the clock", case, response)
        return False
    # The components are those the deployment has (the API and each channel with providers).
    if label in STATUS_POSTS and _errors_all(response, [(r"^components\[\d+\]\.id$", r"^unknown component; one of ")]):
        _log("status post: a component this deployment does not have", case, response)
        return False
    if label == EVENTS and _events_excused(response):
        _log("events: a rule between fields, or no route has this routing key", case, response)
        return False
    if label in CONTACT_WRITES and "example" not in _phase(case).lower() and _contact_excused(case, response):
        _log("contact: stored data or a rule beyond the document", case, response)
        return False
    if label not in (SEND, BATCH):
        return True
    if "example" in _phase(case).lower() or response.status_code != 422:
        return True
    try:
        problem = json.loads(response.content)
    except ValueError:
        return True
    if problem.get("code") == "idempotency_mismatch":
        _log("idempotency key reused", case, response)
        return False
    if label != SEND:
        return True
    errors = problem.get("errors") or []
    if problem.get("code") != "validation_failed" or not errors:
        return True
    body = case.body
    # A body the full document refuses may be refused for its cross-field rules too.
    cross = not _valid_send(body)
    for e in errors:
        field, message = e.get("field", ""), e.get("message", "")
        if not (_excused(field, message, body) or (cross and _cross_rule(field, message))):
            return True
    _log("breaks a cross-field rule" if cross else "beyond the document", case, response)
    return False


@schemathesis.hook
def after_call(context, case, response):
    if case.operation.label != "PUT /v1/mode" or response.status_code != 200:
        return
    try:
        mode = json.loads(response.content).get("mode")
    except ValueError:
        return
    if mode == "normal":
        return
    url = response.request.url
    headers = {"Authorization": response.request.headers.get("Authorization", ""), "Content-Type": "application/json"}
    requests.put(url, headers=headers, data=json.dumps({"mode": "normal", "reason": "schemathesis: back to normal"}), timeout=10)
