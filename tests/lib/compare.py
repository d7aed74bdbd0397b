#!/usr/bin/python3
"""Ground-truth comparator: MariaDB general log vs. mrte queue dump.

Usage:
    compare.py [options] GENERAL_LOG_TSV QUEUE_DUMP_TSV

GENERAL_LOG_TSV  (tests/lib/servers.sh general_log_dump), one row per log entry
                 in server order:   thread_id<TAB>command_type<TAB>HEX(argument)
QUEUE_DUMP_TSV   (decoder tool), one reassembled client packet per line in
                 queue order:       SRC_IP:SRC_PORT<TAB>MYSQL_SEQ<TAB>KIND<TAB>HEX_PAYLOAD
                 HEX_PAYLOAD is the packet payload without the 4-byte header.
Blank lines and lines starting with '#' are ignored in both files.

Sessions: the log is grouped by thread_id, the dump by SRC_IP:SRC_PORT (a
HANDSHAKE on an address that already carried packets starts a new session
"ADDR#2", "ADDR#3", ...: client ports get reused).  Kept statements:
  log:  Query -> its text, Init DB -> INIT_DB <db>   (Connect/Quit/... only select threads;
        an Init DB row "Access denied for user 'u'@'h' to database 'DB'", which
        is what the server logs for a refused COM_INIT_DB, counts as INIT_DB DB)
  dump: QUERY -> payload[1:], INIT_DB -> INIT_DB payload[1:]
Query texts are normalised like the server does before logging (leading
whitespace, trailing whitespace and ';' stripped) unless --exact.
Sessions without any kept statement are not counted (reported as a note).

Each log session is paired with the dump session sharing the most statements
(multiset overlap; greedy on best scores, every dump session used at most
once).  For each pair the two sequences are aligned (Myers diff); then
  missing      = log statements absent from the dump
  extra        = dump statements whose text never occurs in the log session
  duplicated   = further copies in the dump of a text that does occur in the log session
  out-of-order = statements present on both sides but at a different place
                 (a deleted/inserted pair with the same text in the alignment)
Statements of unmatched log sessions count as missing, those of unmatched dump
sessions as extra.

Exit status: 0 when every log session has a dump session with exactly the same
statement sequence and no dump session with statements is left unmatched;
1 otherwise; 2 on usage or input-format errors.
A one-line summary is always printed last:
  sessions: N log, M dump, matched K; statements: X log, Y dump, missing A, extra B, duplicated C, out-of-order D
"""

import argparse
import collections
import re
import sys

KINDS = {"HANDSHAKE", "AUTH", "QUERY", "INIT_DB", "QUIT", "PING", "FIELD_LIST",
         "STMT_PREPARE", "STMT_EXECUTE", "OTHER"}
COM_INIT_DB = 0x02
COM_QUERY = 0x03
WS = b" \t\n\r\v\f"

# MariaDB logs a COM_INIT_DB that fails its access check with the error text
# instead of the database name (observed on 10.11):
#   Init DB  Access denied for user 'sbtest'@'127.0.0.1' to database 'nonexistent'
DENIED_INIT_DB = re.compile(rb"^Access denied for user '.*'@'.*' to database '(.*)'$", re.S)

Q = "Q"      # statement kinds inside the comparator
I = "I"


class InputError(Exception):
    pass


def open_text(path):
    if path == "-":
        return sys.stdin
    return open(path, "r", encoding="ascii", errors="strict", newline="\n")


def data_lines(path):
    """Yield (lineno, fields) for non-comment, non-blank lines."""
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            yield n, line.split("\t")


def unhex(s, path, n):
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise InputError("%s:%d: bad hex field" % (path, n))


def norm_query(b, exact):
    if exact:
        return b
    return b.lstrip(WS).rstrip(WS + b";")


# ---------------------------------------------------------------- inputs

class Session:
    __slots__ = ("name", "stmts", "user", "packets", "ids")

    def __init__(self, name):
        self.name = name
        self.stmts = []          # list of (kind, bytes)
        self.user = None         # bytes or None (unknown)
        self.packets = 0
        self.ids = []


