#!/usr/bin/env python3
"""An HL7 v2 MLLP receiver for wardgate's tests: the independent peer of the
hl7v2 sink (docs/interop-hl7v2.md, "How it is tested").

It listens on 127.0.0.1, keeps each connection open for as many messages as
the sender sends (as interface engines do), and for every message:

- validates it with hl7apy 1.3.5 at strict validation for HL7 v2.6:
  ORU^R01 as a whole message (hl7apy knows the ORU_R01 structure); ORU^R40
  segment by segment (hl7apy has no ORU_R40 structure in any version), the
  segment order being checked here;
- checks each OBX-5 against its OBX-2 data type and every time as DTM with
  hl7apy's data type factories (strict);
- checks what IHE PCD asks beyond the base standard (MSH-21 profile, PID-3
  identifier type, OBX-11, the ACM facets), which are this script's checks;
- reads the key fields, unescaping text with python-hl7 0.4.5 (hl7apy does
  not unescape);
- appends one JSON line to --out (also for what it refused) and answers
  with an original-mode ACK: AA, or AE with the reason when it is invalid.

The test steers it through files in --control (each read at every message):
  silent_once      answer nothing to the next message (file removed)
  garbage_once     answer bytes that are no MLLP frame (file removed)
  refuse_once      answer the next message whose MSH-9 starts with the
                   file's text with AE (file removed)
  reject           answer AR to every message while the file exists
  trailing_lf      add a line feed after every answer's frame (as some
                   engines do) while the file exists

With --hl7apy-server it runs hl7apy's own MLLPServer instead, which answers
one message per connection and then closes it (so the sender must open a
connection per message); the control files are not read then.

Usage: mllp_peer.py --port PORT --out FILE [--control DIR] [--hl7apy-server]
Prints the port on its first line once it listens (port 0: any free port).
"""

import argparse
import json
import os
import re
import socketserver
import sys
import threading

import hl7
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.factories import datatype_factory
from hl7apy.parser import parse_message, parse_segment

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
STRICT = VALIDATION_LEVEL.STRICT
PROFILES = {
    "ORU^R01^ORU_R01": "IHE_PCD_001",
    "ORU^R40^ORU_R40": "IHE_PCD_ACM_001",
}
# ORU_R40 as wardgate sends it: MSH, PID, PV1, then OBR with its OBX rows.
R40_ORDER = re.compile(r"MSH (PID (PV1 )?)?(OBR (OBX )+)+")
# The ACM facets (OBX-3 code -> OBX-4 facet, allowed values); facet 2, the
# source, is free text.
FACETS = {
    "68480": (2, None),
    "68481": (3, {"start", "continue", "end"}),
    "68482": (4, {"off", "inactive", "active", "latched"}),
    "68483": (5, {"enabled", "audio-paused", "audio-off", "alarm-paused", "alarm-off",
                  "alert-acknowledged"}),
    "68484": (6, {"PH", "PM", "PL"}),
    "68485": (7, {"SP", "ST", "SA"}),
}


class Invalid(Exception):
    pass


def field(seg, n, comp=1):
    """Field n, component comp, as sent (still escaped)."""
    try:
        f = seg[n]
    except IndexError:
        return ""
    parts = str(f).split("^")
    return parts[comp - 1] if comp - 1 < len(parts) else ""


def typed(datatype, value):
    """hl7apy's strict check of one value against its data type (OBX-5 is
    `varies` in the message structure, so its type is checked here, by
    OBX-2)."""
    if value:
        datatype_factory(datatype, value, version="2.6", validation_level=STRICT)


