#!/usr/bin/python3
"""Tiny MySQL text-protocol client (stdlib only) that also writes the queue
dump a perfect mrte decoder would produce for its own client packets.

It exists to test the ground-truth pipeline end to end without the decoder:
general_log_dump + this dump must compare equal in tests/lib/compare.py.

Usage:
  mysql_wire_client.py --port P --user U --password PW [--db DB] --dump OUT.tsv \
        [--sessions N] [--repeat N] STEP...
STEP is one of
  q:TEXT        COM_QUERY with TEXT (python escapes allowed: \\n \\t \\x00 ...)
  db:NAME       COM_INIT_DB
  ping          COM_PING
The steps are run on every session (all of them N times with --repeat), the
sessions' commands interleaved round-robin; finally each session sends
COM_QUIT.  Exit 0 if every command got a reply (OK, ERR or a result set); ERR replies are fine (they are logged too).
"""

import argparse
import hashlib
import socket
import struct
import sys

CLIENT_LONG_PASSWORD = 0x1
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PLUGIN_AUTH = 0x80000

KIND = {0x01: "QUIT", 0x02: "INIT_DB", 0x03: "QUERY", 0x04: "FIELD_LIST", 0x0e: "PING",
        0x16: "STMT_PREPARE", 0x17: "STMT_EXECUTE"}


def native_scramble(password, salt):
    if not password:
        return b""
    h1 = hashlib.sha1(password).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(salt + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


class Conn:
    def __init__(self, host, port, dump):
        self.s = socket.create_connection((host, port), timeout=10)
        ip, p = self.s.getsockname()[:2]
        self.addr = "%s:%d" % (ip, p)
        self.dump = dump
        self.buf = b""

    def _recv(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self):
        hdr = self._recv(4)
        n = hdr[0] | hdr[1] << 8 | hdr[2] << 16
        return hdr[3], self._recv(n)

    def send(self, seq, payload, kind):
        self.s.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xff]) + payload)
        self.dump.write("%s\t%d\t%s\t%s\n" % (self.addr, seq, kind, payload.hex().upper()))

    def login(self, user, password, db):
        seq, g = self.read()
        if g[:1] == b"\xff":
            raise RuntimeError("server refused: %r" % g[3:])
        i = g.index(b"\x00", 1) + 1            # after server version
        i += 4                                 # thread id
        salt = g[i:i + 8]
        i += 9
        i += 2 + 1 + 2 + 2                     # caps lo, charset, status, caps hi
        alen = g[i]
        i += 1 + 10
        salt += g[i:i + max(13, alen - 8)].rstrip(b"\x00")
        caps = (CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS |
                CLIENT_SECURE_CONNECTION | CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH)
        if db:
            caps |= CLIENT_CONNECT_WITH_DB
        auth = native_scramble(password, salt[:20])
        p = struct.pack("<IIB", caps, 1 << 24, 33) + b"\x00" * 23
        p += user + b"\x00" + bytes([len(auth)]) + auth
        if db:
            p += db + b"\x00"
        p += b"mysql_native_password\x00"
        self.send(1, p, "HANDSHAKE")
        while True:
            seq, r = self.read()
            if r[:1] == b"\x00":
                return
            if r[:1] == b"\xff":
                raise RuntimeError("login failed: %r" % r[9:])
            if r[:1] == b"\xfe":               # auth switch
                name_end = r.index(b"\x00", 1)
                plugin, salt2 = r[1:name_end], r[name_end + 1:].rstrip(b"\x00")
                if plugin != b"mysql_native_password":
                    raise RuntimeError("unsupported auth plugin %r" % plugin)
                self.send(seq + 1, native_scramble(password, salt2), "AUTH")
                continue
            raise RuntimeError("unexpected auth reply %r" % r[:20])

    def command(self, payload):
        self.send(0, payload, KIND.get(payload[0], "OTHER"))
        if payload[0] == 0x01:
            return
        self._read_result()

    def _read_result(self):
        while True:
            _, r = self.read()
            if r[:1] in (b"\x00", b"\xff"):
                more = r[:1] == b"\x00" and self._ok_more(r)
            else:                               # result set: columns, EOF, rows, EOF
                while True:
                    _, c = self.read()
                    if c[:1] == b"\xfe" and len(c) < 9:
                        break
                while True:
                    _, row = self.read()
                    if row[:1] == b"\xff":
                        more = False
                        break
                    if row[:1] == b"\xfe" and len(row) < 9:
                        more = bool(struct.unpack("<H", row[3:5])[0] & 0x8) if len(row) >= 5 else False
                        break
            if not more:
                return

    @staticmethod
    def _ok_more(r):
        i = 1
        for _ in range(2):                      # affected rows, last insert id (lenenc)
            b = r[i]
            i += 1 if b < 0xfb else {0xfc: 3, 0xfd: 4, 0xfe: 9}[b]
        status = struct.unpack("<H", r[i:i + 2])[0]
        return bool(status & 0x8)               # SERVER_MORE_RESULTS_EXISTS


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", default="")
    ap.add_argument("--db", default="")
    ap.add_argument("--dump", required=True, help="write the expected queue dump TSV here")
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="run the steps N times")
    ap.add_argument("steps", nargs="*")
    a = ap.parse_args()

    cmds = []
    for st in a.steps:
        if st.startswith("q:"):
            text = st[2:].encode("utf-8").decode("unicode_escape").encode("latin-1")
            cmds.append(b"\x03" + text)
        elif st.startswith("db:"):
            cmds.append(b"\x02" + st[3:].encode())
        elif st == "ping":
            cmds.append(b"\x0e")
        else:
            ap.error("bad step %r" % st)

    with open(a.dump, "w") as dump:
        dump.write("# expected queue dump written by mysql_wire_client.py\n")
        conns = []
        for _ in range(a.sessions):
            c = Conn(a.host, a.port, dump)
            c.login(a.user.encode(), a.password.encode(), a.db.encode())
            conns.append(c)
        for cmd in cmds * a.repeat:
            for c in conns:
                c.command(cmd)
        for c in conns:
            c.command(b"\x01")
            c.s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