def read_log(path, args):
    sessions = collections.OrderedDict()
    for n, f in data_lines(path):
        if len(f) != 3:
            raise InputError("%s:%d: expected 3 tab-separated fields, got %d" % (path, n, len(f)))
        tid, ctype, hx = f
        if not tid.strip().isdigit():
            raise InputError("%s:%d: thread_id is not a number: %r" % (path, n, tid))
        arg = unhex(hx, path, n)
        s = sessions.get(tid)
        if s is None:
            s = sessions[tid] = Session("thread " + tid)
        if ctype == "Connect":
            s.user = arg.split(b"@", 1)[0] if b"@" in arg else None
        elif ctype == "Query":
            s.stmts.append((Q, norm_query(arg, args.exact)))
        elif ctype == "Init DB":
            if not args.ignore_init_db:
                m = DENIED_INIT_DB.match(arg)
                s.stmts.append((I, m.group(1) if m else arg))
    return list(sessions.values())


def handshake_user(payload):
    """User name from a HandshakeResponse41 (or 320) payload, None if absent."""
    if len(payload) < 4:
        return None
    caps = int.from_bytes(payload[0:2], "little")
    if caps & 0x0200:                         # CLIENT_PROTOCOL_41
        off = 4 + 4 + 1 + 23
    else:                                     # HandshakeResponse320
        off = 2 + 3
    if len(payload) <= off:                   # e.g. an SSLRequest: no user yet
        return None
    end = payload.find(b"\x00", off)
    if end < 0:
        return None
    return payload[off:end]


def read_dump(path, args, warnings):
    sessions = []
    current = {}                 # addr -> Session
    count = collections.Counter()
    for n, f in data_lines(path):
        if len(f) != 4:
            raise InputError("%s:%d: expected 4 tab-separated fields, got %d" % (path, n, len(f)))
        addr, seq, kind, hx = f
        if kind not in KINDS:
            raise InputError("%s:%d: unknown KIND %r" % (path, n, kind))
        if not seq.strip().isdigit():
            raise InputError("%s:%d: MYSQL_SEQ is not a number: %r" % (path, n, seq))
        payload = unhex(hx, path, n)
        s = current.get(addr)
        if kind == "HANDSHAKE" and s is not None and s.packets:
            s = None                           # address reused: new session
        if s is None:
            count[addr] += 1
            name = addr if count[addr] == 1 else "%s#%d" % (addr, count[addr])
            s = current[addr] = Session(name)
            sessions.append(s)
        s.packets += 1
        if kind == "HANDSHAKE":
            u = handshake_user(payload)
            if u is not None:
                s.user = u
        elif kind == "QUERY":
            if not payload or payload[0] != COM_QUERY:
                warnings.append("%s:%d: QUERY payload does not start with 0x03" % (path, n))
            s.stmts.append((Q, norm_query(payload[1:], args.exact)))
        elif kind == "INIT_DB":
            if not payload or payload[0] != COM_INIT_DB:
                warnings.append("%s:%d: INIT_DB payload does not start with 0x02" % (path, n))
            if not args.ignore_init_db:
                s.stmts.append((I, payload[1:]))
    return sessions


# ---------------------------------------------------------------- alignment

