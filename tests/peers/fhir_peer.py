#!/usr/bin/env python3
"""A FHIR R4 server for the gateway's tests, checking everything it is sent
with an independent implementation: every transaction Bundle and every
Observation in it is parsed by the `fhir.resources` R4B models (pydantic;
datatypes, cardinalities, required elements, unknown elements refused).
Beside that, the vital-signs profile rules the models do not know are
checked here, written from the FHIR R4 vital-signs profiles (category,
LOINC code, UCUM unit per profile; the blood-pressure panel's components).

It implements what the gateway relies on: POST of a `transaction` Bundle
at the base URL, conditional create (`ifNoneExist: identifier=system|value`,
answered 200 when a resource with that identifier exists, 201 when created)
and a `transaction-response` Bundle.

Test controls (not FHIR):
  POST /_mode   body: `ok` | `down` (503 to everything) | `lose-answer`
                (store the bundle, then answer 500 as if the answer was lost)
                | `reject-code:<LOINC>` (422 for a bundle holding an
                Observation with that code)
  GET  /_store  every stored Observation, the invalid requests and counters

Usage: fhir_peer.py [--port N] [--state FILE] [--tls-dir DIR]   (port 0 =
any; the bound port is the first line on stdout; FILE keeps what was stored
across a restart of the peer; DIR holds server.pem, server.key and the
ca.pem that must have signed the client's certificate: mutual TLS instead of
the bearer token). Stops on SIGTERM or SIGINT.
"""

import argparse
import json
import signal
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PROFILE = "http://hl7.org/fhir/StructureDefinition/"
# profile -> (required LOINC code, UCUM unit of the value)
VITALS = {
    "heartrate": ("8867-4", "/min"),
    "oxygensat": ("2708-6", "%"),
    "resprate": ("9279-1", "/min"),
    "bodytemp": ("8310-5", "Cel"),
    "bodyweight": ("29463-7", "kg"),
}


def profile_problems(o):
    """The vital-signs profile rules (FHIR R4 §vitalsigns) `o` breaks."""
    problems = []
    profiles = (o.get("meta") or {}).get("profile") or []
    for p in profiles:
        name = p[len(PROFILE):] if p.startswith(PROFILE) else None
        if name not in VITALS and name != "bp":
            problems.append(f"unknown profile {p}")
            continue
        cats = [c.get("code") for cat in o.get("category", []) for c in cat.get("coding", [])]
        if "vital-signs" not in cats:
            problems.append(f"{name}: category vital-signs missing")
        if not o.get("subject"):
            problems.append(f"{name}: subject missing")
        if not o.get("effectiveDateTime"):
            problems.append(f"{name}: effectiveDateTime missing")
        loincs = [c["code"] for c in o["code"].get("coding", []) if c.get("system") == LOINC]
        if name == "bp":
            if "85354-9" not in loincs:
                problems.append("bp: code 85354-9 missing")
            parts = {}
            for comp in o.get("component", []):
                for c in comp["code"].get("coding", []):
                    if c.get("system") == LOINC:
                        parts[c["code"]] = comp.get("valueQuantity", {})
            for code in ("8480-6", "8462-4"):
                q = parts.get(code)
                if q is None:
                    problems.append(f"bp: component {code} missing")
                elif q.get("system") != UCUM or q.get("code") != "mm[Hg]":
                    problems.append(f"bp: component {code} not in mm[Hg]")
        else:
            code, unit = VITALS[name]
            if code not in loincs:
                problems.append(f"{name}: LOINC {code} missing")
            q = o.get("valueQuantity") or {}
            if q.get("system") != UCUM or q.get("code") != unit:
                problems.append(f"{name}: value must be in {unit} (UCUM)")
    return problems


