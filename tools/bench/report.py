"""report.py -- results.json (from bench.py run) -> table, BENCHMARKS.md, chart.

Every figure is computed from the raw numbers of one run; ratios compare
backends measured in that same run.  Targets are reported as met or missed,
never enforced.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BACKENDS = ["xdp-native", "xdp-generic", "tc", "pcap"]
BPF_BACKENDS = ["xdp-native", "xdp-generic", "tc"]
NAMES = {"xdp-native": "XDP native", "xdp-generic": "XDP generic", "tc": "TC ingress",
         "pcap": "libpcap (agent)", "tcpdump": "tcpdump -w /dev/null", "none": "no capture"}
READ_TIMEOUT_MS = 100.0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, nd=1, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return ("%." + str(nd) + "f%s") % (v, unit)
    return "%s%s" % (v, unit)


def krate(v):
    return "n/a" if v is None else "%.0fk" % (v / 1000.0) if v >= 10000 else "%.1fk" % (v / 1000.0)


def ratio(a, b, nd=2):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, nd)


def mib(kb):
    return None if not kb else kb / 1024.0


class R:
    def __init__(self, res):
        self.res = res
        self.cfg = res.get("config", {})
        self.rates = self.cfg.get("rates", [])

    # -- CPU per packet ----------------------------------------------------------------

    @staticmethod
    def kern_per_pkt(run):
        """CPU per packet of the threads the receive path runs in: the
        generator (a veth delivers in the sender's softirq) and ksoftirqd."""
        if not run.get("sent"):
            return None
        return ((run["gen"].get("gen_cpu_s") or 0) + run["cpu"].get("ksoftirqd_cpu_s", 0)) / run["sent"] * 1e6

    @staticmethod
    def sys_per_pkt(run):
        return run["cpu"]["irq_softirq_s"] / run["sent"] * 1e6 if run.get("sent") else None

    def cpu_rows(self, sink, rate):
        """Per backend, medians over rounds: agent us/pkt, kernel (receive
        path) us/pkt, what the capture adds to it, total."""
        runs = [r for r in self.res.get("fixed", []) if r["target_rate"] == rate and r["traffic"] == "frames"]
        if sink == "null":
            runs = [r for r in runs if r["label"].startswith("cpu")]
        else:
            runs = [r for r in runs if r["label"] == "amqp"]
        base_runs = [r for r in runs if r["backend"] == "none"]
        base = med([self.kern_per_pkt(r) for r in base_runs])
        sys_base = med([self.sys_per_pkt(r) for r in base_runs])
        rows = {}
        for b in BACKENDS + (["tcpdump"] if sink == "null" else []):
            mine = [r for r in runs if r["backend"] == b]
            if not mine:
                continue
            agent = med([r["cpu"].get("agent_cpu_s", 0) / r["sent"] * 1e6 for r in mine])
            kern = med([self.kern_per_pkt(r) for r in mine])
            added = kern - base if (kern is not None and base is not None) else None
            sysk = med([self.sys_per_pkt(r) for r in mine])
            sys_added = (sysk - sys_base) if (sysk is not None and sys_base is not None) else None
            # the definition: agent utime+stime plus the irq+softirq
            # time (/proc/stat) the capture adds over the run without capture
            total = agent + max(0.0, sys_added) if sys_added is not None else None
            rows[b] = {"agent_us": agent, "kern_us": kern, "kern_added_us": added,
                       "total_us": total, "n": len(mine),
                       "sys_us": sysk, "sys_added_us": sys_added,
                       "achieved": med([r["achieved_rate"] for r in mine]),
                       "loss": sum((r["loss"] or 0) for r in mine),
                       "hwm": max((r.get("hwm_kb") or 0) for r in mine)}
        rows["_base"] = {"kern_us": base, "sys_us": sys_base,
                         "achieved": med([r["achieved_rate"] for r in base_runs])}
        return rows

    def latency(self, traffic, rate, backend):
        src = self.res.get("fixed", []) if traffic == "frames" else self.res.get("tcp", [])
        for r in src:
            if (r["backend"] == backend and r["target_rate"] == rate and r.get("sink") == "amqp"
                    and r["traffic"] == traffic):
                return r
        return None

    def search(self, backend, sink):
        for s in self.res.get("searches", []):
            if s["backend"] == backend and s["sink"] == sink:
                return s
        return None

    def peak_hwm(self, backend):
        runs = []
        for key in ("capacity", "fixed", "tcp", "burst"):
            runs += [r for r in self.res.get(key, []) if r["backend"] == backend]
        for r in self.res.get("profile", {}).get("bpf", []):
            if r["backend"] == backend:
                runs.append(r)
        for b, p in self.res.get("profile", {}).get("perf", {}).items():
            if b == backend:
                runs.append(p["run"])
        runs += [r for r in self.res.get("db", {}).get("runs", []) if r["backend"] == backend]
        v = [r.get("hwm_kb") or 0 for r in runs]
        return (max(v), len(runs)) if v else (None, 0)

    def burst(self, backend):
        for r in self.res.get("burst", []):
            if r["backend"] == backend:
                return r
        return None

    def db(self):
        runs = self.res.get("db", {}).get("runs", [])
        if not runs:
            return None
        off = med([r["tps"] for r in runs if r["config"] == "off"])
        out = []
        seen = []
        for r in runs:
            if r["config"] not in seen:
                seen.append(r["config"])
        order = ["off"] + [c for c in seen if c != "off"]
        for c in order:
            mine = [r for r in runs if r["config"] == c]
            tps = med([r["tps"] for r in mine])
            units = med([r.get("capture", {}).get("totals", {}).get("units") for r in mine])
            agent = med([r["cpu"].get("agent_cpu_s") for r in mine])
            out.append({"config": c, "backend": mine[0]["backend"], "sink": mine[0]["sink"],
                        "tps": tps, "all": [r["tps"] for r in mine],
                        "impact_pct": (100.0 * (1 - tps / off)) if (off and c != "off") else None,
                        "units": units, "agent_cpu_s": agent})
        return out


# ---------------------------------------------------------------------------
# the chart
# ---------------------------------------------------------------------------

def chart(res, png, gp, workdir):
    series = {}
    for r in res.get("capacity", []):
        if r.get("loss_pct") is None:
            continue
        sink = "file" if r["sink"] in ("file", "capture-only") else "amqp"
        series.setdefault(sink, {}).setdefault(r["backend"], []).append(
            (r["achieved_rate"] / 1000.0, r["loss_pct"], (r["target_rate"] or 0) / 1000.0))
    if not series:
        return False
    files, blocks = {}, {}
    for sink in ("amqp", "file"):
        # one file sorted by offered rate (top panels), one by target rate
        # without the flat-out steps (bottom panels)
        for kind, key in (("loss", lambda p: p[0]), ("target", lambda p: p[2])):
            path = os.path.join(workdir, "%s-%s.dat" % (kind, sink))
            with open(path, "w") as f:
                for b in BACKENDS + ["tcpdump"]:
                    pts = sorted((p for p in series.get(sink, {}).get(b, []) if kind == "loss" or p[2] > 0),
                                 key=key)
                    if not pts:
                        continue
                    f.write('"%s"\n' % NAMES[b])
                    for x, y, t in pts:
                        f.write("%.2f %.4f %.1f\n" % (x, y, t))
                    f.write("\n\n")
            files[kind + "-" + sink] = path
        blocks[sink] = sum(1 for b in BACKENDS + ["tcpdump"] if series.get(sink, {}).get(b))
    r = subprocess.run(["gnuplot", "-e", "amqp='%s'; file='%s'; amqp_t='%s'; file_t='%s'; out='%s'; n_amqp=%d; n_file=%d" % (
        files["loss-amqp"], files["loss-file"], files["target-amqp"], files["target-file"], png,
        blocks["amqp"], blocks["file"]), gp], capture_output=True, text=True, timeout=120)
    if r.returncode:
        sys.stderr.write("[report] gnuplot failed: %s\n" % r.stderr.strip()[-500:])
        return False
    return True


# ---------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------

def md_table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def build(res, runtime=None, png_name=None):
    R_ = R(res)
    m = res.get("machine", {})
    cfg = res.get("config", {})
    rates = cfg.get("rates", [50000, 200000])
    lo_rate, hi_rate = (min(rates), max(rates)) if rates else (None, None)
    L = []
    A = L.append
    total = runtime or res.get("total_seconds")
    A("# mrte-collector benchmarks")
    A("")
    A("Generated by `sudo make bench` (tools/bench.sh) on %s%s. Every number below comes from that one run; "
      "ratios compare backends measured in the same run on the same traffic. Nothing here is a pass/fail "
      "test: targets are reported as met or missed." % (m.get("date", "?"),
                                                         (" in %.0f s (%.1f min)" % (float(total), float(total) / 60)) if total else ""))
    A("")
    # ---- machine
    A("## Machine")
    A("")
    bg0, bg1 = res.get("background_start", {}), res.get("background_end", {})
    A(md_table(["", ""], [
        ["CPU", "%s x %s%s" % (m.get("nproc"), m.get("cpu_model"), (" (%s guest)" % m["hypervisor"]) if m.get("hypervisor") else "")],
        ["memory", m.get("memory")],
        ["kernel", "%s (%s), CONFIG_HZ-based tick accounting, USER_HZ %s" % (m.get("kernel"), m.get("os"), m.get("hz"))],
        ["agent", "%s (git %s)" % (m.get("agent"), m.get("git"))],
        ["bpftool / libbpf", m.get("bpftool")],
        ["libpcap / tcpdump", "%s / %s" % (m.get("libpcap"), m.get("tcpdump"))],
        ["RabbitMQ / Erlang", "%s / %s" % (m.get("rabbitmq"), m.get("erlang"))],
        ["MariaDB / sysbench", "%s / %s" % (m.get("mariadb"), m.get("sysbench"))],
        ["perf", m.get("perf")],
        ["background load", "%s%% of all CPUs busy before the bench, %s%% after (not ours: %s)" % (
            bg0.get("busy_pct_of_all_cpus", "?"), bg1.get("busy_pct_of_all_cpus", "?"),
            "; ".join(bg0.get("top", [])[:3]))],
        ["generator alone", "loadgen frames flat out, no capture: %s frames/s" % krate(res.get("generator_flat_out", {}).get("rate"))],
    ]))
    A("")
    if bg0.get("busy_pct_of_all_cpus", 0) > 15 or bg1.get("busy_pct_of_all_cpus", 0) > 15:
        A("**The machine was not idle**: other work used %s%% / %s%% of the CPUs before / after the bench. "
          "Absolute rates are lower than on an idle machine; the ratios between backends, measured "
          "alternately in the same run, are the figures to read." % (bg0.get("busy_pct_of_all_cpus"), bg1.get("busy_pct_of_all_cpus")))
        A("")

    # ---- summary
    A("## Summary")
    A("")
    A(summary_md(R_, lo_rate, hi_rate))
    A("")
    # ---- targets
    A("## Targets for the eBPF path")
    A("")
    A(targets_md(R_, lo_rate, hi_rate))
    A("")
    if png_name:
        A("## Loss vs offered rate")
        A("")
        A("![loss vs offered rate per backend](%s)" % png_name)
        A("")
        A("x: statements/s the generator actually offered (one 200-byte COM_QUERY per frame); y: statements "
          "lost (sent minus decoded by the consumer), in %. Left: agent -> RabbitMQ -> mrte-dump. Right: "
          "agent -> --sink=file -> mrte-dump (broker taken out), and tcpdump's own capture count.")
        A("")
    A(details_md(R_, lo_rate, hi_rate))
    A(profile_md(R_, hi_rate))
    A(findings_md(R_))
    A(method_md(res))
    return "\n".join(L) + "\n"


def summary_md(R_, lo, hi):
    head = ["", "capacity -> RabbitMQ", "capacity -> file", "CPU/pkt, target %s/s" % krate(lo),
            "CPU/pkt, target %s/s" % krate(hi),
            "peak RSS", "p50/p99 @%s" % krate(lo), "p50/p99 @%s" % krate(hi), "burst: last stmt", "DB tps vs off"]
    rows = []
    cpu_lo, cpu_hi = R_.cpu_rows("null", lo), R_.cpu_rows("null", hi)
    db = {d["backend"]: d for d in (R_.db() or []) if d["sink"] == "amqp"}
    for b in BACKENDS + ["tcpdump"]:
        sa = R_.search(b, "amqp") if b != "tcpdump" else None
        sf = R_.search(b, "file") if b != "tcpdump" else R_.search(b, "capture-only")
        cap = lambda s: "n/a" if not s else ("%s/s%s" % (krate(s["max_zero_loss_rate"]), "" if s["limited_by"] == "loss" else " *"))
        hw, _ = R_.peak_hwm(b)
        ll, lh = R_.latency("frames", lo, b), R_.latency("frames", hi, b)
        lat = lambda r: "n/a" if not r or "lat_p99_ms" not in r.get("consumer", {}) else "%.1f / %.1f ms" % (
            r["consumer"]["lat_p50_ms"], r["consumer"]["lat_p99_ms"])
        bu = R_.burst(b)
        bus = "n/a" if not bu or "lat_max_ms" not in bu.get("consumer", {}) else "%.0f ms" % bu["consumer"]["lat_max_ms"]
        d = db.get(b)
        cpu = lambda c: "n/a" if c.get(b, {}).get("total_us") is None else "%.2f us (at %s/s)" % (
            c[b]["total_us"], krate(c[b]["achieved"]))
        rows.append([NAMES[b], cap(sa), cap(sf), cpu(cpu_lo), cpu(cpu_hi),
                     fmt(mib(hw), 1, " MiB") if b != "tcpdump" else fmt(mib(hw), 1, " MiB"),
                     lat(ll), lat(lh), bus,
                     ("%+.1f%%" % -d["impact_pct"]) if d and d["impact_pct"] is not None else "n/a"])
    out = [md_table(head, rows), ""]
    out.append("Capacity: the highest offered rate (statements/s, one 200-byte statement per frame) at which "
               "every statement reached the consumer. `*`: not one statement was lost, even with the generator "
               "flat out -- the generator shares the 2 CPUs with the capture path (on a veth the receive path and "
               "the capture hooks run in the sender's softirq), the agent, the broker and the consumer, and could "
               "offer no more; the capacity is at least that. CPU/pkt: agent CPU (utime+stime) plus "
               "the irq+softirq time the capture adds (/proc/stat, over a run without capture at the same "
               "rate), per packet, agent publishing to --sink=null (capture cost alone); in brackets the rate "
               "actually offered. DB impact: sysbench transactions/s with "
               "the agent publishing to RabbitMQ vs off (negative = fewer).")
    out.append("")
    out.append(bottom_line(R_, lo, hi))
    out.append("")
    # ratios
    rr = []
    for b in BPF_BACKENDS:
        row = [NAMES[b] + " / libpcap"]
        for sink in ("amqp", "file"):
            a, p = R_.search(b, sink), R_.search("pcap", sink)
            row.append(fmt(ratio(a and a["max_zero_loss_rate"], p and p["max_zero_loss_rate"]), 2, "x"))
        for rate in (lo, hi):
            c = R_.cpu_rows("null", rate)
            row.append(fmt(ratio(c.get(b, {}).get("total_us"), c.get("pcap", {}).get("total_us")), 2, "x"))
        for rate in (lo, hi):
            c = R_.cpu_rows("amqp", rate)
            row.append(fmt(ratio(c.get(b, {}).get("total_us"), c.get("pcap", {}).get("total_us")), 2, "x"))
        hb, hp = R_.peak_hwm(b)[0], R_.peak_hwm("pcap")[0]
        row.append(fmt(ratio(hb, hp), 2, "x"))
        l1, l2 = R_.latency("frames", lo, b), R_.latency("frames", lo, "pcap")
        row.append(fmt(ratio(l1 and l1.get("consumer", {}).get("lat_p99_ms"),
                             l2 and l2.get("consumer", {}).get("lat_p99_ms")), 2, "x"))
        rr.append(row)
    c = R_.cpu_rows("null", lo), R_.cpu_rows("null", hi)
    rr.append(["libpcap (agent) / tcpdump", "", "",
               fmt(ratio(c[0].get("pcap", {}).get("total_us"), c[0].get("tcpdump", {}).get("total_us")), 2, "x"),
               fmt(ratio(c[1].get("pcap", {}).get("total_us"), c[1].get("tcpdump", {}).get("total_us")), 2, "x"),
               "", "", "", "", ""])
    out.append("Ratios (same run):")
    out.append("")
    out.append(md_table(["", "capacity -> RabbitMQ", "capacity -> file", "CPU/pkt null @%s" % krate(lo),
                         "CPU/pkt null @%s" % krate(hi), "CPU/pkt ->RabbitMQ @%s" % krate(lo),
                         "CPU/pkt ->RabbitMQ @%s" % krate(hi), "peak RSS", "p99 @%s" % krate(lo)], rr))
    out.append("")
    out.append("Capacity ratios above 1 and CPU/latency ratios below 1 favour the eBPF path.")
    return "\n".join(out)


def bottom_line(R_, lo, hi):
    """The claim under test, answered from this run's ratios."""
    parts = []
    for rate in (lo, hi):
        c = R_.cpu_rows("null", rate)
        x, p = c.get("xdp-native", {}), c.get("pcap", {})
        rt = ratio(x.get("total_us"), p.get("total_us"))
        if rt is not None:
            parts.append("%.2fx libpcap's CPU per packet at a %s/s target (%s; offered %s/s vs %s/s)" % (
                rt, krate(rate), "cheaper" if rt < 0.9 else "dearer" if rt > 1.1 else "about the same",
                krate(x.get("achieved")), krate(p.get("achieved"))))
    a, p = R_.search("xdp-native", "amqp"), R_.search("pcap", "amqp")
    cr = ratio(a and a["max_zero_loss_rate"], p and p["max_zero_loss_rate"])
    if not parts and cr is None:
        return ""
    txt = ("**Bottom line of this run** -- on the claim that the eBPF path is far cheaper and faster than "
           "libpcap: XDP native used " + "; ".join(parts))
    if cr is not None:
        txt += ", and reached %.2fx libpcap's loss-free rate to RabbitMQ" % cr
    return txt + ". The profile below shows where the time goes."


def verdict(ok):
    return "**met**" if ok else "**missed**"


def targets_md(R_, lo, hi):
    rows = []
    # 1 capacity to RabbitMQ
    best_b = max(BPF_BACKENDS, key=lambda b: (R_.search(b, "amqp") or {}).get("max_zero_loss_rate", 0))
    s = R_.search(best_b, "amqp") or {}
    cap = s.get("max_zero_loss_rate", 0)
    sf = R_.search(best_b, "file") or {}
    note = "best eBPF backend %s: %s statements/s with zero loss (%s)" % (NAMES[best_b], krate(cap), s.get("limited_by", "?"))
    if cap < 300000:
        note += "; that is %.0f%% of the target, %s/s short. To --sink=file: %s/s. Generator alone, flat out: %s/s" % (
            100.0 * cap / 300000, krate(300000 - cap), krate(sf.get("max_zero_loss_rate")) if sf else "n/a ",
            krate(R_.res.get("generator_flat_out", {}).get("rate")))
    rows.append(["zero loss to RabbitMQ at >= 300k statements/s (200-byte queries)", verdict(cap >= 300000), note])
    # 2 CPU per packet
    for rate in (lo, hi):
        c = R_.cpu_rows("null", rate)
        parts, ok = [], True
        for b in BPF_BACKENDS:
            rt = ratio(c.get(b, {}).get("total_us"), c.get("pcap", {}).get("total_us"))
            parts.append("%s %s" % (NAMES[b], fmt(rt, 2, "x")))
            if b == "xdp-native":
                ok = rt is not None and rt <= 1 / 3.0
                headline = rt
        rows.append(["CPU per captured packet <= 1/3 of libpcap's @%s/s (XDP native)" % krate(rate), verdict(ok),
                     "XDP native %s us vs libpcap %s us per packet; ratio %s" % (
                         fmt(c.get("xdp-native", {}).get("total_us"), 2), fmt(c.get("pcap", {}).get("total_us"), 2),
                         "; ".join(parts)) + ("" if ok or headline is None else
                                               " -- %.1fx over the 1/3 target" % (headline * 3))])
    # 3 RSS
    worst = max(BPF_BACKENDS, key=lambda b: R_.peak_hwm(b)[0] or 0)
    hw, n = R_.peak_hwm(worst)
    rows.append(["peak RSS <= 64 MiB, default settings, any offered rate", verdict(hw is not None and hw <= 64 * 1024),
                 "highest VmHWM of any eBPF agent run: %s (%s, over %d runs up to flat out)" % (
                     fmt(mib(hw), 1, " MiB"), NAMES[worst], n)])
    # 4 p99 at 50k
    r = R_.latency("frames", lo, "xdp-native")
    t = R_.latency("tcp", lo, "xdp-native")
    p99 = r and r.get("consumer", {}).get("lat_p99_ms")
    tp = t and t.get("consumer", {}).get("lat_p99_ms")
    note = ("XDP native, frames: p99 %s (p50 %s); real TCP sessions: p99 %s. Measured to the consumer "
            "(loadgen's send-time stamp -> mrte-dump receipt), so it includes the broker hop." % (
                fmt(p99, 2, " ms"), fmt(r and r.get("consumer", {}).get("lat_p50_ms"), 2, " ms"), fmt(tp, 2, " ms")))
    if p99 is not None and p99 > 5.0:
        note += (" Over by %.2f ms. A batch of 20 units fills in %.1f ms at this rate (4 publishers), so the tail "
                 "is waiting for the CPU: the agent's publishers, RabbitMQ and the consumer share 2 CPUs with "
                 "the generator%s." % (p99 - 5.0, 20 / (lo / 4.0) * 1000 if lo else 0,
                                       " and with other users' work" if R_.res.get("background_start", {}).get(
                                           "busy_pct_of_all_cpus", 0) > 15 else ""))
    rows.append(["p99 capture->broker latency <= 5 ms @%s/s" % krate(lo), verdict(p99 is not None and p99 <= 5.0), note])
    # 5 burst
    parts, ok = [], True
    for b in BPF_BACKENDS:
        bu = R_.burst(b)
        mx = bu and bu.get("consumer", {}).get("lat_max_ms")
        got = bu and bu.get("received")
        parts.append("%s max %s (%s/%s delivered)" % (NAMES[b], fmt(mx, 1, " ms"), got, bu and bu.get("sent")))
        if mx is None or mx > READ_TIMEOUT_MS + 5 or (bu and bu.get("loss")):
            ok = False
    rows.append(["last statement of a burst published within --read_timeout (100 ms)", verdict(ok),
                 "2,000 statements in 0.1 s, then silence; " + "; ".join(parts) +
                 ". Allowance: read_timeout + 5 ms for the broker hop to the consumer."])
    # 6 DB impact
    db = R_.db()
    if db:
        d = [x for x in db if x["backend"] in BPF_BACKENDS and x["sink"] == "amqp"]
        dn = [x for x in db if x["backend"] in BPF_BACKENDS and x["sink"] == "null"]
        if d:
            x = d[0]
            ok = x["impact_pct"] is not None and x["impact_pct"] <= 2.0
            secs = R_.res.get("db", {}).get("seconds") or 1
            note = "%s -> RabbitMQ: %s tps vs %s off (%+.1f%%)%s" % (
                NAMES[x["backend"]], fmt(x["tps"], 0), fmt(db[0]["tps"], 0), -x["impact_pct"],
                ("; to --sink=null (no broker work on this host): %+.1f%%" % -dn[0]["impact_pct"]) if dn else "")
            if not ok and x.get("agent_cpu_s") is not None:
                note += (". Where it goes: the agent itself used %.0f%% of one CPU (%.2f s per %d s run, %s units), "
                         "the rest is kernel work the capture adds on the packet path, paid in MariaDB's and "
                         "sysbench's context (the program runs on every frame of both directions on lo, and "
                         "generic XDP copies every cloned skb), and, for the RabbitMQ rows, the broker on the "
                         "same 2 CPUs" % (100.0 * x["agent_cpu_s"] / secs, x["agent_cpu_s"], secs,
                                          fmt(x.get("units"), 0)))
            rows.append(["database impact <= 2% fewer sysbench transactions/s", verdict(ok), note])
    return md_table(["target", "", "measured"], rows)


def details_md(R_, lo, hi):
    res = R_.res
    out = ["## Capacity searches", ""]
    out.append("Each step offers frames at a target rate for %s s, then counts what the consumer decoded. "
               "The rate climbs the grid %s until a step loses statements or the generator falls more than "
               "10%% below its target (the CPUs are saturated), then bisects %s times between the last clean "
               "and the first lossy rate; with no loss and no saturation a flat-out step ends it." % (
                   res["config"].get("step_seconds"), ", ".join(krate(g) for g in res["config"].get("grid", [])),
                   res["config"].get("bisect_steps")))
    out.append("")
    rows = []
    for r in res.get("capacity", []):
        cons = r.get("consumer", {})
        rows.append([NAMES[r["backend"]], r["sink"], r["label"], krate(r["target_rate"]) if r["target_rate"] else "flat out",
                     krate(r["achieved_rate"]), r["sent"], r["received"], r["loss"],
                     fmt(r["loss_pct"], 3, "%"), where_lost(r),
                     fmt(mib(r.get("hwm_kb")), 1), fmt(r["cpu"].get("agent_cpu_s"), 2),
                     fmt(cons.get("lat_p99_ms"), 1)])
    out.append(md_table(["backend", "sink", "step", "target", "offered", "sent", "received", "lost", "loss",
                         "where lost (agent counters)", "VmHWM MiB", "agent CPU s", "p99 ms"], rows))
    out.append("")
    rows = []
    for s in res.get("searches", []):
        rows.append([NAMES[s["backend"]], s["sink"], krate(s["max_zero_loss_rate"]) + "/s",
                     krate(s["first_loss_rate"]) + "/s" if s.get("first_loss_rate") else "-", s["limited_by"],
                     s["steps"], fmt(mib(s.get("max_hwm_kb")), 1, " MiB")])
    out.append(md_table(["backend", "sink", "max zero-loss rate", "first lossy rate", "search ended by", "steps", "peak RSS"], rows))
    out.append("")
    # CPU tables
    out.append("## CPU per packet at fixed rates")
    out.append("")
    out.append("Frames at a fixed rate for %s s; %d round(s), backends alternating within each round (order "
               "rotated per round); medians over rounds. **agent** = utime+stime of the capturing process "
               "(/proc/PID/stat) per packet. **irq+softirq** = the irq and softirq time of all CPUs "
               "(/proc/stat) per packet; **added** = that minus the same figure in a run without capture at the "
               "same rate: the kernel time the capture adds (XDP/TC programs, ring-buffer wake-ups, libpcap's "
               "packet copy). **total** = agent + added. Cross-check: the same difference taken over the CPU "
               "time of the threads the veth receive path runs in (the sending generator -- a veth delivers in "
               "the sender's softirq -- plus ksoftirqd), which other users' traffic cannot touch; at low rates "
               "it is swamped by the generator's own pacing cost (it sleeps between small batches; busier runs "
               "sleep less), so it reads low or negative there. On this shared, tick-accounted machine the "
               "kernel figures carry about +-2 us/packet of noise; the BPF run times under *Where the time "
               "goes* are exact for the programs." % (
                   res["config"].get("fixed_seconds"), res["config"].get("cpu_rounds", 1)))
    out.append("")
    for sink, title in (("null", "capture cost alone (agent --sink=null; tcpdump -w /dev/null)"),
                        ("amqp", "full path (agent -> RabbitMQ, consumer running; the broker's receive work on lo "
                                 "partly lands in the agent's context)")):
        out.append("**%s**" % title)
        out.append("")
        rows = []
        for rate in (lo, hi):
            c = R_.cpu_rows(sink, rate)
            base = c.pop("_base")
            rows.append(["no capture", krate(rate), krate(base.get("achieved")), "-", fmt(base.get("sys_us"), 3), "-",
                         "-", "-", "-", "-"])
            for b in BACKENDS + ["tcpdump"]:
                if b not in c:
                    continue
                x = c[b]
                rows.append([NAMES[b], krate(rate), krate(x["achieved"]), fmt(x["agent_us"], 3), fmt(x["sys_us"], 3),
                             fmt(x["sys_added_us"], 3), "**%s**" % fmt(x["total_us"], 3),
                             fmt(ratio(x["total_us"], c.get("pcap", {}).get("total_us")), 2, "x"),
                             fmt(x["kern_added_us"], 3), x["loss"]])
        out.append(md_table(["backend", "target", "offered", "agent us/pkt", "irq+softirq us/pkt", "added us/pkt",
                             "total us/pkt", "total / libpcap", "cross-check: receive-path threads added us/pkt",
                             "lost"], rows))
        out.append("")
    # latency tables
    out.append("## Latency and real TCP sessions")
    out.append("")
    out.append("Capture -> consumer latency: loadgen stamps `t=<CLOCK_MONOTONIC ns>` into every statement when it "
               "builds it; mrte-dump reads the clock when the message arrives from RabbitMQ (`--latency`). "
               "Frames: %d flows; TCP: %d connections through the server namespace's TCP stack to a sink." % (
                   res["config"].get("flows", 64), res["config"].get("connections", 8)))
    out.append("")
    rows = []
    for traffic in ("frames", "tcp"):
        for rate in (lo, hi):
            for b in ["none"] + BACKENDS:
                r = R_.latency(traffic, rate, b)
                if not r:
                    continue
                c = r.get("consumer", {})
                rows.append([traffic, NAMES[b], krate(rate), krate(r["achieved_rate"]), r["sent"],
                             r["received"] if r["received"] is not None else "-", r["loss"] if r["loss"] is not None else "-",
                             where_lost(r) if r.get("loss") else "-", fmt(c.get("lat_p50_ms"), 2), fmt(c.get("lat_p90_ms"), 2), fmt(c.get("lat_p99_ms"), 2),
                             fmt(c.get("lat_max_ms"), 1), fmt(mib(r.get("hwm_kb")), 1),
                             fmt(r["cpu"].get("agent_cpu_s"), 2)])
    out.append(md_table(["traffic", "backend", "target", "offered", "sent", "received", "lost", "where lost", "p50 ms", "p90 ms",
                         "p99 ms", "max ms", "VmHWM MiB", "agent CPU s"], rows))
    out.append("")
    rows = []
    for r in res.get("burst", []):
        c = r.get("consumer", {})
        rows.append([NAMES[r["backend"]], r["sent"], r["received"], fmt(c.get("lat_p50_ms"), 1),
                     fmt(c.get("lat_max_ms"), 1)])
    if rows:
        out.append("Burst (2,000 statements in 0.1 s, then nothing; the last batch leaves on the --read_timeout "
                   "flush of 100 ms):")
        out.append("")
        out.append(md_table(["backend", "sent", "received", "p50 ms", "max ms (last statement)"], rows))
        out.append("")
    # DB
    db = R_.db()
    if db:
        d = res["db"]
        out.append("## Database-host impact")
        out.append("")
        out.append("sysbench oltp_read_write (text protocol), %d threads, %d s per run, %d rounds; configurations "
                   "alternate within each round (order rotated per round); medians over rounds. MariaDB, "
                   "sysbench, RabbitMQ and the agent all run in namespace mrtb-srv, the agent on that namespace's "
                   "`lo`, so this is the worst case: the broker's own work lands on the database host too. The "
                   "--sink=null rows show the agent without any broker work." % (d["threads"], d["seconds"], d["rounds"]))
        out.append("")
        rows = []
        for x in db:
            rows.append([x["config"] if x["config"] == "off" else "%s -> %s" % (NAMES[x["backend"]], "RabbitMQ" if x["sink"] == "amqp" else "null"),
                         fmt(x["tps"], 1), " ".join("%.0f" % t for t in x["all"]),
                         ("%+.2f%%" % -x["impact_pct"]) if x["impact_pct"] is not None else "-",
                         x["units"] if x["units"] is not None else "-", fmt(x["agent_cpu_s"], 2)])
        out.append(md_table(["agent", "tps (median)", "tps per round", "vs off", "units published (median)", "agent CPU s"], rows))
        out.append("")
    return "\n".join(out)


def profile_md(R_, hi):
    prof = R_.res.get("profile", {})
    if not prof:
        return ""
    out = ["## Where the time goes", ""]
    rows = []
    for r in prof.get("bpf", []):
        for pid, st in (r.get("bpf") or {}).items():
            if st["run_cnt"]:
                rows.append([NAMES[r["backend"]], st["name"], st["run_cnt"], fmt(st["run_time_ns"] / st["run_cnt"], 0, " ns"),
                             fmt(r["cpu"].get("irq_softirq_s", 0) / r["sent"] * 1e9, 0, " ns"),
                             fmt(r["cpu"].get("agent_cpu_s", 0) / r["sent"] * 1e9, 0, " ns")])
    if rows:
        out.append("BPF program run time per packet (`kernel.bpf_stats_enabled=1` for these runs only; "
                   "`bpftool prog show` run_time_ns / run_cnt), frames at %s/s, --sink=null, next to the whole "
                   "irq+softirq time and the agent's CPU per packet in the same run:" % krate(hi))
        out.append("")
        out.append(md_table(["backend", "program", "runs", "run time / packet", "irq+softirq / packet (all)",
                             "agent / packet"], rows))
        out.append("")
    for b, p in prof.get("perf", {}).items():
        s = p.get("summary", {})
        r = p.get("run", {})
        out.append("**perf, %s -> RabbitMQ at %s/s** (offered %s/s, lost %s; `%s`):" % (
            NAMES[b], krate(r.get("target_rate")), krate(r.get("achieved_rate")), r.get("loss"),
            prof.get("perf_command", "perf record -a -g")))
        out.append("")
        if s.get("by_role"):
            out.append("All CPU samples (2 CPUs) by who ran: " + ", ".join(
                "%s %.1f%%" % (k, v) for v, k in s["by_role"]) + ".")
            out.append("")
        if s.get("threads"):
            out.append("Busiest threads: " + ", ".join("%s %.1f%%" % (c, v) for v, t, c, role in s["threads"][:12]
                                                      if "not ours" not in role) + ".")
            out.append("")
        if s.get("top"):
            out.append("Hottest symbols in our threads (the generator, agent, consumer, RabbitMQ and ksoftirqd; "
                       "percent of all samples):")
            out.append("")
            out.append(md_table(["self %", "command", "object", "symbol"],
                                [["%.2f" % v, c, d, sym] for v, c, d, sym in s["top"][:18]]))
            out.append("")
        if s.get("hot_chain"):
            out.append("Call chains into the hottest kernel symbol, `%s`:" % s.get("hot_symbol"))
            out.append("")
            out.append("```")
            out.extend(s["hot_chain"][:45])
            out.append("```")
            out.append("")
    out.append(analysis_md(R_, hi))
    return "\n".join(out)


def pcap_vs(R_, rate):
    c = R_.cpu_rows("null", rate)
    x, p = c.get("xdp-native", {}), c.get("pcap", {})
    if x.get("total_us") is None or p.get("total_us") is None:
        return ""
    return (" (in this run, target %s/s: libpcap %.2f us per packet at %s/s offered, XDP native %.2f us at %s/s)" % (
        krate(rate), p["total_us"], krate(p["achieved"]), x["total_us"], krate(x["achieved"])))


def analysis_md(R_, hi):
    """What the profile says, in words -- derived from this run's numbers."""
    prof = R_.res.get("profile", {})
    out = ["### Reading the profile", ""]
    px = prof.get("perf", {}).get("xdp-native", {}).get("summary", {})
    chain = "\n".join(px.get("hot_chain", []))
    top = px.get("top", [])
    ipi = sum(v for v, c, d, s in top if s in ("native_write_msr", "native_apic_msr_write", "x2apic_send_IPI",
                                                 "default_send_IPI_self", "irq_work_queue", "arch_irq_work_raise"))
    wake = sum(v for v, c, d, s in top if s in ("finish_task_switch.isra.0", "finish_task_switch",
                                                  "irqentry_exit_to_user_mode", "__schedule", "try_to_wake_up",
                                                  "do_epoll_wait", "ep_poll_callback", "_raw_spin_unlock_irqrestore"))
    if "bpf_ringbuf_output" in chain and "irq_work" in chain:
        out.append(
            "* The hottest kernel symbol in the XDP run, `%s` (%.1f%% of all samples with the related wake-up "
            "and context-switch symbols at about %.1f%% more), is reached from `bpf_ringbuf_output` -> "
            "`irq_work_queue`: with flags 0 the ring buffer wakes its consumer on every record the "
            "consumer has already caught up with, and each wake-up is an irq_work self-IPI -- on this KVM guest an "
            "x2APIC MSR write, i.e. a VM exit -- plus a wake-up and a context switch of the publisher "
            "thread. A publisher that keeps up is therefore woken once per packet, at any rate. libpcap's "
            "TPACKET_V3 ring wakes its reader once per block (or per timeout), so its cost per packet falls as "
            "the rate rises%s." % (px.get("hot_symbol"), ipi, wake, pcap_vs(R_, hi)))
        out.append(
            "* What would close the gap (agent change, not made here): write records with "
            "`BPF_RB_NO_WAKEUP` and wake the consumer explicitly (`BPF_RB_FORCE_WAKEUP`) only when "
            "`bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA)` passes a threshold (e.g. 64 KiB, or a batch's worth "
            "of records), with the publisher's epoll_wait bounded by a short timeout (about 1 ms, well inside "
            "--read_timeout) so that a quiet ring is still drained. That turns one IPI + wake-up per packet "
            "into one per batch, the same trade TPACKET_V3 makes for libpcap; the BPF program itself is then a "
            "few hundred ns (its run time above is mostly the wake-up).")
    elif top:
        out.append("* Top samples in the XDP native run: " + ", ".join("`%s` %.1f%% (%s)" % (s, v, c) for v, c, d, s in top[:6]) + ".")
    pp = prof.get("perf", {}).get("pcap", {}).get("summary", {})
    pchain = "\n".join(pp.get("hot_chain", []))
    if "eventfd_write" in pchain:
        out.append("* libpcap path: its hottest kernel symbol, `%s`, is reached from `eventfd_write`: the agent's "
                   "pcap reader thread hands packets to the publisher threads and signals an eventfd, i.e. wakes "
                   "a publisher, for (nearly) every packet -- the same per-packet wake-up pattern in user space. "
                   "tcpdump, which writes whole TPACKET_V3 blocks and wakes once per block, costs a small "
                   "fraction of it per packet (CPU table above)." % pp.get("hot_symbol"))
    for name, p in (("XDP native", px), ("libpcap", pp)):
        if p.get("by_role"):
            out.append("* %s run, all samples by who ran: %s." % (name, ", ".join(
                "%s %.1f%%" % (k, v) for v, k in p["by_role"])))
    out.append("")
    return "\n".join(out)


def method_md(res):
    cmds = res.get("commands", {})
    cfg = res.get("config", {})
    out = ["## How it was measured", ""]
    out.append("* Topology: namespaces `mrtb-cli` and `mrtb-srv` joined by the veth pair `mrtb-c` (10.201.0.1) "
               "<-> `mrtb-s` (10.201.0.2); the agent attaches to `mrtb-s` (native XDP is the driver path a real "
               "NIC would use). RabbitMQ and MariaDB (tests/lib/servers.sh) listen on the loopback of "
               "`mrtb-srv`. Frames go to 10.201.0.99, an address configured nowhere: `mrtb-srv` (ip_forward=0) "
               "drops them after the capture hook, so no reply traffic and no TCP stack cost (loadgen.md). "
               "The agent runs with default settings except the interface, --capture, the sink and "
               "--pin_dir=/sys/fs/bpf/mrtb (a private bpffs in its own mount namespace), exchange `%s`." % (
                   cfg.get("exchange"),))
    out.append("* Loss = statements sent (loadgen's count, only what send()/sendmmsg accepted) minus COM_QUERY "
               "packets that mrte-dump decoded with the player's checks (RabbitMQ queue `%s`, deleted and declared "
               "again before every step; or the --sink=file output). tcpdump: packets it wrote. The agent's own "
               "drop counters (its exit log) say where anything was lost." % cfg.get("queue"))
    out.append("* CPU: /proc/stat and /proc/PID/stat sampled at the start of the traffic and 0.25 s after it "
               "(the agent's last batch); tick-based accounting (no IRQ_TIME_ACCOUNTING), so irq/softirq time is "
               "sampled and noisy at low rates. Peak RSS: VmHWM of the agent just before it is stopped.")
    out.append("* Runtimes per phase (s): " + ", ".join("%s %s" % kv for kv in res.get("phase_seconds", {}).items()))
    out.append("")
    out.append("Commands (upper-case words vary per step):")
    out.append("")
    out.append("```")
    if isinstance(cmds, list):
        for label, cmd in cmds:
            out.append("# " + label)
            out.append(cmd)
    else:   # results from an older bench.py
        for k in sorted(cmds):
            out.append("# %s" % k)
            out.append(cmds[k])
    out.append("```")
    out.append("")
    return "\n".join(out)


def where_lost(r):
    c = r.get("capture", {})
    det, tot = c.get("detail", {}), c.get("totals", {})
    where = ["%s=%d" % kv for kv in sorted(c.get("not_published", {}).items())]
    for k in ("ring_full", "queue_full", "truncated", "mq_returned"):
        if det.get(k) and k not in c.get("not_published", {}):
            where.append("%s=%d" % (k, det[k]))
    for k in ("if_dropped", "mq_errors"):
        if tot.get(k) and k not in c.get("not_published", {}):
            where.append("%s=%d" % (k, tot[k]))
    if c.get("dropped_by_kernel"):
        where.append("kernel_drop=%d" % c["dropped_by_kernel"])
    if r.get("gen", {}).get("if_tx_dropped"):
        where.append("veth_tx_dropped=%d" % r["gen"]["if_tx_dropped"])
    return " ".join(where) or "-"


def findings_md(R_):
    """Things the numbers show beyond the targets: losses below capacity,
    memory over the budget, very late statements."""
    res = R_.res
    runs = []
    for key in ("fixed", "tcp", "burst", "capacity"):
        runs += [(key, r) for r in res.get(key, [])]
    runs += [("profile", p["run"]) for p in res.get("profile", {}).get("perf", {}).values()]
    out = []
    for key, r in runs:
        if r["backend"] in ("none", "tcpdump"):
            continue
        what = "%s -> %s, %s %s (%s)" % (NAMES[r["backend"]], r.get("sink"), r["traffic"],
                                          ("at " + krate(r["target_rate"]) + "/s") if r["target_rate"] else "flat out", key)
        if r.get("loss"):
            out.append("* %s lost %d of %d statements (%s)." % (what, r["loss"], r["sent"], where_lost(r)))
        c = r.get("consumer", {})
        if c.get("lat_max_ms", 0) > 1000:
            out.append("* %s: statements up to %.1f s late (p99 %.0f ms)." % (what, c["lat_max_ms"] / 1000.0,
                                                                              c.get("lat_p99_ms", 0)))
        if (r.get("hwm_kb") or 0) > 64 * 1024:
            out.append("* %s: peak RSS %.1f MiB, above --max_mem_mb=64." % (what, r["hwm_kb"] / 1024.0))
        mp = r.get("consumer", {}).get("rejected") or r.get("consumer", {}).get("broken")
        if mp:
            out.append("* %s: the consumer rejected %s bodies / broken packets." % (what, mp))
    if not out:
        return ""
    return "\n".join(["## Other findings", "",
                       "Runs where something other than the targets stands out (all in the tables above):", ""]
                      + out[:25] + ([""] if len(out) <= 25 else ["* ... and %d more" % (len(out) - 25), ""]))


# ---------------------------------------------------------------------------
# stdout table
# ---------------------------------------------------------------------------

def text_table(res):
    R_ = R(res)
    rates = res.get("config", {}).get("rates", [50000, 200000])
    lo, hi = min(rates), max(rates)
    cpu_lo, cpu_hi = R_.cpu_rows("null", lo), R_.cpu_rows("null", hi)
    dbm = {d["backend"]: d for d in (R_.db() or []) if d["sink"] == "amqp"}
    head = ["backend", "cap->RMQ", "cap->file", "us/pkt@%s" % krate(lo), "us/pkt@%s" % krate(hi),
            "RSS MiB", "p99@%s ms" % krate(lo), "p99@%s ms" % krate(hi), "burst max", "DB tps"]
    rows = [head]
    for b in BACKENDS + ["tcpdump"]:
        sa = R_.search(b, "amqp") if b != "tcpdump" else None
        sf = R_.search(b, "file") if b != "tcpdump" else R_.search(b, "capture-only")
        ll, lh = R_.latency("frames", lo, b), R_.latency("frames", hi, b)
        bu = R_.burst(b)
        d = dbm.get(b)
        rows.append([b, krate(sa["max_zero_loss_rate"]) if sa else "-", krate(sf["max_zero_loss_rate"]) if sf else "-",
                     fmt(cpu_lo.get(b, {}).get("total_us"), 2), fmt(cpu_hi.get(b, {}).get("total_us"), 2),
                     fmt(mib(R_.peak_hwm(b)[0]), 1),
                     fmt(ll and ll.get("consumer", {}).get("lat_p99_ms"), 2) if ll else "-",
                     fmt(lh and lh.get("consumer", {}).get("lat_p99_ms"), 2) if lh else "-",
                     fmt(bu and bu.get("consumer", {}).get("lat_max_ms"), 0) if bu else "-",
                     ("%+.1f%%" % -d["impact_pct"]) if d and d["impact_pct"] is not None else "-"])
    w = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    out = "\n".join(lines)
    rr = []
    for b in BPF_BACKENDS:
        a = [ratio(cpu_lo.get(b, {}).get("total_us"), cpu_lo.get("pcap", {}).get("total_us")),
             ratio(cpu_hi.get(b, {}).get("total_us"), cpu_hi.get("pcap", {}).get("total_us"))]
        s1, s2 = R_.search(b, "amqp"), R_.search("pcap", "amqp")
        c = ratio(s1 and s1["max_zero_loss_rate"], s2 and s2["max_zero_loss_rate"])
        rr.append("%s/pcap: CPU/pkt %s @%s, %s @%s; capacity->RabbitMQ %s" % (
            b, fmt(a[0], 2, "x"), krate(lo), fmt(a[1], 2, "x"), krate(hi), fmt(c, 2, "x")))
    return out + "\n" + "\n".join(rr)


def main(a):
    res = json.load(open(a.results))
    png_ok = False
    if a.png:
        with tempfile.TemporaryDirectory(prefix="mrtb-report.") as d:
            png_ok = chart(res, a.png, a.gnuplot, d)
    md = build(res, a.runtime, os.path.basename(a.png) if png_ok else None)
    with open(a.md, "w") as f:
        f.write(md)
    print(text_table(res))
    print()
    print("wrote %s%s" % (a.md, (" and " + a.png) if png_ok else ""))
    return 0