def myers(a, b, max_d):
    """Shortest edit script between int lists a and b.

    Returns a list of ops ('=', i, j) / ('-', i) / ('+', j) in order, or None
    if the edit distance exceeds max_d.
    """
    n, m = len(a), len(b)
    dmax = min(n + m, max_d)
    off = dmax + 1
    v = [0] * (2 * dmax + 3)
    trace = []
    for d in range(dmax + 1):
        trace.append(v[off - d - 1: off + d + 2])      # window k in [-d-1, d+1]
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[off + k - 1] < v[off + k + 1]):
                x = v[off + k + 1]
            else:
                x = v[off + k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[off + k] = x
            if x >= n and y >= m:
                return _backtrack(trace, n, m)
    return None


def _backtrack(trace, n, m):
    ops = []
    x, y = n, m
    for d in range(len(trace) - 1, -1, -1):
        w = trace[d]                 # w[i] == V[k] with k = i - d - 1

        def V(k, w=w, d=d):
            return w[k + d + 1]
        k = x - y
        if k == -d or (k != d and V(k - 1) < V(k + 1)):
            pk = k + 1
        else:
            pk = k - 1
        px = V(pk) if d > 0 else 0
        py = px - pk if d > 0 else 0
        while x > px and y > py:
            ops.append(("=", x - 1, y - 1))
            x -= 1
            y -= 1
        if d > 0:
            if x == px:
                ops.append(("+", y - 1))
            else:
                ops.append(("-", x - 1))
        x, y = px, py
    ops.reverse()
    return ops


def lis_len(seq):
    import bisect
    tails = []
    for v in seq:
        i = bisect.bisect_left(tails, v)
        if i == len(tails):
            tails.append(v)
        else:
            tails[i] = v
    return len(tails)


class PairResult:
    def __init__(self):
        self.missing = []        # (log_index, stmt_id)
        self.extra = []          # (dump_index, stmt_id)
        self.duplicated = []     # (dump_index, stmt_id)
        self.moved = []          # (log_index, dump_index, stmt_id)
        self.approximate = False

    @property
    def clean(self):
        return not (self.missing or self.extra or self.duplicated or self.moved)


def compare_pair(a, b, max_d):
    """a, b: lists of statement ids (log, dump)."""
    r = PairResult()
    if a == b:
        return r
    # strip common prefix / suffix, then diff the middle
    p = 0
    while p < len(a) and p < len(b) and a[p] == b[p]:
        p += 1
    s = 0
    while s < len(a) - p and s < len(b) - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    am, bm = a[p:len(a) - s], b[p:len(b) - s]
    ops = myers(am, bm, max_d)
    in_log = set(a)
    if ops is not None:
        dels = [(i + p, am[i]) for op in ops if op[0] == "-" for i in (op[1],)]
        ins = [(j + p, bm[j]) for op in ops if op[0] == "+" for j in (op[1],)]
        pending = collections.defaultdict(collections.deque)
        for i, sid in dels:
            pending[sid].append(i)
        for j, sid in ins:
            if pending[sid]:
                r.moved.append((pending[sid].popleft(), j, sid))
            elif sid in in_log:
                r.duplicated.append((j, sid))
            else:
                r.extra.append((j, sid))
        for sid, q in pending.items():
            for i in q:
                r.missing.append((i, sid))
        r.missing.sort()
        r.moved.sort(key=lambda t: t[1])
        return r
    # too different for an exact alignment: multiset counts + LIS order estimate
    r.approximate = True
    ca, cb = collections.Counter(a), collections.Counter(b)
    seen = collections.Counter()
    for i, sid in enumerate(a):
        seen[sid] += 1
        if seen[sid] > cb[sid]:
            r.missing.append((i, sid))
    seen.clear()
    for j, sid in enumerate(b):
        seen[sid] += 1
        if seen[sid] > ca[sid]:
            (r.duplicated if ca[sid] else r.extra).append((j, sid))
    # order: k-th common occurrence on both sides, count moves = n - LIS
    pos = collections.defaultdict(list)
    seen.clear()
    for i, sid in enumerate(a):
        seen[sid] += 1
        if seen[sid] <= cb[sid]:
            pos[sid].append(i)
    seen.clear()
    mapped = []
    for j, sid in enumerate(b):
        seen[sid] += 1
        if seen[sid] <= ca[sid]:
            mapped.append((pos[sid][seen[sid] - 1], j, sid))
    keep = lis_len([m[0] for m in mapped])
    nmoved = len(mapped) - keep
    # we only know how many; report the first positions that break monotonicity
    best = -1
    for li, dj, sid in mapped:
        if li < best and len(r.moved) < nmoved:
            r.moved.append((li, dj, sid))
        best = max(best, li)
    while len(r.moved) < nmoved:               # pad the count if the scan under-reports
        r.moved.append((-1, -1, None))
    return r


# ---------------------------------------------------------------- matching

def match_sessions(log_s, dump_s):
    """Greedy: best multiset-overlap pairs first; each dump session once."""
    index = collections.defaultdict(list)      # sid -> [(dump_idx, count)]
    dump_counts = []
    for j, s in enumerate(dump_s):
        c = collections.Counter(s.ids)
        dump_counts.append(c)
        for sid, k in c.items():
            index[sid].append((j, k))
    cands = []
    for i, s in enumerate(log_s):
        c = collections.Counter(s.ids)
        score = collections.Counter()
        for sid, k in c.items():
            for j, kd in index.get(sid, ()):
                score[j] += min(k, kd)
        for j, sc in score.items():
            exact = 1 if s.ids == dump_s[j].ids else 0
            cands.append((-sc, -exact, abs(len(s.ids) - len(dump_s[j].ids)), i, j))
    cands.sort()
    used_l, used_d, pairs = set(), set(), []
    for _, _, _, i, j in cands:
        if i in used_l or j in used_d:
            continue
        used_l.add(i)
        used_d.add(j)
        pairs.append((i, j))
    pairs.sort()
    return pairs


# ---------------------------------------------------------------- report

def show(stmt, width):
    kind, b = stmt
    t = b.decode("utf-8", errors="backslashreplace")
    t = t.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if kind == I:
        t = "INIT_DB " + t
    if len(t) > width:
        t = t[:width - 3] + "..."
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Compare MariaDB general-log ground truth with an mrte queue dump.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="Exit status:" + __doc__.split("Exit status:", 1)[1])
    ap.add_argument("general_log", help="general_log_dump TSV (thread_id, command_type, HEX(argument))")
    ap.add_argument("queue_dump", help="decoder TSV (SRC_IP:SRC_PORT, MYSQL_SEQ, KIND, HEX_PAYLOAD)")
    ap.add_argument("--user", help="only dump sessions whose HANDSHAKE names this user (sessions "
                    "without a captured HANDSHAKE are kept); also selects log threads by their Connect row")
    ap.add_argument("--ignore-init-db", action="store_true", help="drop INIT_DB on both sides")
    ap.add_argument("--exact", action="store_true",
                    help="compare query bytes exactly (default: strip leading whitespace and "
                    "trailing whitespace/';' on both sides, as the server does before logging)")
    ap.add_argument("--max-diffs", type=int, default=5, help="differences shown per session (default 5)")
    ap.add_argument("--max-sessions", type=int, default=20,
                    help="sessions shown per section of the report (default 20)")
    ap.add_argument("--max-edit", type=int, default=4000,
                    help="largest edit distance aligned exactly; beyond it counts are "
                    "estimated from multisets (default 4000)")
    ap.add_argument("--width", type=int, default=100, help="statement display width")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the summary line")
    args = ap.parse_args(argv)

    warnings = []
    try:
        log_all = read_log(args.general_log, args)
        dump_all = read_dump(args.queue_dump, args, warnings)
    except (InputError, OSError, UnicodeDecodeError) as e:
        print("compare.py: error: %s" % e, file=sys.stderr)
        return 2

    notes = []
    if args.user is not None:
        u = args.user.encode()
        before = len(dump_all)
        dump_all = [s for s in dump_all if s.user is None or s.user == u]
        if before != len(dump_all):
            notes.append("--user %s: dropped %d dump session(s) of other users"
                         % (args.user, before - len(dump_all)))
        before = len(log_all)
        log_all = [s for s in log_all if s.user is None or s.user == u]
        if before != len(log_all):
            notes.append("--user %s: dropped %d log thread(s) of other users"
                         % (args.user, before - len(log_all)))

    log_s = [s for s in log_all if s.stmts]
    dump_s = [s for s in dump_all if s.stmts]
    if len(log_all) != len(log_s):
        notes.append("%d log thread(s) without statements not counted" % (len(log_all) - len(log_s)))
    if len(dump_all) != len(dump_s):
        notes.append("%d dump session(s) without statements not counted" % (len(dump_all) - len(dump_s)))

    # intern statements
    ids, stmts = {}, []
    for s in log_s + dump_s:
        s.ids = []
        for st in s.stmts:
            k = ids.get(st)
            if k is None:
                k = ids[st] = len(stmts)
                stmts.append(st)
            s.ids.append(k)

    pairs = match_sessions(log_s, dump_s)
    matched_l = {i for i, _ in pairs}
    matched_d = {j for _, j in pairs}
    un_l = [s for i, s in enumerate(log_s) if i not in matched_l]
    un_d = [s for j, s in enumerate(dump_s) if j not in matched_d]

    tot = collections.Counter()
    tot["log"] = sum(len(s.ids) for s in log_s)
    tot["dump"] = sum(len(s.ids) for s in dump_s)
    out = []
    bad_pairs = 0
    shown = 0
    for i, j in pairs:
        L, D = log_s[i], dump_s[j]
        r = compare_pair(L.ids, D.ids, args.max_edit)
        tot["missing"] += len(r.missing)
        tot["extra"] += len(r.extra)
        tot["duplicated"] += len(r.duplicated)
        tot["moved"] += len(r.moved)
        if r.clean:
            continue
        bad_pairs += 1
        if shown >= args.max_sessions:
            continue
        shown += 1
        out.append("%s <-> dump %s: %d vs %d statements: missing %d, extra %d, duplicated %d, "
                   "out-of-order %d%s" % (L.name, D.name, len(L.ids), len(D.ids), len(r.missing),
                                          len(r.extra), len(r.duplicated), len(r.moved),
                                          " (approximate: edit distance > %d)" % args.max_edit
                                          if r.approximate else ""))
        items = [(x[0], "  missing    log #%d: %s" % (x[0] + 1, show(stmts[x[1]], args.width)))
                 for x in r.missing[:args.max_diffs]]
        items += [(x[0], "  extra     dump #%d: %s" % (x[0] + 1, show(stmts[x[1]], args.width)))
                  for x in r.extra[:args.max_diffs]]
        items += [(x[0], "  duplicated dump #%d: %s" % (x[0] + 1, show(stmts[x[1]], args.width)))
                  for x in r.duplicated[:args.max_diffs]]
        items += [(x[1], "  out-of-order log #%d at dump #%d: %s"
                   % (x[0] + 1, x[1] + 1, show(stmts[x[2]], args.width)))
                  for x in r.moved[:args.max_diffs] if x[2] is not None]
        out.extend(t for _, t in items)

    tot["missing"] += sum(len(s.ids) for s in un_l)
    tot["extra"] += sum(len(s.ids) for s in un_d)
    for title, lst in (("unmatched log session", un_l), ("unmatched dump session", un_d)):
        for s in lst[:args.max_sessions]:
            out.append("%s %s: %d statement(s), first: %s"
                       % (title, s.name, len(s.ids), show(stmts[s.ids[0]], args.width)))
        if len(lst) > args.max_sessions:
            out.append("... %d more %ss" % (len(lst) - args.max_sessions, title))
    if bad_pairs > shown:
        out.append("... %d more matched session(s) with differences" % (bad_pairs - shown))

    ok = bad_pairs == 0 and not un_l and not un_d
    if not args.quiet:
        for w in warnings[:20]:
            print("warning: " + w)
        if len(warnings) > 20:
            print("warning: ... %d more" % (len(warnings) - 20))
        for n in notes:
            print("note: " + n)
        for line in out:
            print(line)
        print("RESULT: %s" % ("OK: every log session matched exactly" if ok else
                              "MISMATCH: %d matched session(s) differ, %d log and %d dump session(s) unmatched"
                              % (bad_pairs, len(un_l), len(un_d))))
    print("sessions: %d log, %d dump, matched %d; statements: %d log, %d dump, missing %d, "
          "extra %d, duplicated %d, out-of-order %d"
          % (len(log_s), len(dump_s), len(pairs), tot["log"], tot["dump"], tot["missing"],
             tot["extra"], tot["duplicated"], tot["moved"]))
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
