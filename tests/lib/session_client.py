#!/usr/bin/python3
"""A MySQL client session driven line by line, for session-sync tests.

Usage: session_client.py --port P --user U --password PW [--db DB] --dump OUT.tsv
It connects, logs in, prints "ready <local_port>" and then reads commands
from stdin, one per line, answering "ok" after each:
  q SQL    send COM_QUERY and read the reply
  quit     send COM_QUIT and close (a polite client)
  fin      close without COM_QUIT (the kernel sends FIN)
  rst      close with SO_LINGER 0 (the kernel sends RST)
  wait     block until the server closes the connection (after KILL)
Every packet sent is written to the dump (tests/lib/mysql_wire_client.py's
format), so a test knows exactly what the collector should publish.
"""
import argparse
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mysql_wire_client import Conn  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", default="")
    ap.add_argument("--db", default="")
    ap.add_argument("--dump", required=True)
    a = ap.parse_args()
    dump = open(a.dump, "w", buffering=1)
    c = Conn("127.0.0.1", a.port, dump)
    c.login(a.user.encode(), a.password.encode(), a.db.encode())
    print("ready %d" % c.s.getsockname()[1], flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.rstrip("\n").partition(" ")
        if cmd == "q":
            c.command(b"\x03" + arg.encode())
        elif cmd == "quit":
            c.command(b"\x01")
            c.s.close()
        elif cmd == "fin":
            c.s.close()
        elif cmd == "rst":
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.s.close()
        elif cmd == "wait":
            c.s.settimeout(None)
            while c.s.recv(4096):
                pass
        print("ok", flush=True)
        if cmd in ("quit", "fin", "rst"):
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
