#!/usr/bin/env python3
"""reserve_ports.py N CMD... — runs CMD with QILIN_TEST_PORTS set to N loopback ports
reserved for it (space-separated), held until CMD exits; exits with CMD's status.

Each port is reserved as tests/loopback.h does: a socket bound to port 0 with
SO_REUSEADDR that never listens, so no other socket gets the port by bind(0)
or connect(), while a qilin node 0 (which binds with SO_REUSEADDR) can still
listen there. No race between choosing a port and listening on it."""
import os
import socket
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: reserve_ports.py N CMD...")
    held = []
    for _ in range(int(sys.argv[1])):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        held.append(s)
    env = dict(os.environ, QILIN_TEST_PORTS=" ".join(str(s.getsockname()[1]) for s in held))
    return subprocess.call(sys.argv[2:], env=env)  # the sockets are not inherited: held here


if __name__ == "__main__":
    sys.exit(main())
