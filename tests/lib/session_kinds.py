#!/usr/bin/python3
"""session_kinds.py DUMP.tsv PORT: what one client's session looks like in a
mrte-dump --format=tsv file, as "KIND[:text]|KIND[:text]|..." in queue order
(INIT_DB:db, QUERY:sql, HANDSHAKE, QUIT, ...).  With --grep TEXT instead,
exit 0 if any packet of any session contains TEXT."""
import sys

if sys.argv[1] == "--grep":
    needle = sys.argv[3].encode()
    for line in open(sys.argv[2]):
        if not line.startswith("#") and needle in bytes.fromhex(line.rstrip("\n").split("\t")[3]):
            sys.exit(0)
    sys.exit(1)

dump, port = sys.argv[1], sys.argv[2]
out = []
for line in open(dump):
    if line.startswith("#"):
        continue
    addr, _seq, kind, hexp = line.rstrip("\n").split("\t")
    if addr.rsplit(":", 1)[1] != port:
        continue
    payload = bytes.fromhex(hexp)
    if kind in ("INIT_DB", "QUERY"):
        out.append("%s:%s" % (kind, payload[1:].decode(errors="replace")))
    else:
        out.append(kind)
print("|".join(out))
