#!/usr/bin/env python3
"""SMTP server for Herald's tests (aiosmtpd): plain, or STARTTLS with AUTH required.

Each mail is parsed with Python's email package and summarised as <out>/<n>.json
(subject, from, to, message id, text and html parts, TLS and AUTH seen). Recipients
`unknown@…` are refused with 550 5.1.1 and `busy@…` with 451 4.3.0.
"""
import argparse
import email
import email.policy
import itertools
import json
import os
import ssl
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--user")
ap.add_argument("--password")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
seq = itertools.count(1)


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("unknown@"):
            return "550 5.1.1 User unknown"
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        text = html = None
        for part in msg.walk():
            kind = part.get_content_type()
            if kind == "text/plain" and text is None:
                text = part.get_content()
            elif kind == "text/html" and html is None:
                html = part.get_content()
        summary = {
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "message_id": str(msg["message-id"]),
            "text": text,
            "html": html,
            "env_from": envelope.mail_from,
            "env_to": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "auth": session.auth_data if isinstance(session.auth_data, str) else None,
        }
        n = next(seq)
        tmp = os.path.join(args.out, f".{n:06d}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, ensure_ascii=False)
        os.rename(tmp, os.path.join(args.out, f"{n:06d}.json"))
        return "250 Message accepted"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == args.user
        and auth_data.password.decode() == args.password
    )
    return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)


kw = dict(hostname="127.0.0.1", port=args.port)
if args.cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    kw.update(tls_context=ctx, require_starttls=True)
if args.user:
    kw.update(authenticator=authenticate, auth_required=True, auth_require_tls=bool(args.cert))
controller = Controller(Handler(), **kw)
controller.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
finally:
    controller.stop()
