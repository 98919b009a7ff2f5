"""serve_process.py — what the tests that run a server process share: a reserved loopback port
and waiting for `qilin serve` to answer /health."""
import http.client
import socket
import time


def reserve_port():
    """(socket, port): a socket bound to a free loopback port with SO_REUSEADDR that never listens,
    so no other socket gets the port by bind(0) or connect() while a qilin server (which binds with
    SO_REUSEADDR) can still listen there. Keep the socket while the port is in use."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def wait_healthy(server, port, fail, timeout=120):
    """Returns once the server process answers GET /health with 200; calls fail(why) when it exits
    first (with its stderr when that is piped) or after timeout seconds."""
    deadline = time.time() + timeout
    while True:
        if server.poll() is not None:
            err = server.stderr.read() if server.stderr else ""
            fail("the server exited with %d%s" % (server.returncode, ": " + err if err else ""))
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.time() > deadline:
            fail("no /health within %d s" % timeout)
        time.sleep(0.2)