def validate(text):
    """hl7apy's strict validation; returns the message type."""
    msh = parse_segment(text.split("\r")[0], version="2.6", validation_level=STRICT)
    kind = msh.msh_9.to_er7()
    if kind == "ORU^R01^ORU_R01":
        parse_message(text, validation_level=STRICT).validate()
    elif kind == "ORU^R40^ORU_R40":
        names = []
        for s in filter(None, text.split("\r")):
            seg = parse_segment(s, version="2.6", validation_level=STRICT)
            seg.validate()
            names.append(seg.name)
        if not R40_ORDER.fullmatch(" ".join(names) + " "):
            raise Invalid("ORU_R40 segments out of order: " + " ".join(names))
    else:
        raise Invalid("unexpected message type " + kind)
    return kind


def read(text, kind):
    """The key fields, checked against the IHE PCD profile."""
    m = hl7.parse(text)
    msh = m.segment("MSH")
    if str(msh[12]) != "2.6":
        raise Invalid("MSH-12 is not 2.6")
    if field(msh, 21) != PROFILES[kind]:
        raise Invalid("MSH-21 is not " + PROFILES[kind])
    pid = m.segment("PID")
    if field(pid, 3, 5) != "MR":
        raise Invalid("PID-3.5 is not MR")
    pv1 = m.segment("PV1")
    obr = m.segment("OBR")
    out = {
        "control_id": str(msh[10]),
        "type": kind,
        "sent_at": str(msh[7]),
        "mrn": m.unescape(field(pid, 3, 1)),
        "authority": m.unescape(field(pid, 3, 4)),
        "patient_class": str(pv1[2]),
        "bed": m.unescape(field(pv1, 3, 3)),
        "filler": m.unescape(field(obr, 3, 1)),
        "service": field(obr, 4, 1),
        "obx": [],
    }
    typed("DTM", str(msh[7]))
    typed("DTM", str(obr[7]))
    for obx in m.segments("OBX"):
        if str(obx[11]) != "R":
            raise Invalid("OBX-11 is not R")
        typed(str(obx[2]), str(obx[5]))
        typed("DTM", str(obx[14]))
        out["obx"].append({
            "type": str(obx[2]),
            "code": field(obx, 3, 1),
            "name": m.unescape(field(obx, 3, 2)),
            "system": field(obx, 3, 3),
            "sub_id": str(obx[4]),
            "value": m.unescape(str(obx[5])),
            "unit": m.unescape(field(obx, 6, 1)),
            "unit_system": field(obx, 6, 3),
            "flags": str(obx[8]).split("~") if str(obx[8]) else [],
            "time": str(obx[14]),
            "device": m.unescape(field(obx, 18, 1)),
        })
    if kind == "ORU^R40^ORU_R40":
        event, rows = out["obx"][0], out["obx"][1:]
        if event["code"] != "196616" or event["sub_id"].rsplit(".", 1)[-1] != "1":
            raise Invalid("the first OBX is not the event identification facet")
        facets = {}
        for o in rows:
            facet, allowed = FACETS.get(o["code"], (None, None))
            if facet is None or o["sub_id"].rsplit(".", 1)[-1] != str(facet):
                raise Invalid("unknown facet or OBX-4 " + json.dumps(o))
            if allowed is not None and o["value"] not in allowed:
                raise Invalid("facet value outside its vocabulary: " + json.dumps(o))
            facets[o["code"]] = o["value"]
        if set(facets) != set(FACETS):
            raise Invalid("ACM facets missing: " + json.dumps(sorted(set(FACETS) - set(facets))))
        if event["flags"] != [facets["68484"], facets["68485"]]:
            raise Invalid("OBX-8 disagrees with the priority and type facets")
        out["alert"] = {
            "rule": field(m.segment("OBX"), 3, 4),
            "message": event["value"],
            "flags": event["flags"],
            "source": facets["68480"],
            "phase": facets["68481"],
            "state": facets["68482"],
            "inactivation": facets["68483"],
            "priority": facets["68484"],
            "type": facets["68485"],
        }
    return out


