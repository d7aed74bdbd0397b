#!/usr/bin/python3
"""bench.py -- the measurement engine behind tools/bench.sh (`make bench`).

    bench.py run    --build DIR --work DIR --servers-env FILE --out results.json
    bench.py report results.json --md BENCHMARKS.md --png BENCHMARKS.png

`run` expects what tools/bench.sh sets up: namespaces mrtb-cli and mrtb-srv
joined by the veth pair mrtb-c <-> mrtb-s (10.201.0.1 <-> 10.201.0.2), and a
throwaway RabbitMQ + MariaDB (tests/lib/servers.sh) listening on the loopback
of mrtb-srv.  Every process it starts runs inside one of those namespaces,
is tracked by PID and is stopped by PID, also on SIGINT/SIGTERM.  It writes
every raw number to results.json; `report` turns that file into the table on
stdout, BENCHMARKS.md and the loss chart, so a report can be regenerated
without measuring again.

Traffic
  frames   loadgen frames: crafted Ethernet/IPv4/TCP frames, one 200-byte
           COM_QUERY each, injected into mrtb-c (AF_PACKET) towards an
           address that is not configured in mrtb-srv (10.201.0.99), so the
           server namespace drops them after the capture hook has seen them:
           one frame = one statement = one packet, exactly.
  tcp      loadgen client -> loadgen sink over real TCP sessions (8 connections,
           200-byte statements), the realistic path with handshakes.

Loss is exact: statements sent by loadgen minus COM_QUERY packets decoded by
a consumer (mrte-dump, with the player's checks) from the RabbitMQ queue, or
from the agent's --sink=file output (the broker taken out of the path).

Nothing here judges a number: targets are reported as met or missed, and the
exit status reflects only whether the machinery worked.
"""
import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

NS_CLI, NS_SRV = "mrtb-cli", "mrtb-srv"
VETH_CLI, VETH_SRV = "mrtb-c", "mrtb-s"
IP_CLI, IP_SRV, IP_NOWHERE = "10.201.0.1", "10.201.0.2", "10.201.0.99"
PORT = 3306
EXCHANGE, QUEUE = "mrtb-bench", "mrtb-bench-q"
PIN_DIR = "/sys/fs/bpf/mrtb"
SIZE = 200          # bytes of each COM_QUERY on the wire (header included)
FLOWS = 64          # frames: client flows (spread over the agent's 4 rings)
CONNS = 8           # tcp: client connections
HZ = os.sysconf("SC_CLK_TCK")

# Backends, in table order.  None = no capture at all (the baseline).
AGENT_BACKENDS = ["xdp-native", "xdp-generic", "tc", "pcap"]
BACKEND_ARGS = {
    "xdp-native": ["--capture=xdp", "--xdp_mode=native"],
    "xdp-generic": ["--capture=xdp", "--xdp_mode=generic"],
    "tc": ["--capture=tc"],
    "pcap": ["--capture=pcap"],
}
BACKEND_EXPECT = {"xdp-native": "xdp (native)", "xdp-generic": "xdp (generic)",
                  "tc": "tc", "pcap": "pcap"}
TCPDUMP_ARGS = ["-i", VETH_SRV, "-n", "-B", "16384", "-w", "/dev/null", "tcp dst port %d" % PORT]


def env_num(name, default, cast=float):
    v = os.environ.get(name)
    return cast(v) if v not in (None, "") else default


def env_list(name, default):
    v = os.environ.get(name)
    return [int(float(x)) for x in v.split(",")] if v else default


class BenchError(Exception):
    pass


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# /proc sampling
# ---------------------------------------------------------------------------

CPU_FIELDS = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]


def proc_stat():
    with open("/proc/stat") as f:
        parts = f.readline().split()
    return dict(zip(CPU_FIELDS, (int(x) for x in parts[1:1 + len(CPU_FIELDS)])))


def pid_cpu_ticks(pid):
    """utime+stime of a process (all its threads), in clock ticks."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return None


def pid_status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def prog_ids_of(pid):
    """BPF program ids held by a process (from its fds' fdinfo)."""
    ids = set()
    d = "/proc/%d/fdinfo" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return ids
    for n in names:
        try:
            with open(os.path.join(d, n)) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except (OSError, ValueError):
            continue
    return ids


def prog_stats(ids):
    """{id: (name, run_time_ns, run_cnt)} from bpftool."""
    out = {}
    for i in sorted(ids):
        r = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(i)],
                           capture_output=True, text=True, timeout=10)
        if r.returncode:
            continue
        try:
            p = json.loads(r.stdout)
        except ValueError:
            continue
        out[i] = (p.get("name", "?"), int(p.get("run_time_ns", 0)), int(p.get("run_cnt", 0)))
    return out


class Sample:
    def __init__(self, pids):
        self.t = time.monotonic()
        self.stat = proc_stat()
        self.pids = {k: pid_cpu_ticks(v) for k, v in pids.items() if v}
        ks = [pid_cpu_ticks(p) for p in KSOFTIRQD]
        self.pids["ksoftirqd"] = sum(x for x in ks if x is not None)


def ksoftirqd_pids():
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if open("/proc/%s/comm" % d).read().startswith("ksoftirqd/"):
                    pids.append(int(d))
            except OSError:
                pass
    return pids


KSOFTIRQD = ksoftirqd_pids()