class Store:
    def __init__(self, state=None):
        self.state = state
        self.lock = threading.Lock()
        self.mode = "ok"
        self.by_identifier = {}  # "system|value" -> stored resource
        self.order = []
        self.requests = 0
        self.creates = 0
        self.existing = 0
        self.invalid = []
        if state:
            try:
                with open(state) as f:
                    for line in f:
                        key, resource = json.loads(line)
                        self.by_identifier[key] = resource
                        self.order.append(key)
            except FileNotFoundError:
                pass

    def create(self, key, resource):
        """Stores a new resource (and in the state file, which outlives a restart)."""
        self.creates += 1
        self.by_identifier[key] = resource
        self.order.append(key)
        if self.state:
            with open(self.state, "a") as f:
                f.write(json.dumps([key, resource]) + "\n")

    def snapshot(self):
        with self.lock:
            return {
                "mode": self.mode,
                "requests": self.requests,
                "creates": self.creates,
                "existing": self.existing,
                "invalid": list(self.invalid),
                "resources": [self.by_identifier[k] for k in self.order],
            }


STORE = None
# Whether clients are authenticated by certificate (mutual TLS) instead of
# a bearer token.
TLS = False


def outcome(code, text):
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the test output quiet
        pass

    def reply(self, status, body, content_type="application/fhir+json"):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n)

    def do_GET(self):
        if self.path == "/_store":
            self.reply(200, STORE.snapshot(), "application/json")
        elif self.path.endswith("/metadata"):
            self.reply(200, {"resourceType": "CapabilityStatement", "status": "active",
                             "kind": "instance", "fhirVersion": "4.3.0",
                             "format": ["json"], "date": "2026-11-30"})
        else:
            self.reply(404, outcome("not-found", self.path))

    def do_POST(self):
        raw = self.body()
        if self.path == "/_mode":
            with STORE.lock:
                STORE.mode = raw.decode().strip()
            self.reply(200, {"mode": STORE.mode}, "application/json")
            return
        with STORE.lock:
            STORE.requests += 1
            mode = STORE.mode
        if mode == "down":
            self.reply(503, outcome("transient", "down for the test"))
            return
        if not self.path.rstrip("/").endswith("/fhir"):
            self.reply(404, outcome("not-found", self.path))
            return
        if not TLS and self.headers.get("Authorization") != "Bearer test-token":
            self.reply(401, outcome("login", "bearer token required"))
            return
        try:
            doc = json.loads(raw)
            bundle = Bundle.model_validate(doc)
            if bundle.type != "transaction":
                raise ValueError(f"Bundle.type must be transaction, got {bundle.type}")
            problems = []
            for i, e in enumerate(doc.get("entry", [])):
                Observation.model_validate(e["resource"])
                req = e.get("request") or {}
                if req.get("method") != "POST" or req.get("url") != "Observation":
                    problems.append(f"entry {i}: request must be POST Observation")
                if not str(req.get("ifNoneExist", "")).startswith("identifier="):
                    problems.append(f"entry {i}: ifNoneExist identifier= missing")
                problems += [f"entry {i}: {p}" for p in profile_problems(e["resource"])]
            if problems:
                raise ValueError("; ".join(problems))
        except Exception as exc:  # every refusal is recorded for the test
            with STORE.lock:
                STORE.invalid.append(str(exc)[:2000])
            self.reply(400, outcome("invalid", str(exc)[:2000]))
            return
        if mode.startswith("reject-code:"):
            code = mode.split(":", 1)[1]
            for e in doc["entry"]:
                codes = [c.get("code") for c in e["resource"]["code"].get("coding", [])]
                if code in codes:
                    self.reply(422, outcome("business-rule", f"code {code} is not accepted here"))
                    return
        answers = []
        with STORE.lock:
            for e in doc["entry"]:
                cond = urllib.parse.unquote(e["request"]["ifNoneExist"][len("identifier="):])
                if cond in STORE.by_identifier:
                    STORE.existing += 1
                    answers.append("200 OK")
                else:
                    STORE.create(cond, e["resource"])
                    answers.append("201 Created")
        if mode == "lose-answer":
            self.reply(500, outcome("exception", "the answer was lost"))
            return
        self.reply(200, {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": a}} for a in answers],
        })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state", help="file keeping the stored resources across restarts")
    ap.add_argument("--tls-dir", help="serve HTTPS with server.pem/server.key and require a client certificate signed by ca.pem")
    args = ap.parse_args()
    global STORE, TLS
    STORE = Store(args.state)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.tls_dir:
        TLS = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{args.tls_dir}/server.pem", f"{args.tls_dir}/server.key")
        ctx.load_verify_locations(f"{args.tls_dir}/ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