def ack(received, code, control_id, text=""):
    msh = received.split("\r")[0].split("|")
    sending = msh[2:4] if len(msh) > 3 else ["", ""]
    trigger = msh[8].split("^")[1] if len(msh) > 8 and "^" in msh[8] else ""
    text = text.replace("|", " ").replace("\r", " ")[:80]
    return ("MSH|^~\\&|PEER|TEST|%s|%s|20261127000000||ACK^%s^ACK|ACK-%s|P|2.6\rMSA|%s|%s|%s\r"
            % (sending[0], sending[1], trigger, control_id, code, control_id, text))


class Peer:
    def __init__(self, out, control):
        self.out = out
        self.control = control
        self.lock = threading.Lock()
        self.accepted = set()

    def flag(self, name, consume):
        if not self.control:
            return None
        path = os.path.join(self.control, name)
        try:
            with open(path) as f:
                value = f.read().strip()
        except FileNotFoundError:
            return None
        if consume:
            os.remove(path)
        return value

    def handle(self, text):
        """The bytes to answer with (None: stay silent)."""
        with self.lock:
            control_id = text.split("\r")[0].split("|")[9] if text.count("|") > 9 else ""
            entry = {"control_id": control_id}
            try:
                kind = validate(text)
                entry.update(read(text, kind))
                entry["valid"] = True
            except Exception as e:  # every refusal is logged, with its reason
                entry.update({"valid": False, "error": "%s: %s" % (type(e).__name__, e)})
            refuse = self.flag("refuse_once", False)
            if not entry["valid"]:
                entry["answer"] = "AE"
                reply = ack(text, "AE", control_id, entry["error"]).encode()
            elif self.flag("silent_once", True) is not None:
                entry["answer"] = "none"
                reply = None
            elif self.flag("garbage_once", True) is not None:
                entry["answer"] = "garbage"
                reply = b"HTTP/1.1 400 Bad Request\r\n\r\n"
            elif refuse is not None and text.split("|")[8].startswith(refuse):
                self.flag("refuse_once", True)
                entry["answer"] = "AE"
                reply = ack(text, "AE", control_id, "refused by the test").encode()
            elif self.flag("reject", False) is not None:
                entry["answer"] = "AR"
                reply = ack(text, "AR", control_id, "rejected by the test").encode()
            else:
                entry["answer"] = "AA"
                entry["duplicate"] = control_id in self.accepted
                self.accepted.add(control_id)
                reply = ack(text, "AA", control_id).encode()
            with open(self.out, "a") as f:
                f.write(json.dumps(entry) + "\n")
            if reply is not None and entry["answer"] != "garbage":
                reply = SB + reply + EB + CR
                if self.flag("trailing_lf", False) is not None:
                    reply += b"\n"
            return reply


class Connection(socketserver.BaseRequestHandler):
    def handle(self):
        buf = b""
        while True:
            try:
                data = self.request.recv(65536)
            except ConnectionError:  # the sender died (the tests kill it)
                return
            if not data:
                return
            buf += data
            while True:
                start = buf.find(SB)
                if start < 0:
                    buf = b""
                    break
                end = buf.find(EB + CR, start)
                if end < 0:
                    buf = buf[start:]
                    break
                text = buf[start + 1:end].decode("utf-8", "replace")
                buf = buf[end + 2:]
                reply = self.server.peer.handle(text)
                if reply is not None:
                    try:
                        self.request.sendall(reply)
                    except ConnectionError:
                        return


class Hl7apyHandler(AbstractHandler):
    """hl7apy's MLLPServer handler: the same checks and log, always AA or AE."""

    def __init__(self, message, peer):
        super().__init__(message)
        self.peer = peer

    def reply(self):
        return self.peer.handle(self.incoming_message.replace("\n", "\r")).decode()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--control")
    p.add_argument("--hl7apy-server", action="store_true")
    args = p.parse_args()
    if args.hl7apy_server:
        peer = Peer(args.out, None)
        handlers = {kind: (Hl7apyHandler, peer) for kind in PROFILES}
        server = MLLPServer("127.0.0.1", args.port, handlers)
    else:
        server = Server(("127.0.0.1", args.port), Connection)
        server.peer = Peer(args.out, args.control)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
