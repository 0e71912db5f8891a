#!/usr/bin/env python3
"""Start-up time of a wardgate binary: from exec until `GET /readyz` answers
200 (spool open, sinks ready, rules compiled, the page listening), over a
one-bed configuration with a synthetic device and a JSONL sink, in a fresh
directory each time (a new spool). Prints the median and the range.

    bench/startup.py target/box/wardgate [runs]

Standard library only; loopback only.
"""

import http.client
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
[gateway]
site = "bench"
ward = "w"
id = "gw-bench"

[http]
listen = "127.0.0.1:{port}"

[spool]
path = "{dir}/spool.redb"

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["hr-1"]

[[devices]]
id = "hr-1"
type = "synthetic"
interval = "1s"
signals = [{{ metric = "heart_rate", base = 72 }}]

[[sinks]]
type = "jsonl"
path = "{dir}/events.jsonl"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port: int) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/readyz")
        return c.getresponse().status == 200
    except OSError:
        return False


def once(binary: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        cfg = Path(d) / "gw.toml"
        cfg.write_text(CONFIG.format(port=port, dir=d))
        start = time.monotonic()
        p = subprocess.Popen(
            [binary, "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not ready(port):
                if p.poll() is not None:
                    sys.exit(f"{binary} exited with {p.returncode}")
                if time.monotonic() - start > 30:
                    sys.exit("not ready after 30 s")
                time.sleep(0.002)
            return time.monotonic() - start
        finally:
            p.terminate()
            p.wait()


def main() -> None:
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    times = [once(binary) for _ in range(runs)]
    ms = [t * 1000 for t in times]
    print(
        f"{binary}: ready in {statistics.median(ms):.0f} ms median "
        f"({min(ms):.0f}-{max(ms):.0f} ms, {runs} runs)"
    )


if __name__ == "__main__":
    main()