def cpu_delta(a, b):
    d = {k: b.stat[k] - a.stat[k] for k in CPU_FIELDS}
    total = sum(d.values())
    res = {"wall_s": round(b.t - a.t, 4),
           "cpu_s": {k: round(v / HZ, 3) for k, v in d.items()},
           "busy_s": round((total - d["idle"] - d["iowait"]) / HZ, 3),
           "irq_softirq_s": round((d["irq"] + d["softirq"]) / HZ, 3)}
    for k in b.pids:
        if a.pids.get(k) is not None and b.pids[k] is not None:
            res[k + "_cpu_s"] = round((b.pids[k] - a.pids[k]) / HZ, 3)
    return res


# ---------------------------------------------------------------------------
# parsing the tools' output
# ---------------------------------------------------------------------------

def kv_ints(text):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", text)}


def parse_agent_log(path):
    res = {"capture": None, "totals": {}, "detail": {}, "errors": [], "not_published": {}}
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return res
    for line in text.splitlines():
        m = re.search(r"\] capture: (.*)$", line)
        if m:
            res["capture"] = m.group(1)
        if "totals:" in line:
            res["totals"] = kv_ints(line.split("totals:", 1)[1])
        if "detail:" in line:
            res["detail"] = kv_ints(line.split("detail:", 1)[1])
        if "not published since the last row:" in line:
            for k, v in kv_ints(line.split("last row:", 1)[1]).items():
                res["not_published"][k] = res["not_published"].get(k, 0) + v
        elif "[ERROR" in line or "[WARN" in line and "no --mysql_host" not in line:
            res["errors"].append(line[:300])
    res["errors"] = res["errors"][-5:]
    return res


def parse_dump(text):
    res = {}
    m = re.search(r"# mrte-dump: (.*)", text)
    if m:
        res.update(kv_ints(m.group(1)))
    m = re.search(r"# latency_ms: n=(\d+) p50=([\d.]+) p90=([\d.]+) p99=([\d.]+) max=([\d.]+)", text)
    if m:
        res["lat_n"] = int(m.group(1))
        res["lat_p50_ms"], res["lat_p90_ms"], res["lat_p99_ms"], res["lat_max_ms"] = (
            float(m.group(i)) for i in range(2, 6))
    return res


def parse_tcpdump(text):
    res = {}
    for key, pat in (("captured", r"(\d+) packets? captured"),
                     ("received_by_filter", r"(\d+) packets? received by filter"),
                     ("dropped_by_kernel", r"(\d+) packets? dropped by kernel")):
        m = re.search(pat, text)
        if m:
            res[key] = int(m.group(1))
    return res


