#!/usr/bin/python3
"""A TCP proxy on 127.0.0.1 (stdlib only) to put between the agent and the
broker, so a test can make the broker die, come back, lose data or hang
without touching the shared RabbitMQ.

Usage:
  tcp_proxy.py --listen PORT --upstream PORT [--upstream-host HOST]
               [--rcvbuf BYTES] [--log FILE]

--listen 0 picks a free port.  Once listening it prints "listening PORT";
then one line per event: "open N", "closed N", "mode MODE".  Kill it (by
PID) to make the broker vanish: every connection goes down with it.  Start
it again on the same port to bring the broker back.

Modes, switched by signals (the log says "mode ..." once switched):
  forward    (start)    pass bytes both ways
  SIGUSR1 -> blackhole  read what clients send and throw it away: data that
                        is written but never reaches the broker (in flight
                        when the connection dies)
  SIGUSR2 -> stall      stop reading from clients, new ones included: a
                        broker that accepts TCP but never reads (hung, or
                        flow control); the client's writes block once the
                        socket buffers are full
  SIGHUP  -> forward
Broker -> client bytes are always passed on.  --rcvbuf sets SO_RCVBUF on
the client side (small: a stalled client blocks after little data).
"""

import argparse
import selectors
import signal
import socket
import sys

mode = "forward"
mode_said = None


def set_mode(m):
    def handler(signum, frame):
        global mode
        mode = m
    return handler


def main():
    global mode_said
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--upstream-host", default="127.0.0.1")
    ap.add_argument("--rcvbuf", type=int, default=0)
    ap.add_argument("--log", default="-")
    a = ap.parse_args()
    log = sys.stdout if a.log == "-" else open(a.log, "a")

    def say(msg):
        log.write(msg + "\n")
        log.flush()

    signal.signal(signal.SIGUSR1, set_mode("blackhole"))
    signal.signal(signal.SIGUSR2, set_mode("stall"))
    signal.signal(signal.SIGHUP, set_mode("forward"))
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if a.rcvbuf:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)  # inherited by accept()
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(64)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, ("listen", None))
    say("listening %d" % ls.getsockname()[1])

    # pair id -> [client, upstream, client_reading]
    pairs = {}
    next_id = [0]

    def close_pair(pid):
        p = pairs.pop(pid, None)
        if not p:
            return
        for s in p[:2]:
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        say("closed %d" % pid)

    def client_reading(pid, on):
        p = pairs[pid]
        if p[2] == on:
            return
        if on:
            sel.register(p[0], selectors.EVENT_READ, ("client", pid))
        else:
            sel.unregister(p[0])
        p[2] = on

    while True:
        if mode != mode_said:
            for pid in list(pairs):
                client_reading(pid, mode != "stall")
            say("mode %s" % mode)
            mode_said = mode
        for key, _ in sel.select(timeout=0.05):
            kind, pid = key.data
            if kind == "listen":
                try:
                    c, _ = ls.accept()
                except BlockingIOError:
                    continue
                try:
                    u = socket.create_connection((a.upstream_host, a.upstream), timeout=5)
                except OSError as e:
                    say("upstream unreachable: %s" % e)
                    c.close()
                    continue
                next_id[0] += 1
                pid = next_id[0]
                # Blocking sends: the upstream (the real broker) always reads,
                # and the client side only ever gets the broker's few bytes.
                c.setblocking(True)
                u.setblocking(True)
                pairs[pid] = [c, u, False]
                sel.register(u, selectors.EVENT_READ, ("upstream", pid))
                client_reading(pid, mode != "stall")
                say("open %d" % pid)
                continue
            if pid not in pairs:
                continue
            c, u, _ = pairs[pid]
            src, dst = (c, u) if kind == "client" else (u, c)
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                close_pair(pid)
                continue
            if kind == "client" and mode == "blackhole":
                continue
            try:
                dst.sendall(data)
            except OSError:
                close_pair(pid)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
