#!/usr/bin/env python3
"""A small pfgate webhook provider: Python 3 standard library only.

It implements the protocol in docs/webhook.md: it verifies every request's signature and
timestamp, signs every answer, and decides each authentication by a simple rule or by asking
an operator on the console. Start it, point a pfgate `kind = "webhook"` provider at it, and every
second factor pfgate handles shows up here. Replace `decide()` with a call to your own system.

    PFGATE_WEBHOOK_SECRET=$(cat secret.txt) python3 webhook_provider.py --port 8090

See README.md beside this file for every option.
"""

import argparse
import hashlib
import hmac
import json
import os
import queue
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TIMESTAMP_HEADER = "X-Pfgate-Timestamp"
SIGNATURE_HEADER = "X-Pfgate-Signature"
MAX_BODY = 64 * 1024


# --- Signing (docs/webhook.md, "Signing") -------------------------------------------------------

def signing_string_request(timestamp, method, path, body):
    return f"pfgate-v1-request\n{timestamp}\n{method}\n{path}\n".encode() + body


def signing_string_response(timestamp, status, method, path, body):
    return f"pfgate-v1-response\n{timestamp}\n{status}\n{method}\n{path}\n".encode() + body


def sign(secret, message):
    return "v1=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify_request(secret, window, headers, method, path, body):
    """Returns None when the request is authentic, else the reason it is not."""
    timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    signature = headers.get(SIGNATURE_HEADER)
    if not timestamp or not signature:
        return "missing signature headers"
    if not timestamp.isdigit() or not timestamp.isascii():
        return "bad timestamp"
    if abs(time.time() - int(timestamp)) > window:
        return "timestamp outside the window (replayed, or clocks apart)"
    expected = hmac.new(secret, signing_string_request(timestamp, method, path, body),
                        hashlib.sha256).hexdigest()
    for entry in signature.split(","):
        scheme, _, value = entry.strip().partition("=")
        if scheme.strip() == "v1" and hmac.compare_digest(value.strip().lower(), expected):
            return None
    return "signature mismatch"


# --- Attempts -------------------------------------------------------------------------------------