def last_json_line(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


# ---------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.build = os.path.abspath(a.build)
        self.work = os.path.abspath(a.work)
        self.repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
        self.agent = os.path.join(self.build, "mrte-collector")
        self.dump = os.path.join(self.build, "mrte-dump")
        self.loadgen = os.path.join(self.build, "loadgen")
        self.logdir = os.path.join(self.work, "logs")
        self.outdir = os.path.dirname(os.path.abspath(a.out))
        os.makedirs(self.logdir, exist_ok=True)
        self.out = a.out
        self.servers_env = a.servers_env
        self.srv = self.read_env(a.servers_env)
        self.amqp_port = int(self.srv["AMQP_PORT"])
        self.mysql_port = int(self.srv["MYSQL_PORT"])
        self.live = {}          # pid -> (Popen, what)
        self.seq = 0
        self.quick = os.environ.get("BENCH_QUICK") == "1"
        q = self.quick
        self.step_s = env_num("BENCH_STEP_SECONDS", 1.0 if q else 2.5)
        self.grid = env_list("BENCH_GRID", [50000, 150000] if q else
                             [50000, 100000, 150000, 200000, 300000, 400000])
        self.bisect_steps = int(env_num("BENCH_BISECT_STEPS", 0 if q else 2))
        self.rates = env_list("BENCH_RATES", [50000, 200000])
        self.cpu_rounds = int(env_num("BENCH_CPU_ROUNDS", 1 if q else 2))
        self.fixed_s = env_num("BENCH_FIXED_SECONDS", 1.5 if q else 3.0)
        self.db_rounds = int(env_num("BENCH_DB_ROUNDS", 1 if q else 4))
        self.db_s = int(env_num("BENCH_DB_SECONDS", 3 if q else 6))
        self.db_threads = int(env_num("BENCH_DB_THREADS", 4))
        self.phases = os.environ.get("BENCH_PHASES", "capacity,cpu,tcp,burst,db,profile").split(",")
        self.mac_cli = self.read_ns_file(NS_CLI, "/sys/class/net/%s/address" % VETH_CLI)
        self.mac_srv = self.read_ns_file(NS_SRV, "/sys/class/net/%s/address" % VETH_SRV)
        self.results = {"config": {}, "capacity": [], "searches": [], "fixed": [], "tcp": [],
                        "burst": [], "db": {}, "profile": {}, "commands": {}, "phase_seconds": {}}
        self.bpf_stats_prev = None

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    def read_env(path):
        env = {}
        for line in open(path):
            m = re.match(r"export (\w+)=(.*)$", line.strip())
            if m:
                env[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
        return env

    @staticmethod
    def read_ns_file(ns, path):
        r = subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True,
                           text=True, timeout=10)
        if r.returncode:
            raise BenchError("cannot read %s in %s: %s" % (path, ns, r.stderr.strip()))
        return r.stdout.strip()

    def logfile(self, tag, ext):
        return os.path.join(self.logdir, "%03d-%s.%s" % (self.seq, tag, ext))

    def spawn(self, ns, cmd, tag, bpffs=False, stdout_ext="out"):
        """Start cmd inside namespace ns; stdout/stderr to log files."""
        if bpffs:
            # `ip netns exec` remounts /sys in a private mount namespace, so
            # the agent gets its own bpffs there: its pins (under PIN_DIR)
            # are private to it and vanish with it.
            cmd = ["sh", "-c", 'mount -t bpf bpf /sys/fs/bpf 2>/dev/null; exec "$0" "$@"'] + cmd
        out = open(self.logfile(tag, stdout_ext), "wb")
        err = open(self.logfile(tag, "err"), "wb")
        p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        err.close()
        p.out_path = self.logfile(tag, stdout_ext)
        p.err_path = self.logfile(tag, "err")
        self.live[p.pid] = (p, tag)
        return p

    def reap(self, p, timeout, sig=None):
        """Optionally signal p, wait up to timeout, then SIGKILL.  Returns rc."""
        if sig is not None and p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log("pid %d (%s) did not exit in %.0f s: SIGKILL" % (p.pid, self.live.get(p.pid, (0, "?"))[1], timeout))
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
        self.live.pop(p.pid, None)
        return p.returncode

    def cleanup(self):
        for pid, (p, tag) in list(self.live.items()):
            if p.poll() is None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for pid, (p, tag) in list(self.live.items()):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
            self.live.pop(pid, None)
        self.bpf_stats(None)

    def run(self, ns, cmd, timeout, check=True):
        full = (["ip", "netns", "exec", ns] if ns else []) + cmd
        r = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode:
            raise BenchError("%s failed (%d): %s" % (" ".join(cmd[:3]), r.returncode,
                                                     (r.stderr or r.stdout).strip()[-500:]))
        return r

    def run_rusage(self, ns, cmd, timeout, tag, during=None):
        """Run cmd to completion (calling during(proc) while it runs);
        return (rc, stdout, stderr, its CPU seconds: utime+stime)."""
        p = self.spawn(ns, cmd, tag)
        timer = threading.Timer(timeout, lambda: os.kill(p.pid, signal.SIGKILL))
        timer.start()
        try:
            if during:
                during(p)
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        self.live.pop(p.pid, None)
        out = open(p.out_path, errors="replace").read()
        err = open(p.err_path, errors="replace").read()
        return p.returncode, out, err, ru.ru_utime + ru.ru_stime

    def bpf_stats(self, on):
        """kernel.bpf_stats_enabled on/off; None restores the value found."""
        path = "/proc/sys/kernel/bpf_stats_enabled"
        try:
            if on is None:
                if self.bpf_stats_prev is not None:
                    open(path, "w").write(self.bpf_stats_prev)
                    self.bpf_stats_prev = None
                return
            if self.bpf_stats_prev is None:
                self.bpf_stats_prev = open(path).read().strip()
            open(path, "w").write("1" if on else "0")
        except OSError as e:
            log("bpf_stats_enabled: %s" % e)

    # -- RabbitMQ queue --------------------------------------------------------

    def dump_cmd(self, *args):
        return [self.dump, "--rabbitmq_port=%d" % self.amqp_port] + list(args)

    def reset_queue(self):
        self.run(NS_SRV, self.dump_cmd("--delete", "--queue=" + QUEUE), 30, check=False)
        self.run(NS_SRV, self.dump_cmd("--declare", "--exchange=" + EXCHANGE, "--queue=" + QUEUE), 30)

    def delete_queue(self):
        self.run(NS_SRV, self.dump_cmd("--delete", "--queue=" + QUEUE), 30, check=False)

    # -- capture processes -----------------------------------------------------

    def agent_cmd(self, backend, sink, iface=VETH_SRV, output=None):
        cmd = [self.agent, "--interface=" + iface, "--port=%d" % PORT, "--pin_dir=" + PIN_DIR,
               "--rabbitmq_host=127.0.0.1", "--rabbitmq_port=%d" % self.amqp_port,
               "--rabbitmq_exchange_name=" + EXCHANGE] + BACKEND_ARGS[backend]
        if sink == "file":
            cmd += ["--sink=file", "--output=" + output]
        elif sink == "null":
            cmd += ["--sink=null"]
        else:
            cmd += ["--sink=amqp"]
        return cmd

    def start_capture(self, backend, sink, tag, iface=VETH_SRV, output=None):
        """Start the agent (or tcpdump); wait until it captures."""
        if backend == "tcpdump":
            cmd = ["tcpdump"] + TCPDUMP_ARGS
            ready = "listening on"
            p = self.spawn(NS_SRV, cmd, tag)
        else:
            cmd = self.agent_cmd(backend, sink, iface, output)
            ready = "] capture: "
            p = self.spawn(NS_SRV, cmd, tag, bpffs=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                if ready in open(p.err_path, errors="replace").read():
                    break
            except OSError:
                pass
            if p.poll() is not None:
                raise BenchError("%s exited during start-up (rc %s): %s" % (
                    backend, p.returncode, open(p.err_path, errors="replace").read()[-800:]))
            if time.monotonic() > deadline:
                self.reap(p, 5, signal.SIGTERM)
                raise BenchError("%s did not start capturing within 20 s" % backend)
            time.sleep(0.02)
        if backend != "tcpdump":
            got = parse_agent_log(p.err_path)["capture"] or ""
            if not got.startswith(BACKEND_EXPECT[backend]):
                self.reap(p, 5, signal.SIGTERM)
                raise BenchError("asked for %s, agent chose: %s" % (backend, got))
        time.sleep(0.3)     # settle (pcap: the reader thread is running)
        return p

    def stop_capture(self, p, backend):
        """Stop it, return what it said about itself."""
        if backend == "tcpdump":
            time.sleep(1.2)   # libpcap hands over a partly filled block after 1 s
            rc = self.reap(p, 10, signal.SIGINT)
            res = parse_tcpdump(open(p.err_path, errors="replace").read())
            res["rc"] = rc
            return res
        t0 = time.monotonic()
        rc = self.reap(p, 15, signal.SIGTERM)
        res = parse_agent_log(p.err_path)
        res["rc"] = rc
        res["stop_s"] = round(time.monotonic() - t0, 3)
        return res

    # -- traffic ---------------------------------------------------------------

    def frames_cmd(self, rate, count, flows=FLOWS):
        cmd = [self.loadgen, "frames", "--ifname", VETH_CLI, "--src-mac", self.mac_cli,
               "--dst-mac", self.mac_srv, "--src", IP_CLI, "--dst", IP_NOWHERE,
               "--dport", str(PORT), "--flows", str(flows), "--size", str(SIZE),
               "--count", str(int(count)), "--json"]
        if rate:
            cmd += ["--rate", str(int(rate))]
        return cmd

    def send(self, traffic, rate, count=None, seconds=None, flows=FLOWS, during=None):
        """Offer traffic; returns loadgen's summary + its own CPU seconds.
        during(proc) is called once the generator runs (profiling)."""
        tag = "gen-%s" % traffic
        if traffic == "frames":
            cmd = self.frames_cmd(rate, count, flows)
            timeout = 60 + count / 20000.0
        else:
            cmd = [self.loadgen, "client", "--connect", "%s:%d" % (IP_SRV, PORT),
                   "--connections", str(CONNS), "--size", str(SIZE), "--rate", str(int(rate)),
                   "--duration", str(seconds), "--json"]
            timeout = 60 + seconds * 2
        rc, out, err, cpu = self.run_rusage(NS_CLI, cmd, timeout, tag, during)
        res = last_json_line(out)
        if rc or not res:
            raise BenchError("loadgen %s failed (rc %s): %s" % (traffic, rc, out[-300:]))
        res["gen_cpu_s"] = round(cpu, 4)
        return res

    # -- one measured run ----------------------------------------------------------

    def step(self, backend, sink, traffic, rate, seconds, flows=FLOWS, count=None,
             latency=False, iface=VETH_SRV, during=None, bpfstats=False, label=""):
        """Capture with `backend` (None: nothing), publish to `sink`, offer
        `rate` statements/s (0 = flat out) of `traffic`, count what arrived."""
        self.seq += 1
        tag = "%s-%s-%s-%s" % (backend or "none", sink or "-", traffic, rate or "max")
        rec = {"backend": backend or "none", "sink": sink if backend else None,
               "traffic": traffic, "target_rate": rate, "label": label}
        if count is None and traffic == "frames":
            count = max(1000, int((rate or self.flatout_guess) * seconds))
        outfile = None
        cap = dump = sink_proc = None
        try:
            if backend and backend != "tcpdump" and sink == "amqp":
                self.reset_queue()
            if backend and sink == "file":
                outfile = "/dev/shm/mrtb-bench-%d.bin" % os.getpid()
                if os.path.exists(outfile):
                    os.unlink(outfile)
            if backend:
                cap = self.start_capture(backend, sink, "cap-" + tag, iface, outfile)
            if traffic == "tcp":
                sink_proc = self.spawn(NS_SRV, [self.loadgen, "sink", "--listen",
                                                "%s:%d" % (IP_SRV, PORT), "--quiet"], "sink")
                time.sleep(0.2)
            if backend and backend != "tcpdump" and sink == "amqp":
                dump = self.spawn(NS_SRV, self.dump_cmd("--queue=" + QUEUE, "--quiet", "--latency",
                                                        "--idle_ms=1500"), "consumer")
                time.sleep(0.3)
            pids = {"agent": cap.pid} if cap else {}
            progs = prog_ids_of(cap.pid) if (cap and bpfstats) else set()
            if bpfstats:
                self.bpf_stats(True)
            ps0 = prog_stats(progs) if progs else {}
            s0 = Sample(pids)
            gen = self.send(traffic, rate, count=count, seconds=seconds, flows=flows, during=during)
            time.sleep(0.25)   # the agent's last batch (read_timeout 100 ms) is processed
            s1 = Sample(pids)
            ps1 = prog_stats(progs) if progs else {}
            if bpfstats:
                self.bpf_stats(False)
            rec["gen"] = gen
            rec["cpu"] = cpu_delta(s0, s1)
            if cap:
                rec["hwm_kb"] = pid_status_kb(cap.pid, "VmHWM")
                rec["rss_kb"] = pid_status_kb(cap.pid, "VmRSS")
            if ps0:
                rec["bpf"] = {str(i): {"name": ps1[i][0], "run_time_ns": ps1[i][1] - ps0[i][1],
                                       "run_cnt": ps1[i][2] - ps0[i][2]} for i in ps1 if i in ps0}
            if sink_proc:
                self.reap(sink_proc, 10, signal.SIGINT)
                rec["tcp_sink"] = last_json_line(open(sink_proc.out_path).read())
                sink_proc = None
            if dump:
                rc = self.reap(dump, 300)
                rec["consumer"] = parse_dump(open(dump.err_path, errors="replace").read())
                rec["consumer"]["rc"] = rc
                dump = None
            if cap:
                rec["capture"] = self.stop_capture(cap, backend)
                cap = None
            if outfile:
                r = self.run(None, [self.dump, "--file=" + outfile, "--quiet"], 300, check=False)
                rec["consumer"] = parse_dump(r.stderr)
                rec["consumer"]["rc"] = r.returncode
        finally:
            for p in (dump, sink_proc, cap):
                if p is not None:
                    self.reap(p, 10, signal.SIGTERM)
            if outfile and os.path.exists(outfile):
                os.unlink(outfile)
            if bpfstats:
                self.bpf_stats(None)
        self.account(rec)
        return rec

    def account(self, rec):
        """Sent, received, loss."""
        gen = rec["gen"]
        if rec["traffic"] == "frames":
            sent = gen["frames"]
            rec["achieved_rate"] = gen["rate"]
        else:
            sent = gen["statements"]
            rec["achieved_rate"] = gen["rate"]
        rec["sent"] = sent
        recv = None
        b, sink = rec["backend"], rec["sink"]
        if b == "tcpdump":
            recv = rec["capture"].get("captured")
        elif b != "none" and sink in ("amqp", "file"):
            recv = rec.get("consumer", {}).get("QUERY")
        elif b != "none" and sink == "null":
            t = rec["capture"].get("totals", {})
            if "units" in t:
                recv = t["units"] - (2 * gen.get("connections", 0) if rec["traffic"] == "tcp" else 0)
        rec["received"] = recv
        rec["loss"] = (sent - recv) if recv is not None else None
        rec["loss_pct"] = round(100.0 * rec["loss"] / sent, 4) if (recv is not None and sent) else None
        msg = "%-11s %-5s %-6s target %7s achieved %8.0f/s sent %8d recv %8s loss %s" % (
            b, sink or "-", rec["traffic"], rec["target_rate"] or "max", rec["achieved_rate"], sent,
            recv, rec["loss"])
        c = rec.get("consumer", {})
        if "lat_p99_ms" in c:
            msg += " p50 %.2f p99 %.2f max %.1f ms" % (c["lat_p50_ms"], c["lat_p99_ms"], c["lat_max_ms"])
        if rec.get("hwm_kb"):
            msg += " hwm %d MiB" % (rec["hwm_kb"] // 1024)
        log(msg)

    # -- phases --------------------------------------------------------------------

    flatout_guess = 300000

    def search(self, backend, sink):
        """Step the offered rate up the grid until loss or saturation (the
        generator more than 10% below its target), then one flat-out step,
        then bisect between the last clean rate and the first lossy one."""
        steps = []
        good_target, bad_target = 0, None
        saturated = False
        for target in self.grid:
            r = self.step(backend, sink, "frames", target, self.step_s, label="search")
            steps.append(r)
            if r["loss"] is None:
                raise BenchError("no loss figure for %s/%s" % (backend, sink))
            if r["loss"] > 0:
                bad_target = target
                break
            good_target = target
            if r["achieved_rate"] < 0.9 * target:
                saturated = True
                break
        if bad_target is None:
            # the most the generator can push through this backend; sized
            # from what it managed so far, so the step lasts about step_s
            guess = 1.3 * max(x["achieved_rate"] for x in steps)
            r = self.step(backend, sink, "frames", 0, self.step_s, label="flat-out",
                          count=int(min(guess, self.flatout_guess) * self.step_s))
            steps.append(r)
            if r["loss"] > 0:
                bad_target = max(r["achieved_rate"], good_target)
        for _ in range(self.bisect_steps):
            if bad_target is None or bad_target - good_target < 10000:
                break
            mid = int((good_target + bad_target) / 2 / 1000) * 1000
            r = self.step(backend, sink, "frames", mid, self.step_s, label="bisect")
            steps.append(r)
            if r["loss"] > 0:
                bad_target = mid
            else:
                good_target = mid
                if r["achieved_rate"] < 0.9 * mid:
                    break
        clean = [s for s in steps if s["loss"] == 0]
        best = max(clean, key=lambda s: s["achieved_rate"]) if clean else None
        lossy = [s for s in steps if s["loss"] and s["loss"] > 0]
        summ = {"backend": backend, "sink": sink,
                "max_zero_loss_rate": best["achieved_rate"] if best else 0,
                "limited_by": ("loss" if lossy else "no loss up to flat out: the generator, sharing "
                               "the CPUs with the capture path, could offer no more"),
                "first_loss_rate": min((s["achieved_rate"] for s in lossy), default=None),
                "max_hwm_kb": max((s.get("hwm_kb") or 0) for s in steps),
                "steps": len(steps)}
        self.results["searches"].append(summ)
        self.results["capacity"].extend(steps)
        log("capacity %s -> %s: %.0f statements/s with zero loss (%s)" % (
            backend, sink, summ["max_zero_loss_rate"], summ["limited_by"]))
        return summ

    def phase_capacity(self):
        for sink in ("amqp", "file"):
            for b in AGENT_BACKENDS:
                self.search(b, sink)
        self.search("tcpdump", "capture-only")

    def phase_cpu(self):
        """CPU per packet at fixed rates: capture cost alone (null sink, and
        tcpdump as the libpcap reference), then the full path to RabbitMQ
        (latency).  Backends alternate inside each round."""
        for rnd in range(self.cpu_rounds):
            for rate in self.rates:
                order = [None] + AGENT_BACKENDS + ["tcpdump"]
                k = rnd % len(order)
                for b in order[k:] + order[:k]:
                    r = self.step(b, "null" if b not in (None, "tcpdump") else "capture-only",
                                  "frames", rate, self.fixed_s, label="cpu-r%d" % rnd)
                    r["round"] = rnd
                    self.results["fixed"].append(r)
        for rate in self.rates:
            for b in [None] + AGENT_BACKENDS:
                r = self.step(b, "amqp", "frames", rate, self.fixed_s, latency=True, label="amqp")
                r["round"] = 0
                self.results["fixed"].append(r)

    def phase_tcp(self):
        """End to end over real TCP sessions at the fixed rates, to RabbitMQ."""
        for rate in self.rates:
            for b in [None] + AGENT_BACKENDS:
                r = self.step(b, "amqp", "tcp", rate, self.fixed_s, latency=True, label="tcp")
                self.results["tcp"].append(r)

    def phase_burst(self):
        """A short burst, then silence: its last statements leave the agent
        only through the --read_timeout flush."""
        for b in AGENT_BACKENDS:
            r = self.step(b, "amqp", "frames", 20000, 0.1, count=2000, latency=True, label="burst")
            self.results["burst"].append(r)

    # -- database-host impact ----------------------------------------------------------

    def srv_bash(self, script, timeout, *args):
        lib = os.path.join(self.repo, "tests/lib/servers.sh")
        return self.run(NS_SRV, ["bash", "-c", '. "$1"; . "$2"; shift 2; ' + script, "_", lib,
                                 self.servers_env] + [str(a) for a in args], timeout)

    def phase_db(self):
        log("database impact: sysbench oltp_read_write, prepare")
        self.srv_bash("mysql_root -e 'SET GLOBAL general_log=0'", 30)
        self.srv_bash("sysbench_prepare", 300)
        self.srv_bash('sysbench_run "$1" "$2" >/dev/null', 120, 3, self.db_threads)  # warm-up
        configs = [("off", None, None), ("xdp-generic", "xdp-generic", "amqp"),
                   ("tc", "tc", "amqp"), ("pcap", "pcap", "amqp"),
                   ("xdp-generic null", "xdp-generic", "null"), ("pcap null", "pcap", "null")]
        runs = []
        for rnd in range(self.db_rounds):
            k = rnd % len(configs)
            for name, b, sink in configs[k:] + configs[:k]:
                self.seq += 1
                cap = None
                rec = {"config": name, "backend": b or "none", "sink": sink, "round": rnd}
                try:
                    if b:
                        if sink == "amqp":
                            self.reset_queue()
                        cap = self.start_capture(b, sink, "db-%s-%s" % (b, sink), iface="lo")
                    pids = {"agent": cap.pid} if cap else {}
                    s0 = Sample(pids)
                    r = self.srv_bash('sysbench_run "$1" "$2"', self.db_s * 4 + 60, self.db_s,
                                      self.db_threads)
                    s1 = Sample(pids)
                    tx = int(r.stdout.strip().splitlines()[-1])
                    rec["transactions"] = tx
                    rec["tps"] = round(tx / self.db_s, 2)
                    rec["cpu"] = cpu_delta(s0, s1)
                    if cap:
                        rec["hwm_kb"] = pid_status_kb(cap.pid, "VmHWM")
                        rec["capture"] = self.stop_capture(cap, b)
                        cap = None
                finally:
                    if cap:
                        self.reap(cap, 10, signal.SIGTERM)
                    if sink == "amqp":
                        self.delete_queue()
                t = rec.get("capture", {}).get("totals", {})
                log("db %-17s round %d: %.1f tps%s" % (name, rnd, rec["tps"],
                    (" (agent published %d units, %.2f s CPU)" % (t.get("units", 0), rec["cpu"].get("agent_cpu_s", 0))) if t else ""))
                runs.append(rec)
        self.results["db"] = {"runs": runs, "seconds": self.db_s, "threads": self.db_threads,
                              "rounds": self.db_rounds}

    # -- profile: where the time goes ------------------------------------------------

    def our_tids(self):
        """Threads of every process in our namespaces (agent, generator,
        consumer, RabbitMQ, MariaDB) -- to tell them apart from other users'."""
        tids = set()
        for ns in (NS_SRV, NS_CLI):
            r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
            for pid in r.stdout.split():
                try:
                    tids.update(int(t) for t in os.listdir("/proc/%s/task" % pid))
                except OSError:
                    pass
        return tids

    def perf_during(self, name, secs):
        data = os.path.join(self.outdir, "perf-%s.data" % name)
        box = {"data": data, "tids": set()}

        def hook(gen):
            time.sleep(0.7)
            r = subprocess.run(["perf", "record", "-a", "-g", "-o", data, "--", "sleep", str(secs)],
                               capture_output=True, text=True, timeout=secs + 60)
            if r.returncode:
                log("perf record failed: %s" % r.stderr.strip()[-300:])
            box["tids"] = self.our_tids()
        return box, hook

    @staticmethod
    def role(comm, tid, ours):
        if tid in ours:
            if comm.startswith("loadgen"):
                return "generator (loadgen, incl. the veth receive path in its softirq)"
            if comm == "mrte-dump":
                return "consumer (mrte-dump)"
            if comm.startswith("mrte-") or comm == "sh":
                return "agent"
            if comm == "tcpdump":
                return "tcpdump"
            if comm.startswith("mariadb"):
                return "MariaDB"
            return "RabbitMQ (ours: beam.smp threads)"
        if comm.startswith("swapper"):
            return "idle"
        if re.match(r"(ksoftirqd|kworker|migration|rcu|cpuhp|kthreadd|irq/|watchdog)", comm):
            return "kernel threads (ksoftirqd, kworker, ...)"
        return "other users of the machine (not ours)"

    def perf_summary(self, box):
        data, ours = box["data"], box["tids"]
        res = {"data": data}
        if not os.path.exists(data):
            return res

        def rep(*args):
            r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children"] + list(args),
                               capture_output=True, text=True, timeout=300)
            return r.stdout

        roles, threads = {}, []
        kthreads = []
        for line in rep("--sort", "pid", "-g", "none", "--percent-limit", "0").splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(\d+):(.+?)\s*$", line)
            if not m:
                continue
            pct, tid, comm = float(m.group(1)), int(m.group(2)), m.group(3)
            role = self.role(comm, tid, ours)
            roles[role] = roles.get(role, 0.0) + pct
            if comm.startswith("ksoftirqd"):
                kthreads.append(tid)
            if pct >= 0.5:
                threads.append([pct, tid, comm, role])
        res["by_role"] = sorted(([round(v, 2), k] for k, v in roles.items()), reverse=True)
        res["threads"] = threads[:20]
        mine = sorted(ours | set(kthreads))
        filt = ["--tid=" + ",".join(str(t) for t in mine)] if mine else []
        rows = []
        for line in rep("--sort", "comm,dso,sym", "-g", "none", "--percent-limit", "0.5", *filt).splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$", line)
            if m:
                rows.append([float(m.group(1)), m.group(2), m.group(3), m.group(5)])
        res["top"] = rows[:25]
        res["top_filtered"] = bool(filt)
        # the call chains into the hottest kernel symbol of our threads
        kern = [r for r in rows if r[2] == "[kernel.kallsyms]"]
        if kern:
            sym = kern[0][3]
            chain = rep("--sort", "sym", "--symbols", sym, "-g", "caller,0.5,callee,function,percent",
                        "--percent-limit", "1", *filt)
            lines = [l.rstrip() for l in chain.splitlines() if l.strip() and not l.startswith("#")]
            res["hot_symbol"] = sym
            res["hot_chain"] = lines[:60]
        return res

    def phase_profile(self):
        prof = self.results["profile"]
        secs = 2.5
        rate = max(self.rates)
        count_for = lambda: int(rate * (secs + 2.0))
        # 1. BPF program run time per packet (kernel.bpf_stats_enabled only here)
        prof["bpf"] = []
        for b in ("xdp-native", "xdp-generic", "tc"):
            r = self.step(b, "null", "frames", rate, self.fixed_s, bpfstats=True, label="bpf-stats")
            prof["bpf"].append(r)
        # 2. perf: the whole machine during the full path to RabbitMQ
        prof["perf"] = {}
        for b in ("xdp-native", "pcap"):
            box, hook = self.perf_during(b, secs)
            r = self.step(b, "amqp", "frames", rate, None, count=count_for(), latency=True,
                          during=hook, label="perf")
            prof["perf"][b] = {"run": r, "summary": self.perf_summary(box)}
        prof["perf_command"] = "perf record -a -g -- sleep %.1f  (during the run);  perf report --no-children --sort comm,dso,sym" % secs

    # -- machine ---------------------------------------------------------------------------

    def machine(self):
        def sh(cmd):
            try:
                return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                                      timeout=30).stdout.strip()
            except Exception:
                return ""
        mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
        return {
            "nproc": os.cpu_count(),
            "memory": mem,
            "kernel": platform.release(),
            "cpu_model": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
            "hypervisor": sh("lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1"),
            "os": sh(". /etc/os-release && echo \"$PRETTY_NAME\""),
            "bpftool": sh("bpftool version | head -2 | tr '\\n' ' '"),
            "libpcap": sh("tcpdump --version 2>&1 | sed -n 's/^libpcap version //p'"),
            "tcpdump": sh("tcpdump --version 2>&1 | sed -n 's/^tcpdump version //p'"),
            "rabbitmq": sh("dpkg-query -W -f='${Version}' rabbitmq-server"),
            "erlang": sh("dpkg-query -W -f='${Version}' erlang-base"),
            "mariadb": sh("mariadbd --version | sed 's/^.*Ver //'"),
            "sysbench": sh("sysbench --version"),
            "perf": sh("perf --version"),
            "agent": sh("%s --version" % shlex.quote(self.agent)),
            "git": sh("cd %s && git describe --always --dirty 2>/dev/null" % shlex.quote(self.repo)),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "hz": HZ,
        }

    def background(self, secs=2.0):
        """How busy the machine is with things that are not ours."""
        a = proc_stat()
        time.sleep(secs)
        b = proc_stat()
        d = {k: b[k] - a[k] for k in CPU_FIELDS}
        total = sum(d.values()) or 1
        busy = 100.0 * (total - d["idle"] - d["iowait"]) / total
        top = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"],
                             capture_output=True, text=True).stdout.splitlines()[:5]
        return {"busy_pct_of_all_cpus": round(busy, 1), "top": [t.strip() for t in top]}

    def commands(self):
        """Every command line the bench runs, with the parts that vary named."""
        q = lambda cmd: " ".join(shlex.quote(c) for c in cmd)
        srv, cli = "ip netns exec %s " % NS_SRV, "ip netns exec %s " % NS_CLI
        agent = self.agent_cmd("pcap", "amqp")
        common = [c for c in agent if c not in BACKEND_ARGS["pcap"] and c != "--sink=amqp"]
        return [
            ["agent (BACKEND, SINK below)", srv + q(common) + " BACKEND SINK"],
            ["BACKEND", "; ".join("%s: %s" % (b, " ".join(BACKEND_ARGS[b])) for b in AGENT_BACKENDS)],
            ["SINK", "amqp: --sink=amqp; file: --sink=file --output=/dev/shm/mrtb-bench-PID.bin; null: --sink=null"],
            ["libpcap reference", srv + q(["tcpdump"] + TCPDUMP_ARGS)],
            ["frames", cli + q(self.frames_cmd(0, 1)).replace("--count 1", "--count COUNT") + " [--rate RATE]"],
            ["tcp sessions: sink", srv + q([self.loadgen, "sink", "--listen", "%s:%d" % (IP_SRV, PORT), "--quiet"])],
            ["tcp sessions: client", cli + q([self.loadgen, "client", "--connect", "%s:%d" % (IP_SRV, PORT),
                                               "--connections", str(CONNS), "--size", str(SIZE)])
             + " --rate RATE --duration SECONDS --json"],
            ["queue, before every step", srv + q(self.dump_cmd("--delete", "--queue=" + QUEUE)) + "; " +
             q(self.dump_cmd("--declare", "--exchange=" + EXCHANGE, "--queue=" + QUEUE))],
            ["consumer (RabbitMQ)", srv + q(self.dump_cmd("--queue=" + QUEUE, "--quiet", "--latency", "--idle_ms=1500"))],
            ["consumer (file sink)", q([self.dump, "--file=/dev/shm/mrtb-bench-PID.bin", "--quiet"])],
            ["database impact: agent", srv + q([c if c != "--interface=" + VETH_SRV else "--interface=lo"
                                                for c in common]) + " BACKEND SINK"],
            ["database impact: load", "sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 "
             "--mysql-port=%d --mysql-user=sbtest --mysql-password=sbtest --mysql-db=sbtest --tables=2 "
             "--table-size=2000 --db-ps-mode=disable --mysql-ssl=off --report-interval=0 --time=%d "
             "--threads=%d run   (tests/lib/servers.sh sysbench_run, in %s)" % (
                 self.mysql_port, self.db_s, self.db_threads, NS_SRV)],
            ["profile", "perf record -a -g -o $BUILD/bench/perf-BACKEND.data -- sleep 2.5; perf report "
             "--stdio --no-children --sort pid | --sort comm,dso,sym --tid=OURS"],
            ["BPF run time", "sysctl kernel.bpf_stats_enabled=1; bpftool -j prog show id ID  (run_time_ns, "
             "run_cnt before/after; ids from /proc/AGENT/fdinfo)"],
        ]

    def do(self):
        t0 = time.monotonic()
        cfg = self.results["config"]
        cfg.update({"step_seconds": self.step_s, "grid": self.grid, "bisect_steps": self.bisect_steps,
                    "rates": self.rates, "cpu_rounds": self.cpu_rounds, "fixed_seconds": self.fixed_s,
                    "size": SIZE, "flows": FLOWS, "connections": CONNS, "quick": self.quick,
                    "phases": self.phases, "amqp_port": self.amqp_port, "mysql_port": self.mysql_port,
                    "exchange": EXCHANGE, "queue": QUEUE})
        self.results["machine"] = self.machine()
        self.results["commands"] = self.commands()
        self.results["background_start"] = self.background()
        log("background load before the bench: %.0f%% of all CPUs busy (%s)" % (
            self.results["background_start"]["busy_pct_of_all_cpus"],
            ", ".join(self.results["background_start"]["top"][:3])))
        # a first flat-out measure sizes the flat-out steps
        self.seq += 1
        g = self.send("frames", 0, count=300000)
        self.flatout_guess = max(50000, int(g["rate"]))
        self.results["generator_flat_out"] = g
        log("generator alone, flat out: %.0f frames/s" % g["rate"])
        for ph in self.phases:
            fn = getattr(self, "phase_" + ph.strip(), None)
            if not fn:
                raise BenchError("unknown phase %s" % ph)
            log("=== phase %s" % ph)
            t = time.monotonic()
            fn()
            self.results["phase_seconds"][ph] = round(time.monotonic() - t, 1)
            self.save()
        self.results["background_end"] = self.background()
        self.results["total_seconds"] = round(time.monotonic() - t0, 1)
        self.save()

    def save(self):
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=1, sort_keys=True)
        os.replace(tmp, self.out)


def cmd_run(a):
    b = Bench(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # bash starts us in the background with SIGINT ignored; ^C must stop us
    signal.signal(signal.SIGINT, on_signal)
    try:
        b.do()
    except KeyboardInterrupt as e:
        log("interrupted (%s)" % (e or "SIGINT"))
        b.save()
        return 130
    except (BenchError, subprocess.SubprocessError, OSError) as e:
        log("FAILED: %s" % e)
        b.save()
        return 1
    finally:
        b.cleanup()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--build", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--servers-env", required=True)
    r.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--md", required=True)
    p.add_argument("--png")
    p.add_argument("--gnuplot", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "loss.gp"))
    p.add_argument("--runtime", help="wall-clock seconds of the whole bench, for the report")
    a = ap.parse_args()
    if a.cmd == "run":
        return cmd_run(a)
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import report
    return report.main(a)


if __name__ == "__main__":
    sys.exit(main())
