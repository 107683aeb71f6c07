#!/usr/bin/python3
"""ports.py: a free TCP port on 127.0.0.1 for a server that a test or a benchmark starts.

The port is picked at random below the kernel's ephemeral range (ip_local_port_range) and found
free by binding it. Between that check and the server's own bind, the kernel hands ephemeral
ports to the outgoing connections of every suite running beside us (each Redis client, each HTTP
request), so a port of that range, which is what binding port 0 gives, can be taken in the gap:
the server then cannot listen, and a check may talk to whatever holds the port. A port below the
range is only ever taken by another test's random pick. tests/harness.c's h_free_port() does the
same for the C tests. At most 64 tries, then the kernel's pick.

Usage: from ports import free_port; or `python3 scripts/ports.py` prints one (shell scripts).
"""
import random
import socket

_rng = random.SystemRandom()  # no shared sequence between processes started at once
LOW = 20000


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port():
    """A TCP port free on 127.0.0.1 now, outside the ephemeral range where one can be found."""
    high = _ephemeral_low()
    for _ in range(64 if high > LOW + 1000 else 0):
        port = _rng.randrange(LOW, high)
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    print(free_port())
