#!/usr/bin/env python3
"""reserve_ports.py N CMD... — runs CMD with QILIN_TEST_PORTS set to N loopback ports
reserved for it (space-separated), held until CMD exits; exits with CMD's status.

Each port is reserved as tests/loopback.h does: a socket bound to port 0 with
SO_REUSEADDR that never listens, so no other socket gets the port by bind(0)
or connect(), while a qilin node 0 (which binds with SO_REUSEADDR) can still
listen there. No race between choosing a port and listening on it."""
import os
import subprocess
import sys

from serve_process import reserve_port


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: reserve_ports.py N CMD...")
    held = [reserve_port() for _ in range(int(sys.argv[1]))]
    env = dict(os.environ, QILIN_TEST_PORTS=" ".join(str(port) for _, port in held))
    return subprocess.call(sys.argv[2:], env=env)  # the sockets are not inherited: held here


if __name__ == "__main__":
    sys.exit(main())