class Attempts:
    """The attempts pfgate started, by request_id."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_id = {}

    def start(self, request):
        """Registers an attempt; a repeated request_id gets the existing one (idempotent)."""
        with self.lock:
            existing = self.by_id.get(request["request_id"])
            if existing is not None:
                return existing, False
            attempt = {"request": request, "status": "pending", "outcome": None,
                       "reason": None, "polls": 0}
            self.by_id[request["request_id"]] = attempt
            return attempt, True

    def get(self, request_id):
        with self.lock:
            return self.by_id.get(request_id)

    def polled(self, attempt):
        """Counts a poll; returns how many there were."""
        with self.lock:
            attempt["polls"] += 1
            return attempt["polls"]

    def finish(self, attempt, status, outcome, reason=None):
        with self.lock:
            if attempt["status"] == "pending":
                attempt.update(status=status, outcome=outcome, reason=reason)


def state_of(attempts, attempt):
    """The JSON state object for an attempt."""
    if time.time() > attempt["request"]["deadline"]:
        # pfgate has stopped waiting; so do we.
        attempts.finish(attempt, "failed", "not_answered", "nobody answered in time")
    state = {"request_id": attempt["request"]["request_id"], "status": attempt["status"]}
    if attempt["outcome"]:
        state["outcome"] = attempt["outcome"]
    if attempt["reason"]:
        state["reason"] = attempt["reason"]
    return state


def describe(request):
    return (f"{request['username']} ({request['mode']} to {mask(request['phone'])}) "
            f"for {request['application_name'] or 'an application'} "
            f"from {request['initiating_ip'] or 'an unknown address'}")


def mask(phone):
    return "+" + "*" * max(len(phone) - 3, 0) + phone[-2:]


# --- The HTTP service -----------------------------------------------------------------------------

def make_handler(config, attempts, console):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: pfgate reuses connections while polling
        server_version = "pfgate-webhook-example/1"

        def log_message(self, fmt, *args):  # one short line per request, on stderr
            if config.verbose:
                sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

        def reply(self, status, obj, extra_headers=None, signed=True):
            body = json.dumps(obj, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if signed:
                timestamp = str(int(time.time()))
                message = signing_string_response(timestamp, status, self.command, self.path, body)
                self.send_header(TIMESTAMP_HEADER, timestamp)
                self.send_header(SIGNATURE_HEADER, sign(config.secret, message))
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def authentic_body(self):
            """Reads the body and verifies the signature; answers 401 and returns None if bad."""
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.close_connection = True  # the unread body cannot be skipped
                self.reply(413, {"error": "body too large"}, signed=False)
                return None
            body = self.rfile.read(length) if length else b""
            problem = verify_request(config.secret, config.window, self.headers, self.command,
                                     self.path, body)
            if problem:
                sys.stderr.write(f"refused {self.command} {self.path}: {problem}\n")
                # Unsigned on purpose: the caller is not known to hold the secret.
                self.reply(401, {"error": problem}, signed=False)
                return None
            return body

        def do_GET(self):
            if self.authentic_body() is None:
                return
            if self.path == "/health":
                self.reply(200, {"status": "ok"})
                return
            prefix = "/authentications/"
            if not self.path.startswith(prefix):
                self.reply(404, {"error": "no such endpoint"})
                return
            attempt = attempts.get(self.path[len(prefix):])
            if attempt is None:
                self.reply(404, {"error": "no such authentication"})
                return
            polls = attempts.polled(attempt)
            if attempt["status"] == "pending" and config.decide != "console" \
                    and polls > config.pending_polls:
                status, outcome, reason = decide(config, attempt["request"])
                attempts.finish(attempt, status, outcome, reason)
            self.reply_state(attempt)

        def do_POST(self):
            body = self.authentic_body()
            if body is None:
                return
            if self.path != "/authentications":
                self.reply(404, {"error": "no such endpoint"})
                return
            try:
                request = json.loads(body)
            except ValueError:
                request = None
            required = ("request_id", "username", "phone", "mode", "deadline")
            if not isinstance(request, dict) or not all(k in request for k in required):
                self.reply(400, {"error": "not a start request"})
                return
            attempt, new = attempts.start(request)
            if new:
                print(f"authentication {request['request_id']}: {describe(request)}", flush=True)
                if config.decide == "console":
                    console.put(attempt)
                elif config.pending_polls == 0:
                    status, outcome, reason = decide(config, request)
                    attempts.finish(attempt, status, outcome, reason)
            self.reply_state(attempt, 201 if new else 200)

        def reply_state(self, attempt, status=200):
            state = state_of(attempts, attempt)
            headers = {}
            if state["status"] == "pending" and config.retry_after is not None:
                headers["Retry-After"] = str(config.retry_after)
            if state["status"] != "pending":
                print(f"authentication {state['request_id']}: {state['status']}"
                      f" {state.get('outcome', '')}", flush=True)
            self.reply(status, state, headers)

    return Handler


def decide(config, request):
    """The decision for non-console modes: (status, outcome, reason)."""
    if config.decide == "approve":
        return "success", "approved", None
    if config.decide == "allowlist" and request["username"].lower() in config.allow:
        return "success", "approved", None
    return "failed", "denied", f"{config.decide}: {request['username']} is not allowed"


def console_loop(attempts, console):
    """Asks the operator about each attempt, one at a time."""
    while True:
        attempt = console.get()
        request = attempt["request"]
        if time.time() > request["deadline"]:
            continue
        try:
            answer = input(f"Approve {describe(request)}? [y/N] ")
        except EOFError:
            answer = ""
        if time.time() > request["deadline"]:
            print("too late: pfgate has stopped waiting", flush=True)
            continue
        if answer.strip().lower() in ("y", "yes"):
            attempts.finish(attempt, "success", "approved")
        else:
            attempts.finish(attempt, "failed", "denied", "the operator denied")


def load_secret(args):
    if args.secret_file:
        with open(args.secret_file, "rb") as f:
            secret = f.read()
    else:
        value = os.environ.get(args.secret_env)
        if value is None:
            sys.exit(f"set {args.secret_env} to the shared secret (or use --secret-file)")
        secret = value.encode()
    if secret.endswith(b"\n"):  # one trailing newline is ignored, as pfgate does
        secret = secret[:-1]
        if secret.endswith(b"\r"):
            secret = secret[:-1]
    if len(secret) < 16:
        sys.exit("the shared secret must be at least 16 bytes")
    return secret


def main():
    p = argparse.ArgumentParser(description="An example pfgate webhook provider.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port (0 picks a free one; default 8090)")
    p.add_argument("--secret-env", default="PFGATE_WEBHOOK_SECRET",
                   help="environment variable holding the shared secret (default PFGATE_WEBHOOK_SECRET)")
    p.add_argument("--secret-file", help="file holding the shared secret (instead of --secret-env)")
    p.add_argument("--decide", choices=["console", "approve", "deny", "allowlist"], default="console",
                   help="how attempts are decided (default: ask on the console)")
    p.add_argument("--allow", action="append", default=[], metavar="USERNAME",
                   help="with --decide allowlist: a user to approve (repeatable); others are denied")
    p.add_argument("--pending-polls", type=int, default=0, metavar="N",
                   help="answer 'pending' to the first N polls before deciding (shows polling)")
    p.add_argument("--retry-after", type=int, metavar="SECONDS",
                   help="send Retry-After with pending answers")
    p.add_argument("--window", type=int, default=300,
                   help="accepted clock difference for request timestamps, seconds (default 300)")
    p.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain")
    p.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    p.add_argument("--client-ca", help="require a client certificate issued by this PEM CA")
    p.add_argument("--verbose", action="store_true", help="log every request on stderr")
    config = p.parse_args()
    config.secret = load_secret(config)
    config.allow = {u.lower() for u in config.allow}

    attempts = Attempts()
    console = queue.Queue()
    server = ThreadingHTTPServer((config.host, config.port), make_handler(config, attempts, console))
    server.daemon_threads = True
    scheme = "http"
    if config.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(config.tls_cert, config.tls_key)
        if config.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(config.client_ca)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    if config.decide == "console":
        threading.Thread(target=console_loop, args=(attempts, console), daemon=True).start()
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    print(f"listening on {scheme}://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
