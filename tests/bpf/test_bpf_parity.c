/* test_bpf_parity.c -- one capture file, two capture paths, the same records
 * and the same counters.
 *
 * The frames of test_bpf_progs.c (frames.h builds them byte by byte) are
 * written to a real pcap file -- pcap_open_dead() + pcap_dump_open() on a
 * mkstemp() path under /tmp -- and read back with pcap_open_offline().
 * Every frame read back then goes
 *   - through the pcap path: pcap_frame_records(), the agent's own code
 *     from a libpcap frame to records (the same shared parser, a memcpy
 *     loader), with a fresh counter block;
 *   - through the XDP program, and through the TC program where the
 *     kernel's test mode takes the frame, with bpf_prog_test_run_opts():
 *     every ring is consumed and the per-CPU counters give a delta.
 * The record lists must be identical -- every header field but ts_ns, the
 * payload bytes, and the ring (the kernel's ring against
 * mrte_flow_hash() % thread_count, the queue the pcap reader would push
 * to) -- and so must every field of struct mrte_kstats.  Each frame also
 * lands in the outcome the table says, and a matched segment's records are
 * checked against the frame itself (sequence numbers, SYN/FIN placement,
 * payload bytes), so two paths that were wrong the same way still fail.
 *
 * Then:
 *   - the same frames in a file with a 1024-byte snapshot length: a
 *     segment whose payload was cut is counted drop_truncated and publishes
 *     nothing on the pcap path, while its full frame publishes through XDP;
 *     a cut that falls after the IP datagram (Ethernet padding) changes
 *     nothing, nor does one in a frame the headers already decide;
 *   - a few frames cut close to their headers, one caplen each: a cut
 *     that leaves every published byte changes nothing (a SYN without its
 *     TCP options is still the kernel's flow event), a cut payload is
 *     drop_truncated, a cut fixed TCP header short_frame;
 *   - the IP packets of those frames under every other link type the pcap
 *     path reads (Linux cooked v1 and v2, raw IP, IPv4, IPv6, BSD loopback
 *     in both byte orders, OpenBSD loopback), each in its own file: the
 *     same records and counters as the Ethernet frame.
 *
 * What the kernel's test mode imposes is described in test_bpf_progs.c:
 * frames of at least 14 bytes only; TC refuses frames above a size limit
 * (measured here, 3712 bytes on the machine this was written on) and
 * untagged IPv4 frames under 34 bytes / IPv6 under 54.  Those TC refusals
 * are asserted (EINVAL, nothing counted, nothing written), not skipped.
 *
 * Needs root (BPF maps and programs, BPF_PROG_TEST_RUN): as any other user
 * every test fails saying so -- never skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/pkt_cls.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* libpcap's classic-BPF definitions (struct bpf_insn) clash with the
 * kernel's eBPF ones that <bpf/bpf.h> brings in; this test needs only the
 * capture-file API and the DLT_ values. */
#define PCAP_DONT_INCLUDE_PCAP_BPF_H
#include <pcap/dlt.h>
#include <pcap/pcap.h>

#include "capture_impl.h"
#include "config.h"
#include "frames.h"
#include "mrte.h"
#include "pcap_parse.h"

#define NRINGS 3 /* not a power of two: a mask in place of % would show */
#define ETH_HDR 14
#define FILE_SNAPLEN 262144
#define CUT_SNAPLEN 1024
#define MAX_FRAMES 1024
#define MAX_RECS 8 /* a 65535-byte datagram is 4 records */

/* ---- failing with context --------------------------------------------------- */

static char cur_case[200] = "";

#define CHECK(cond, ...)                                                                          \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			print_error("%s: ", cur_case);                                            \
			print_error(__VA_ARGS__);                                                 \
			print_error("\n    failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);     \
			fail();                                                                   \
		}                                                                                 \
	} while (0)

#define CASE(...) snprintf(cur_case, sizeof(cur_case), __VA_ARGS__)

/* ---- the counters, every field by name ----------------------------------------- */

#define K(f) {#f, offsetof(struct mrte_kstats, f)}
static const struct {
	const char *name;
	size_t off;
} kfields[] = {
	K(frames),         K(not_matched),    K(short_frame),   K(matched),
	K(no_payload),     K(flow_events),    K(segments),      K(records),
	K(bytes),          K(drop_ring_full), K(drop_fragment), K(drop_oversize),
	K(drop_malformed), K(drop_ipv6),      K(drop_no_ring),
};
#undef K
#define NKFIELDS (sizeof(kfields) / sizeof(kfields[0]))
_Static_assert(NKFIELDS == sizeof(struct mrte_kstats) / sizeof(__u64),
	       "a counter was added to struct mrte_kstats: list it in kfields");

/* The outcomes: a frame lands in exactly one; all but the first two are
 * also counted in `matched`. */
static const char *const outcome_names[] = {
	"not_matched", "short_frame",   "no_payload",     "flow_events",
	"segments",    "drop_ring_full", "drop_fragment", "drop_oversize",
	"drop_malformed", "drop_ipv6",  "drop_no_ring",
};
#define NOUTCOMES (sizeof(outcome_names) / sizeof(outcome_names[0]))

static uint64_t kget(const struct mrte_kstats *k, const char *name)
{
	for (size_t i = 0; i < NKFIELDS; i++) {
		if (strcmp(kfields[i].name, name) == 0) {
			uint64_t v;

			memcpy(&v, (const char *)k + kfields[i].off, sizeof(v));
			return v;
		}
	}
	fail_msg("no counter named %s", name);
	return 0;
}

static uint64_t kat(const struct mrte_kstats *k, size_t i)
{
	uint64_t v;

	memcpy(&v, (const char *)k + kfields[i].off, sizeof(v));
	return v;
}

/* Through __u64, the fields' own type: uint64_t is unsigned long here, and
 * writing __u64 fields through it is an aliasing violation the optimiser
 * may act on. */
static void kadd(struct mrte_kstats *sum, const struct mrte_kstats *d)
{
	__u64 *s = (__u64 *)sum;
	const __u64 *x = (const __u64 *)d;

	for (size_t i = 0; i < sizeof(*sum) / sizeof(__u64); i++)
		s[i] += x[i];
}

static void kdelta(struct mrte_kstats *d, const struct mrte_kstats *a, const struct mrte_kstats *b)
{
	const __u64 *pa = (const __u64 *)a, *pb = (const __u64 *)b;
	__u64 *pd = (__u64 *)d;

	for (size_t i = 0; i < sizeof(*d) / sizeof(__u64); i++)
		pd[i] = pb[i] - pa[i];
}

static bool kzero(const struct mrte_kstats *k)
{
	static const struct mrte_kstats zero;

	return memcmp(k, &zero, sizeof(zero)) == 0;
}

/* Every field of the two blocks agrees. */
static void same_counters(const char *an, const struct mrte_kstats *a, const char *bn,
			  const struct mrte_kstats *b)
{
	for (size_t i = 0; i < NKFIELDS; i++)
		CHECK(kat(a, i) == kat(b, i), "counter %s: %s moved by %llu, %s by %llu",
		      kfields[i].name, an, (unsigned long long)kat(a, i), bn,
		      (unsigned long long)kat(b, i));
}

/* ---- records ------------------------------------------------------------------ */

struct got {
	unsigned ring;
	struct mrte_rec rec;
	uint8_t data[MRTE_CHUNK];
};

struct recs {
	size_t n, lost, oversized;
	struct got r[MAX_RECS];
};

static void recs_add(struct recs *l, unsigned ring, const struct mrte_rec *rec,
		     const uint8_t *payload)
{
	struct got *g;

	if (l->n == MAX_RECS) {
		l->lost++;
		return;
	}
	g = &l->r[l->n++];
	g->ring = ring;
	g->rec = *rec;
	if (rec->len > MRTE_CHUNK) {
		l->oversized++;
		return;
	}
	if (rec->len)
		memcpy(g->data, payload, rec->len);
}

static void recs_reset(struct recs *l)
{
	l->n = l->lost = l->oversized = 0;
}

/* The pcap reader pushes a record into the queue of publisher
 * mrte_flow_hash(saddr, sport) % thread_count (emit_to_queue()); that is
 * the ring index its records are compared under. */
static int on_pcap_record(void *ctx, const struct mrte_rec *rec, const uint8_t *payload)
{
	struct recs *l = ctx;

	if (rec->len && !payload) {
		l->oversized++; /* a payload record without its bytes */
		return 0;
	}
	recs_add(l, mrte_flow_hash(rec->saddr, rec->sport) % NRINGS, rec, payload);
	return 0;
}

static struct recs *ring_sink; /* where the ring consumers put records */
static unsigned ring_ids[NRINGS] = {0, 1, 2};

static int on_ring_record(void *ctx, const struct mrte_rec *rec, const uint8_t *payload)
{
	recs_add(ring_sink, *(const unsigned *)ctx, rec, payload);
	return 0;
}

/* Identical lists: every field but ts_ns, the payload, the ring. */
static void same_records(const char *an, const struct recs *a, const char *bn,
			 const struct recs *b)
{
	CHECK(a->n == b->n, "%s gave %zu record(s), %s %zu", an, a->n, bn, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct got *x = &a->r[i], *y = &b->r[i];

#define SAME(f)                                                                                   \
	CHECK(x->f == y->f, "record %zu: %s has " #f " %llu (%#llx), %s %llu (%#llx)", i, an,     \
	      (unsigned long long)x->f, (unsigned long long)x->f, bn, (unsigned long long)y->f,   \
	      (unsigned long long)y->f)
		SAME(ring);
		SAME(rec.saddr);
		SAME(rec.daddr);
		SAME(rec.seq);
		SAME(rec.sport);
		SAME(rec.dport);
		SAME(rec.len);
		SAME(rec.flags);
		SAME(rec.chunk);
		SAME(rec.seg_len);
#undef SAME
		if (memcmp(x->data, y->data, x->rec.len) != 0) {
			size_t j = 0;

			while (x->data[j] == y->data[j])
				j++;
			CHECK(false, "record %zu: payload byte %zu is %#x from %s, %#x from %s", i, j,
			      x->data[j], an, y->data[j], bn);
		}
	}
}

/* ---- the crafted frames -------------------------------------------------------- */

struct tframe {
	char name[120];
	uint8_t *data;
	size_t len;
	const char *outcome; /* the one kstats outcome it must land in */
	size_t nrecs;        /* records it must give */
	/* From the spec (meaningful for matched segments and flow events): */
	struct spec s;
	size_t payload_off, payload_len;
	size_t ip_end; /* where the IP datagram ends in the frame, by its header */
	/* Where the IP packet starts, for the other link types; -1: no IP
	 * packet a link header could announce as such. */
	long l3;
	uint16_t l3_proto; /* 0x0800 / 0x86dd */
};

static struct tframe tab[MAX_FRAMES];
static size_t ntab;

static struct tframe *add_frame(size_t len, const char *outcome, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static struct tframe *add_frame(size_t len, const char *outcome, const char *fmt, ...)
{
	struct tframe *t;
	va_list ap;

	if (ntab == MAX_FRAMES)
		fail_msg("more than %d frames: raise MAX_FRAMES", MAX_FRAMES);
	t = &tab[ntab++];
	memset(t, 0, sizeof(*t));
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->data = malloc(len);
	if (!t->data)
		fail_msg("out of memory");
	memcpy(t->data, frame, len);
	t->len = len;
	t->outcome = outcome;
	t->l3 = -1;
	return t;
}

static void add(const struct spec *s, const char *outcome, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add(const struct spec *s, const char *outcome, const char *fmt, ...)
{
	char name[120];
	va_list ap;
	size_t len = build(s);
	size_t l3 = ETH_HDR + 4 * (size_t)s->ntags;
	size_t iphl = (s->ihl < 5 ? 5 : s->ihl) * 4, tcphl = (s->doff < 5 ? 5 : s->doff) * 4;
	struct tframe *t;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	t = add_frame(len, outcome, "%s", name);
	t->s = *s;
	if (s->version == 6) {
		t->ip_end = l3 + 40 + 20 + s->plen;
	} else {
		size_t tot = s->tot_len > 0 ? (size_t)s->tot_len
			     : s->tot_len == 0 ? len - l3 /* BIG TCP: the frame says */
					       : iphl + tcphl + s->plen;

		t->ip_end = l3 + tot;
		t->payload_off = l3 + iphl + tcphl;
		t->payload_len = tot > iphl + tcphl ? tot - iphl - tcphl : 0;
	}
	if (strcmp(outcome, "segments") == 0)
		t->nrecs = (t->payload_len + MRTE_CHUNK - 1) / MRTE_CHUNK;
	else if (strcmp(outcome, "flow_events") == 0)
		t->nrecs = 1;
	/* The IP packet inside, if the ethertype and the version nibble agree
	 * (a raw-IP link header has only the nibble to go by) and the parser
	 * reaches it (at most three tags). */
	if (s->ntags <= 3 && ((s->ethertype == 0x0800 && s->version == 4) ||
			      (s->ethertype == 0x86dd && s->version == 6))) {
		t->l3 = (long)l3;
		t->l3_proto = s->ethertype;
	}
}

static const uint8_t PA = MRTE_TCP_PSH | MRTE_TCP_ACK;

static void build_table(void)
{
	static const uint16_t ports[] = {3306, 3307};
	struct spec s;

	/* Matched ports: clients spread over the rings. */
	for (int p = 0; p < 2; p++)
		for (uint32_t k = 0; k < 8; k++) {
			s = tcp4(CLIENT - k * 0x01010101u, (uint16_t)(33000 + k * 2011), ports[p], PA,
				 37 + k * 13);
			add(&s, "segments", "client %u to port %u", k, ports[p]);
		}

	/* Other ports, the other direction. */
	s = tcp4(CLIENT, 40000, 3308, PA, 100);
	add(&s, "not_matched", "to port 3308");
	s.dport = 3305;
	add(&s, "not_matched", "to port 3305");
	s.dport = 0xea0c;
	add(&s, "not_matched", "to port 0xea0c (3306 byte-swapped)");
	s = tcp4(CLIENT, 40000, 3308, MRTE_TCP_SYN, 0);
	add(&s, "not_matched", "SYN to port 3308");
	s = tcp4(SERVER, 3306, 40001, PA, 100);
	s.daddr = CLIENT;
	add(&s, "not_matched", "server->client: from 3306 with payload");
	s.flags = MRTE_TCP_SYN | MRTE_TCP_ACK;
	s.plen = 0;
	add(&s, "not_matched", "server->client: SYN-ACK from 3306");
	s = tcp4(SERVER, 3307, 52000, MRTE_TCP_FIN | MRTE_TCP_ACK, 0);
	add(&s, "not_matched", "server->client: FIN from 3307");

	/* Pure ACKs, bare and padded. */
	static const uint8_t ack_flags[] = {MRTE_TCP_ACK, PA, 0, 0x20 | MRTE_TCP_ACK,
					    0xc0 | MRTE_TCP_ACK};

	for (size_t i = 0; i < sizeof(ack_flags); i++) {
		s = tcp4(CLIENT, 40002, 3306, ack_flags[i], 0);
		add(&s, "no_payload", "pure ACK, flags %#x", ack_flags[i]);
		s.min_len = 60;
		add(&s, "no_payload", "pure ACK, flags %#x, padded to 60", ack_flags[i]);
	}

	/* Flow events. */
	static const uint8_t ev_flags[] = {
		MRTE_TCP_SYN, MRTE_TCP_SYN | 0xc0, MRTE_TCP_FIN, MRTE_TCP_FIN | MRTE_TCP_ACK,
		MRTE_TCP_FIN | PA, MRTE_TCP_RST, MRTE_TCP_RST | MRTE_TCP_ACK,
	};

	for (size_t i = 0; i < sizeof(ev_flags); i++)
		for (int p = 0; p < 2; p++) {
			s = tcp4(CLIENT + (uint32_t)i, (uint16_t)(41000 + i), ports[p], ev_flags[i],
				 0);
			add(&s, "flow_events", "flags %#x to %u", ev_flags[i], ports[p]);
			s.min_len = 60;
			add(&s, "flow_events", "flags %#x to %u, padded to 60", ev_flags[i],
			    ports[p]);
		}

	/* IP and TCP options. */
	for (unsigned ihl = 5; ihl <= 15; ihl++)
		for (unsigned doff = 5; doff <= 15; doff++) {
			s = tcp4(CLIENT, (uint16_t)(42000 + ihl * 16 + doff), 3306, PA,
				 1 + (ihl * 37 + doff * 11) % 97);
			s.ihl = ihl;
			s.doff = doff;
			add(&s, "segments", "IHL %u, data offset %u", ihl, doff);
		}
	s = tcp4(CLIENT, 42999, 3307, PA, 1);
	s.ihl = 6;
	s.min_len = 60;
	add(&s, "segments", "IHL 6, 1-byte payload, padded to 60");

	/* Header lengths that do not add up. */
	for (unsigned ihl = 0; ihl < 5; ihl++) {
		s = tcp4(CLIENT, 43000, 3306, PA, 10);
		s.ihl = ihl;
		add(&s, "not_matched", "IHL %u", ihl);
	}
	for (unsigned doff = 0; doff < 5; doff++) {
		s = tcp4(CLIENT, 43001, 3306, PA, 10);
		s.doff = doff;
		add(&s, "drop_malformed", "TCP data offset %u", doff);
	}
	s = tcp4(CLIENT, 43002, 3306, MRTE_TCP_ACK, 0);
	s.tot_len = 39;
	add(&s, "drop_malformed", "IP total length 39 < IP + TCP headers");
	s = tcp4(CLIENT, 43002, 3306, PA, 8);
	s.doff = 8;
	s.tot_len = 20 + 28;
	add(&s, "drop_malformed", "IP total length ends inside the TCP options");
	s = tcp4(CLIENT, 43003, 3307, PA, 100);
	s.tot_len = 20 + 20 + 101;
	add(&s, "drop_malformed", "IP total length one byte past the frame");
	s.tot_len = 65535;
	add(&s, "drop_malformed", "IP total length 65535 in a short frame");
	s.tot_len = 20 + 20 + 101;
	s.min_len = 200;
	add(&s, "segments", "IP total length one past the payload, inside junk padding");
	s = tcp4(CLIENT, 43005, 3306, PA, 2000);
	s.tot_len = 20 + 20 + 2001;
	add(&s, "drop_malformed", "IP total length one byte past a 2054-byte frame");
	s = tcp4(CLIENT, 43004, 3306, PA, 300);
	s.tot_len = 0;
	add(&s, "segments", "IP total length 0 (BIG TCP), 300 bytes");
	s = tcp4(CLIENT, 43006, 3307, MRTE_TCP_FIN | PA, 20480);
	s.tot_len = 0;
	add(&s, "segments", "IP total length 0 (BIG TCP), 20480 bytes");

	/* VLAN tags. */
	const struct vlan_case *tags = vlan_cases;

	for (size_t i = 0; i < N_VLAN_CASES; i++) {
		s = tcp4(CLIENT, (uint16_t)(44000 + i), ports[i & 1], PA, 200 + i);
		s.ntags = tags[i].n;
		memcpy(s.tpid, tags[i].tpid, sizeof(s.tpid));
		add(&s, "segments", "%s", tags[i].name);
		s.flags = MRTE_TCP_SYN;
		s.plen = 0;
		add(&s, "flow_events", "%s, SYN", tags[i].name);
		s.flags = PA;
		s.plen = 1;
		s.min_len = 60 + 4 * (size_t)tags[i].n;
		add(&s, "segments", "%s, 1-byte payload, padded", tags[i].name);
		s.ihl = 9;
		s.doff = 11;
		s.plen = 77;
		add(&s, "segments", "%s, IP and TCP options", tags[i].name);
		s.dport = 3308;
		add(&s, "not_matched", "%s, to port 3308", tags[i].name);

		struct spec s6 = tcp6(3306, PA, 50);

		s6.ntags = tags[i].n;
		memcpy(s6.tpid, tags[i].tpid, sizeof(s6.tpid));
		add(&s6, "drop_ipv6", "%s, IPv6 to 3306", tags[i].name);
		if (tags[i].n == 1)
			add_frame(build_arp(tags[i].tpid[0]), "not_matched", "%s, ARP",
				  tags[i].name);
	}
	s = tcp4(CLIENT, 44100, 3306, PA, 20);
	s.ntags = 4;
	s.tpid[0] = 0x88a8;
	s.tpid[1] = s.tpid[2] = s.tpid[3] = 0x8100;
	add(&s, "not_matched", "four tags (more than MRTE_MAX_VLAN_TAGS)");

	/* Fragments. */
	s = tcp4(CLIENT, 45000, 3306, PA, 1000);
	s.frag = 0x2000;
	add(&s, "drop_fragment", "first fragment to 3306");
	s.dport = 3307;
	s.tot_len = 1500;
	add(&s, "drop_fragment", "first fragment to 3307, total length past the frame");
	s.tot_len = -1;
	s.dport = 3308;
	add(&s, "not_matched", "first fragment to 3308");
	s = tcp4(CLIENT, 45001, 3306, PA, 500);
	s.frag = 0x2000 | 185;
	add(&s, "not_matched", "middle fragment (looks like TCP to 3306)");
	s.frag = 185;
	add(&s, "not_matched", "last fragment");
	s.frag = 1;
	add(&s, "not_matched", "fragment at offset 8");
	s.frag = 0;
	add(&s, "segments", "DF clear, not fragmented");
	s.frag = 0x8000 | 0x4000;
	add(&s, "segments", "reserved bit set, not fragmented");

	/* Truncated frames (all of at least 14 bytes). */
	for (int ntags = 0; ntags <= 1; ntags++) {
		size_t l3 = ETH_HDR + 4 * (size_t)ntags;

		s = tcp4(CLIENT, 46000, 3306, PA, 100);
		s.ntags = ntags;
		s.tpid[0] = 0x8100;
		s.cut = l3;
		add(&s, "short_frame", "%d tag(s): ends before the IP header", ntags);
		for (size_t cut = 1; cut < 20; cut += 6) {
			s.cut = l3 + cut;
			add(&s, "short_frame", "%d tag(s): ends %zu bytes into the IP header", ntags,
			    cut);
		}
		s.cut = l3 + 19;
		add(&s, "short_frame", "%d tag(s): ends 1 byte before the end of the IP header",
		    ntags);
		s.ihl = 15;
		s.cut = l3 + 40;
		add(&s, "short_frame", "%d tag(s): ends inside the IP options", ntags);
		s.cut = l3 + 60 + 10;
		add(&s, "short_frame", "%d tag(s): ends inside the TCP header after IP options",
		    ntags);
		s.ihl = 5;
		for (size_t t = 0; t < 20; t += 7) {
			s.cut = l3 + 20 + t;
			add(&s, "short_frame", "%d tag(s): ends %zu bytes into the TCP header",
			    ntags, t);
		}
		s.cut = l3 + 39;
		add(&s, "short_frame", "%d tag(s): ends 1 byte before the end of the TCP header",
		    ntags);
		s.doff = 15;
		s.cut = l3 + 20 + 30;
		add(&s, "drop_malformed", "%d tag(s): ends inside the TCP options", ntags);
		s.doff = 5;
		s.cut = l3 + 40 + 50;
		add(&s, "drop_malformed", "%d tag(s): ends inside the payload", ntags);

		struct spec s6 = tcp6(3306, PA, 10);

		s6.ntags = ntags;
		s6.tpid[0] = 0x8100;
		s6.cut = l3 + 39;
		add(&s6, "short_frame", "%d tag(s): ends inside the IPv6 header", ntags);
		s6.cut = l3 + 40 + 3;
		add(&s6, "short_frame", "%d tag(s): ends before the TCP ports after IPv6", ntags);
	}
	s = tcp4(CLIENT, 46001, 3306, PA, 100);
	s.ntags = 1;
	s.tpid[0] = 0x8100;
	s.cut = ETH_HDR;
	add(&s, "short_frame", "Ethernet header only, type 802.1Q");
	s.cut = ETH_HDR + 3;
	add(&s, "short_frame", "ends inside the VLAN tag");
	s.ntags = 2;
	s.tpid[0] = 0x88a8;
	s.tpid[1] = 0x8100;
	s.cut = ETH_HDR + 6;
	add(&s, "short_frame", "ends inside the inner QinQ tag");
	s.ntags = 3;
	s.tpid[2] = 0x8100;
	s.cut = ETH_HDR + 8;
	add(&s, "short_frame", "ends right after the second of three tags");
	s = tcp4(CLIENT, 46100, 3306, MRTE_TCP_ACK, 0);
	s.cut = ETH_HDR;
	add(&s, "short_frame", "14-byte frame, type IPv4");
	s.ethertype = 0x86dd;
	add(&s, "short_frame", "14-byte frame, type IPv6");
	s.ethertype = 0x8100;
	add(&s, "short_frame", "14-byte frame, type 802.1Q");
	s.ethertype = 0x88b5;
	add(&s, "not_matched", "14-byte frame, local experimental ethertype");

	/* Ethernet padding after a small payload. */
	for (size_t plen = 1; plen <= 7; plen++) {
		s = tcp4(CLIENT, (uint16_t)(47000 + plen), 3306, PA, plen);
		s.min_len = 60;
		add(&s, "segments", "%zu-byte payload padded to 60", plen);
		s.min_len = 1514;
		add(&s, "segments", "%zu-byte payload padded to 1514", plen);
	}

	/* Payload sizes and flags, data on SYN and RST included. */
	static const size_t sizes[] = {1, 2, 3, 100, 536, 1448, 1460, 2000, 3000};
	static const uint8_t pl_flags[] = {PA, MRTE_TCP_FIN | PA, MRTE_TCP_SYN,
					   MRTE_TCP_RST | MRTE_TCP_ACK};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (size_t f = 0; f < sizeof(pl_flags); f++) {
			s = tcp4(CLIENT ^ (uint32_t)i, (uint16_t)(48000 + i * 7), ports[i & 1],
				 pl_flags[f], sizes[i]);
			add(&s, "segments", "%zu-byte payload, flags %#x", sizes[i], pl_flags[f]);
		}
	s = tcp4(CLIENT, 48999, 3306, PA, 1000);
	s.seq = 0xffffffffu;
	add(&s, "segments", "seq 0xffffffff");

	/* Around the TC test-run size limit (3712 here, measured at run time). */
	s = tcp4(CLIENT, 49500, 3306, MRTE_TCP_FIN | PA, 3712 - 54);
	add(&s, "segments", "3712-byte frame");
	s.plen++;
	add(&s, "segments", "3713-byte frame");

	/* Large segments: several records (XDP only: TC refuses them). */
	static const struct {
		size_t plen;
		uint8_t flags;
		uint32_t seq;
	} large[] = {
		{20480, PA, 0x11111111u},
		{20480, MRTE_TCP_FIN | PA, 0x22222222u},
		{20480, MRTE_TCP_SYN, 0x33333333u}, /* SYN with data: chunk 1 at seq + 1 + 16384 */
		{20480, MRTE_TCP_SYN | MRTE_TCP_FIN | PA, 0x44444444u},
		{20480, MRTE_TCP_RST | MRTE_TCP_ACK, 0x55555555u},
		{20480, PA, 0xffffc000u}, /* seq wraps in chunk 1 */
		{MRTE_CHUNK - 1, PA, 1},
		{MRTE_CHUNK, MRTE_TCP_FIN | MRTE_TCP_ACK, 2},
		{MRTE_CHUNK + 1, MRTE_TCP_FIN | MRTE_TCP_ACK, 3},
		{MRTE_CHUNK + 1, MRTE_TCP_SYN, 0xfffffffeu}, /* SYN, seq wraps */
		{2 * MRTE_CHUNK, PA, 4},
		{40000, MRTE_TCP_SYN | PA, 5},
		{65535 - 40, PA, 6}, /* the largest IPv4 datagram */
	};

	for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++) {
		s = tcp4(CLIENT, (uint16_t)(49000 + i), ports[i & 1], large[i].flags,
			 large[i].plen);
		s.seq = large[i].seq;
		add(&s, "segments", "%zu-byte segment, flags %#x, seq %#x", s.plen, s.flags, s.seq);
	}
	s = tcp4(CLIENT, 49100, 3307, MRTE_TCP_FIN | MRTE_TCP_ACK, 20480);
	s.ntags = 2;
	s.tpid[0] = 0x88a8;
	s.tpid[1] = 0x8100;
	s.ihl = 15;
	s.doff = 15;
	add(&s, "segments", "20 KB behind QinQ with full IP and TCP options");

	/* IPv6. */
	s = tcp6(3306, PA, 100);
	add(&s, "drop_ipv6", "IPv6 to 3306 with payload");
	s = tcp6(3307, MRTE_TCP_SYN, 0);
	add(&s, "drop_ipv6", "IPv6 SYN to 3307");
	s = tcp6(3307, MRTE_TCP_ACK, 0);
	add(&s, "drop_ipv6", "IPv6 pure ACK to 3307");
	s = tcp6(3308, PA, 100);
	add(&s, "not_matched", "IPv6 to 3308");
	s = tcp6(3306, PA, 100);
	s.sport = 3306;
	s.dport = 50000;
	add(&s, "not_matched", "IPv6 from 3306 (server->client)");
	s = tcp6(3306, PA, 100);
	s.proto = 17;
	add(&s, "not_matched", "IPv6 UDP to 3306");

	/* Not IP, or not TCP. */
	add_frame(build_arp(0), "not_matched", "ARP");
	s = tcp4(CLIENT, 50000, 3306, PA, 100);
	s.ethertype = 0x88cc;
	add(&s, "not_matched", "LLDP ethertype carrying a TCP-looking packet");
	s.ethertype = 0x0800;
	s.proto = 17;
	add(&s, "not_matched", "IPv4 UDP to 3306");
	s.proto = 1;
	add(&s, "not_matched", "IPv4 ICMP");
	s.proto = 6;
	s.version = 6;
	add(&s, "not_matched", "ethertype IPv4, version nibble 6");
	s = tcp4(CLIENT, 50000, 3306, PA, 100);
	s.ethertype = 0x86dd;
	add(&s, "not_matched", "ethertype IPv6 carrying an IPv4 header");
}

/* ---- the loaded programs ---------------------------------------------------- */

enum { P_XDP, P_TC, NPROGS };

struct env {
	struct mrte_config cfg;
	bool have_cfg;
	struct bpf_capture *b;
	struct feed *feed[NRINGS];
	int fd;
};

static struct env envs[NPROGS];
static struct mrte_filter filter; /* the pcap path's copy of the port set */
static uint32_t tc_max;           /* the largest frame a TC test run takes */

static const char *prog_name(int p)
{
	return p == P_XDP ? "xdp" : "tc";
}

static void env_open(struct env *e, int prog)
{
	char a0[] = "test_bpf_parity", a1[] = "--interface=lo", a2[] = "--port=3306,3307",
	     a3[] = "--thread_count=3", a4[] = "--ring_mb=1";
	char *argv[] = {a0, a1, a2, a3, a4, NULL};
	char err[256] = "";

	CHECK(config_parse(&e->cfg, 5, argv, stdout, err, sizeof(err)) == CONFIG_OK,
	      "config_parse: %s", err);
	e->have_cfg = true;
	CHECK(e->cfg.nports == 2 && e->cfg.ports[0] == 3306 && e->cfg.ports[1] == 3307 &&
		      e->cfg.thread_count == NRINGS,
	      "config_parse did not give ports 3306,3307 and 3 threads");
	e->b = bpf_capture_load(&e->cfg, prog_name(prog), err, sizeof(err));
	CHECK(e->b, "bpf_capture_load(\"%s\"): %s", prog_name(prog), err);
	e->fd = bpf_capture_prog_fd(e->b, prog_name(prog));
	CHECK(e->fd >= 0, "no program fd");
	for (unsigned i = 0; i < NRINGS; i++) {
		e->feed[i] = bpf_capture_feed(e->b, i, on_ring_record, &ring_ids[i]);
		CHECK(e->feed[i], "bpf_capture_feed(%u) failed", i);
	}
	/* The pcap path gets the port set the same way pcap_capture_open()
	 * does: from the parsed configuration. */
	memset(&filter, 0, sizeof(filter));
	for (uint32_t i = 0; i < e->cfg.nports; i++)
		filter.ports[i] = e->cfg.ports[i];
	filter.nports = e->cfg.nports;
}

static void env_close(struct env *e)
{
	for (unsigned i = 0; i < NRINGS; i++)
		if (e->feed[i])
			e->feed[i]->destroy(e->feed[i]);
	bpf_capture_free(e->b);
	if (e->have_cfg)
		config_free(&e->cfg);
	memset(e, 0, sizeof(*e));
}

/* Empty every ring (into `l`, which may be a scratch list). */
static void drain(struct env *e, struct recs *l)
{
	ring_sink = l;
	for (unsigned i = 0; i < NRINGS; i++) {
		int n = e->feed[i]->consume(e->feed[i]);

		CHECK(n >= 0, "consuming ring %u: %d", i, n);
	}
	ring_sink = NULL;
}

/* The TC test run's size limit, by bisection with a frame nobody matches. */
static uint32_t measure_tc_max(struct env *e)
{
	uint32_t lo = ETH_HDR, hi = sizeof(frame);

	memset(frame, 0, sizeof(frame));
	put16(frame + 12, 0x88b5);
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = mid,
			    .repeat = 1);

		if (bpf_prog_test_run_opts(e->fd, &o) == 0) {
			lo = mid;
		} else {
			CHECK(errno == EINVAL, "a %u-byte TC test run refused with %s, not EINVAL",
			      mid, strerror(errno));
			hi = mid;
		}
	}
	return lo;
}

/* Both programs loaded, once.  Not root: fail, loudly. */
static void need_envs(void)
{
	static struct recs scratch;

	if (geteuid() != 0)
		fail_msg("BPF parity tests need root: loading BPF programs and maps and "
			 "BPF_PROG_TEST_RUN need CAP_BPF/CAP_SYS_ADMIN -- run as root "
			 "(sudo make bpf-test)");
	CASE("loading the programs");
	for (int p = 0; p < NPROGS; p++)
		if (!envs[p].b)
			env_open(&envs[p], p);
	if (!tc_max) {
		CASE("measuring the TC test-run size limit");
		tc_max = measure_tc_max(&envs[P_TC]);
		print_message("    TC test runs take frames up to %u bytes\n", tc_max);
		CHECK(tc_max >= 1514, "TC test runs refuse a full 1514-byte frame (limit %u)",
		      tc_max);
	}
	/* Records a failed test left behind are not this test's. */
	for (int p = 0; p < NPROGS; p++) {
		recs_reset(&scratch);
		drain(&envs[p], &scratch);
	}
}

static int group_setup(void **state)
{
	(void)state;
	build_table();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (int p = 0; p < NPROGS; p++)
		env_close(&envs[p]);
	for (size_t i = 0; i < ntab; i++)
		free(tab[i].data);
	ntab = 0;
	return 0;
}

/* ---- one frame through each path -------------------------------------------------- */

struct result {
	struct recs recs;
	struct mrte_kstats k;       /* counter delta */
	struct mrte_agent_stats as; /* pcap path: drop_truncated, drop_queue_full */
};

static struct result r_pcap, r_xdp, r_tc, r_ref;

static void run_pcap(int dlt, const uint8_t *data, uint32_t caplen, uint32_t wirelen,
		     uint64_t ts_ns, struct result *r)
{
	int rc;

	recs_reset(&r->recs);
	memset(&r->k, 0, sizeof(r->k));
	memset(&r->as, 0, sizeof(r->as));
	rc = pcap_frame_records(dlt, data, caplen, wirelen, ts_ns, &filter, &r->k, &r->as,
				on_pcap_record, &r->recs);
	CHECK(rc == 0, "pcap_frame_records returned %d though no record was refused", rc);
	CHECK(r->recs.lost == 0 && r->recs.oversized == 0,
	      "pcap path: %zu records over %d, %zu bad lengths", r->recs.lost, MAX_RECS,
	      r->recs.oversized);
	for (size_t i = 0; i < r->recs.n; i++)
		CHECK(r->recs.r[i].rec.ts_ns == ts_ns,
		      "pcap path: record %zu has ts_ns %llu, the file says %llu", i,
		      (unsigned long long)r->recs.r[i].rec.ts_ns, (unsigned long long)ts_ns);
}

/* Run a frame through a program; false if the kernel's test mode refused
 * it (then nothing may have been counted or written). */
static bool run_bpf(int prog, const uint8_t *data, size_t len, struct result *r)
{
	struct env *e = &envs[prog];
	struct mrte_kstats before, after;
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = data, .data_size_in = (__u32)len,
		    .repeat = 1);
	int rc, err;

	recs_reset(&r->recs);
	memset(&r->as, 0, sizeof(r->as));
	bpf_capture_kstats(e->b, &before);
	rc = bpf_prog_test_run_opts(e->fd, &o);
	err = errno;
	bpf_capture_kstats(e->b, &after);
	kdelta(&r->k, &before, &after);
	drain(e, &r->recs);
	CHECK(r->recs.lost == 0 && r->recs.oversized == 0,
	      "%s: %zu records over %d, %zu bad lengths", prog_name(prog), r->recs.lost,
	      MAX_RECS, r->recs.oversized);
	if (rc) {
		CHECK(err == EINVAL, "%s test run of a %zu-byte frame: %s", prog_name(prog), len,
		      strerror(err));
		CHECK(kzero(&r->k), "%s: a refused test run moved the counters", prog_name(prog));
		CHECK(r->recs.n == 0, "%s: a refused test run wrote records", prog_name(prog));
		return false;
	}
	if (prog == P_XDP)
		CHECK(o.retval == XDP_PASS, "XDP returned %u, not XDP_PASS", o.retval);
	else
		CHECK((int)o.retval == TC_ACT_UNSPEC, "TC returned %d, not TC_ACT_UNSPEC",
		      (int)o.retval);
	return true;
}

/* Does the kernel's TC test mode refuse this frame (see the header)? */
static bool tc_refuses(const uint8_t *d, size_t len)
{
	uint16_t et = (uint16_t)(d[12] << 8 | d[13]);

	if (len > tc_max)
		return true;
	if (et == 0x0800)
		return len < ETH_HDR + 20;
	if (et == 0x86dd)
		return len < ETH_HDR + 40;
	return false;
}

/* The pcap path's result is the one the table expects: one outcome, the
 * counter laws, the records' own counters, and -- for a matched segment --
 * records that carry exactly the frame's payload at the right sequence
 * numbers with SYN on the first and FIN on the last. */
static void check_as_expected(const struct tframe *t, const struct result *r)
{
	const struct mrte_kstats *k = &r->k;
	uint64_t outs = 0, bytes = 0;

	CHECK(k->frames == 1, "frames moved by %llu", (unsigned long long)k->frames);
	for (size_t i = 0; i < NOUTCOMES; i++) {
		uint64_t v = kget(k, outcome_names[i]);

		CHECK(v == (strcmp(outcome_names[i], t->outcome) == 0 ? 1u : 0u),
		      "expected outcome %s, but %s moved by %llu", t->outcome, outcome_names[i],
		      (unsigned long long)v);
		if (i >= 2)
			outs += v;
	}
	CHECK(k->frames == k->not_matched + k->short_frame + k->matched, "frames law broken");
	CHECK(k->matched == outs, "matched %llu != sum of the matched outcomes %llu",
	      (unsigned long long)k->matched, (unsigned long long)outs);
	for (size_t i = 0; i < r->recs.n; i++)
		bytes += r->recs.r[i].rec.len;
	CHECK(r->recs.n == t->nrecs, "%zu record(s), expected %zu", r->recs.n, t->nrecs);
	CHECK(k->records == r->recs.n && k->bytes == bytes,
	      "records/bytes counters %llu/%llu, records written %zu/%llu",
	      (unsigned long long)k->records, (unsigned long long)k->bytes, r->recs.n,
	      (unsigned long long)bytes);
	if (!t->nrecs)
		return;

	const struct spec *s = &t->s;
	const uint32_t want_saddr = htonl(s->saddr), want_daddr = htonl(s->daddr);

	for (size_t i = 0; i < r->recs.n; i++) {
		const struct got *g = &r->recs.r[i];
		size_t done = i * MRTE_CHUNK, n;
		uint32_t seq;
		uint8_t flags;

		expected_record(s, t->payload_len, i, r->recs.n, &n, &seq, &flags);
		CHECK(g->rec.saddr == want_saddr && g->rec.daddr == want_daddr &&
			      g->rec.sport == s->sport && g->rec.dport == s->dport,
		      "record %zu: addresses/ports %08x:%u -> %08x:%u", i, g->rec.saddr,
		      g->rec.sport, g->rec.daddr, g->rec.dport);
		CHECK(g->rec.seq == seq, "record %zu: seq %#x, want %#x", i, g->rec.seq, seq);
		CHECK(g->rec.len == n && g->rec.chunk == i && g->rec.seg_len == t->payload_len,
		      "record %zu: len %u chunk %u seg_len %u, want %zu %zu %zu", i, g->rec.len,
		      g->rec.chunk, g->rec.seg_len, n, i, t->payload_len);
		CHECK(g->rec.flags == flags, "record %zu: flags %#x, want %#x", i, g->rec.flags,
		      flags);
		CHECK(g->ring == mrte_flow_hash(want_saddr, s->sport) % NRINGS,
		      "record %zu in ring %u", i, g->ring);
		CHECK(memcmp(g->data, t->data + t->payload_off + done, n) == 0,
		      "record %zu: payload differs from the frame's bytes", i);
	}
}

/* ---- capture files ------------------------------------------------------------- */

static struct timeval frame_ts(size_t i)
{
	return (struct timeval){.tv_sec = 1700000000 + (time_t)(i / 1000),
				.tv_usec = (suseconds_t)((i % 1000) * 997 + 3)};
}

static uint64_t ts_ns_of(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * 1000000000ull + (uint64_t)tv->tv_usec * 1000ull;
}

/* Write n frames to a fresh file under /tmp -- each cut to `snaplen`, or
 * to the caplen get() gives, with its wire length kept -- then open it for
 * reading and unlink it at once, so no failure leaves it behind. */
typedef size_t (*frame_fn)(size_t i, const uint8_t **data, uint32_t *caplen); /* SIZE_MAX: skip */

static pcap_t *write_and_reopen(int dlt, uint32_t snaplen, size_t n, frame_fn get)
{
	char path[] = "/tmp/mrte-parity-XXXXXX", errbuf[PCAP_ERRBUF_SIZE] = "";
	int fd = mkstemp(path);
	pcap_t *dead, *pc;
	pcap_dumper_t *d;

	CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
	close(fd);
	dead = pcap_open_dead(dlt, (int)snaplen);
	d = dead ? pcap_dump_open(dead, path) : NULL;
	if (!d) {
		unlink(path);
		CHECK(d, "pcap_open_dead(%d) + pcap_dump_open(%s): %s", dlt, path,
		      dead ? pcap_geterr(dead) : "no handle");
	}
	for (size_t i = 0; i < n; i++) {
		const uint8_t *data;
		uint32_t caplen = 0;
		size_t len = get(i, &data, &caplen);
		struct pcap_pkthdr h = {.ts = frame_ts(i), .len = (bpf_u_int32)len};

		if (len == SIZE_MAX)
			continue;
		if (!caplen || caplen > len)
			caplen = (uint32_t)len;
		h.caplen = caplen < snaplen ? caplen : snaplen;
		pcap_dump((u_char *)d, &h, data);
	}
	int frc = pcap_dump_flush(d);

	pcap_dump_close(d);
	pcap_close(dead);
	pc = pcap_open_offline(path, errbuf);
	unlink(path);
	CHECK(frc == 0, "writing %s failed", path);
	CHECK(pc, "pcap_open_offline(%s): %s", path, errbuf);
	CHECK(pcap_datalink(pc) == dlt, "the file says link type %d, written as %d",
	      pcap_datalink(pc), dlt);
	CHECK(pcap_snapshot(pc) == (int)snaplen, "the file's snapshot length %d, written %u",
	      pcap_snapshot(pc), snaplen);
	return pc;
}

static size_t eth_frame(size_t i, const uint8_t **data, uint32_t *caplen)
{
	(void)caplen;
	*data = tab[i].data;
	return tab[i].len;
}

/* ---- the cases ------------------------------------------------------------------ */

/* The whole file through the pcap path, XDP and TC, frame by frame. */
static void test_file_parity(void **state)
{
	struct mrte_kstats tot_pcap = {0}, tot_xdp = {0}, tot_tc = {0}, tot_pcap_tc = {0};
	struct pcap_pkthdr *h;
	const u_char *bytes;
	size_t i = 0, tc_ran = 0, tc_refused = 0, recs_total = 0, syn_multi = 0;
	unsigned rings_hit = 0;
	bool outcome_seen[NOUTCOMES] = {false};
	pcap_t *pc;
	int rc;

	(void)state;
	need_envs();
	CASE("writing %zu frames", ntab);
	pc = write_and_reopen(DLT_EN10MB, FILE_SNAPLEN, ntab, eth_frame);

	while ((rc = pcap_next_ex(pc, &h, &bytes)) == 1) {
		const struct tframe *t = i < ntab ? &tab[i] : NULL;

		CASE("frame %zu (%.120s)", i, t ? t->name : "beyond the table");
		CHECK(t, "the file holds more frames than were written");
		CHECK(h->caplen == t->len && h->len == t->len, "read back caplen %u len %u, wrote %zu",
		      h->caplen, h->len, t->len);
		CHECK(memcmp(bytes, t->data, t->len) == 0, "read back different bytes");

		/* (a) the pcap path */
		run_pcap(DLT_EN10MB, bytes, h->caplen, h->len, ts_ns_of(&h->ts), &r_pcap);
		check_as_expected(t, &r_pcap);
		CHECK(r_pcap.as.drop_truncated == 0 && r_pcap.as.drop_queue_full == 0,
		      "pcap path counted drop_truncated %llu / drop_queue_full %llu on a whole frame",
		      (unsigned long long)r_pcap.as.drop_truncated,
		      (unsigned long long)r_pcap.as.drop_queue_full);
		kadd(&tot_pcap, &r_pcap.k);

		/* (b) XDP: every frame of 14 bytes or more */
		CHECK(run_bpf(P_XDP, bytes, h->caplen, &r_xdp), "XDP refused a %u-byte frame",
		      h->caplen);
		same_records("pcap", &r_pcap.recs, "xdp", &r_xdp.recs);
		same_counters("pcap", &r_pcap.k, "xdp", &r_xdp.k);
		kadd(&tot_xdp, &r_xdp.k);

		/* (c) TC, where its test mode takes the frame */
		bool refuse = tc_refuses(bytes, h->caplen);
		bool ran = run_bpf(P_TC, bytes, h->caplen, &r_tc);

		CHECK(ran == !refuse, "a TC test run %s a %u-byte frame (limit %u) it should have %s",
		      ran ? "took" : "refused", h->caplen, tc_max, ran ? "refused" : "taken");
		if (ran) {
			same_records("pcap", &r_pcap.recs, "tc", &r_tc.recs);
			same_counters("pcap", &r_pcap.k, "tc", &r_tc.k);
			kadd(&tot_tc, &r_tc.k);
			kadd(&tot_pcap_tc, &r_pcap.k);
			tc_ran++;
		} else {
			tc_refused++;
		}

		for (size_t o = 0; o < NOUTCOMES; o++)
			outcome_seen[o] |= strcmp(outcome_names[o], t->outcome) == 0;
		for (size_t j = 0; j < r_xdp.recs.n; j++)
			rings_hit |= 1u << r_xdp.recs.r[j].ring;
		recs_total += r_xdp.recs.n;
		if (t->nrecs > 1 && (t->s.flags & MRTE_TCP_SYN)) {
			/* Spelled out: the later record of a SYN with more than
			 * 16 KiB of data starts at seq + 1 + 16384. */
			CHECK(r_xdp.recs.r[1].rec.seq == t->s.seq + 1 + MRTE_CHUNK &&
				      r_xdp.recs.r[0].rec.seq == t->s.seq,
			      "SYN with data: chunk seqs %#x, %#x for seq %#x", r_xdp.recs.r[0].rec.seq,
			      r_xdp.recs.r[1].rec.seq, t->s.seq);
			syn_multi++;
		}
		i++;
	}
	CASE("end of the file");
	CHECK(rc == PCAP_ERROR_BREAK, "pcap_next_ex: %d (%s)", rc, pcap_geterr(pc));
	pcap_close(pc);
	CHECK(i == ntab, "read back %zu frames, wrote %zu", i, ntab);

	CASE("totals over %zu frames", ntab);
	same_counters("pcap", &tot_pcap, "xdp", &tot_xdp);
	same_counters("pcap (frames TC ran)", &tot_pcap_tc, "tc", &tot_tc);
	CHECK(tot_pcap.frames == ntab && tot_pcap.records == recs_total,
	      "frames %llu, records %llu, records read %zu", (unsigned long long)tot_pcap.frames,
	      (unsigned long long)tot_pcap.records, recs_total);
	/* The file is what it claims to be: every outcome the parser can
	 * reach here, every ring, multi-record SYNs, and both TC verdicts. */
	for (size_t o = 0; o < NOUTCOMES; o++) {
		bool reachable = strcmp(outcome_names[o], "drop_ring_full") != 0 &&
				 strcmp(outcome_names[o], "drop_no_ring") != 0 &&
				 strcmp(outcome_names[o], "drop_oversize") != 0;

		CHECK(outcome_seen[o] == reachable, "outcome %s %s in the file", outcome_names[o],
		      outcome_seen[o] ? "unexpectedly" : "never");
		if (reachable)
			CHECK(kget(&tot_pcap, outcome_names[o]) > 0, "no frame counted as %s",
			      outcome_names[o]);
	}
	CHECK(rings_hit == (1u << NRINGS) - 1, "records reached rings %#x only", rings_hit);
	CHECK(syn_multi >= 3, "only %zu multi-record SYN segments", syn_multi);
	CHECK(tc_ran > ntab / 2 && tc_refused >= 20, "TC ran %zu frames, refused %zu", tc_ran,
	      tc_refused);
	print_message("    %zu frames: %zu records; TC ran %zu, refused %zu\n", ntab, recs_total,
		      tc_ran, tc_refused);
}

/* The same frames with a 1024-byte snapshot length. */
static void test_snaplen_cut(void **state)
{
	struct mrte_kstats tot_pcap = {0}, tot_xdp = {0};
	struct pcap_pkthdr *h;
	const u_char *bytes;
	size_t i = 0, n_whole = 0, n_pad_cut = 0, n_other_cut = 0, n_trunc = 0, n_big_tcp = 0;
	uint64_t truncated = 0;
	pcap_t *pc;
	int rc;

	(void)state;
	need_envs();
	CASE("writing %zu frames cut to %d bytes", ntab, CUT_SNAPLEN);
	pc = write_and_reopen(DLT_EN10MB, CUT_SNAPLEN, ntab, eth_frame);

	while ((rc = pcap_next_ex(pc, &h, &bytes)) == 1) {
		const struct tframe *t = i < ntab ? &tab[i] : NULL;

		CASE("cut file, frame %zu (%.120s)", i, t ? t->name : "beyond the table");
		CHECK(t, "the file holds more frames than were written");
		CHECK(h->len == t->len && h->caplen == (t->len < CUT_SNAPLEN ? t->len : CUT_SNAPLEN),
		      "read back caplen %u len %u for a %zu-byte frame", h->caplen, h->len,
		      t->len);
		CHECK(memcmp(bytes, t->data, h->caplen) == 0, "read back different bytes");

		run_pcap(DLT_EN10MB, bytes, h->caplen, h->len, ts_ns_of(&h->ts), &r_pcap);
		CHECK(run_bpf(P_XDP, t->data, t->len, &r_xdp), "XDP refused the full frame");
		kadd(&tot_pcap, &r_pcap.k);
		kadd(&tot_xdp, &r_xdp.k);
		truncated += r_pcap.as.drop_truncated;
		CHECK(r_pcap.as.drop_queue_full == 0, "drop_queue_full");

		bool cut = h->caplen < h->len;
		bool publishes = t->nrecs > 0;

		if (!cut || !publishes || t->ip_end <= h->caplen) {
			/* Whole, or cut only in the padding after the datagram,
			 * or an outcome decided by the headers: as the kernel. */
			same_records("pcap (cut file)", &r_pcap.recs, "xdp (full frame)",
				     &r_xdp.recs);
			same_counters("pcap (cut file)", &r_pcap.k, "xdp (full frame)", &r_xdp.k);
			CHECK(r_pcap.as.drop_truncated == 0, "drop_truncated for %s frame",
			      cut ? "a harmlessly cut" : "a whole");
			n_whole += !cut;
			n_pad_cut += cut && publishes;
			n_other_cut += cut && !publishes;
		} else {
			/* The payload was cut: counted, never published as if
			 * whole -- while the full frame publishes. */
			struct mrte_kstats want = {.frames = 1, .matched = 1};

			CHECK(r_pcap.recs.n == 0,
			      "pcap path published %zu record(s) of a cut payload (first: len %u, "
			      "seg_len %u; the frame's payload is %zu bytes)",
			      r_pcap.recs.n, r_pcap.recs.r[0].rec.len, r_pcap.recs.r[0].rec.seg_len,
			      t->payload_len);
			CHECK(r_pcap.as.drop_truncated == 1, "drop_truncated moved by %llu",
			      (unsigned long long)r_pcap.as.drop_truncated);
			same_counters("pcap (cut file)", &r_pcap.k, "a truncated segment", &want);
			CHECK(r_xdp.recs.n == t->nrecs && r_xdp.k.segments == 1,
			      "the full frame through XDP gave %zu records, expected %zu",
			      r_xdp.recs.n, t->nrecs);
			n_trunc++;
			n_big_tcp += t->s.tot_len == 0;
		}
		i++;
	}
	CASE("end of the cut file");
	CHECK(rc == PCAP_ERROR_BREAK, "pcap_next_ex: %d (%s)", rc, pcap_geterr(pc));
	pcap_close(pc);
	CHECK(i == ntab, "read back %zu frames, wrote %zu", i, ntab);
	/* Every frame is accounted for: what the kernel published as
	 * segments, the pcap path published or counted as truncated. */
	CHECK(tot_pcap.frames == tot_xdp.frames && tot_pcap.matched == tot_xdp.matched,
	      "frames/matched differ");
	CHECK(tot_pcap.segments + truncated == tot_xdp.segments,
	      "pcap segments %llu + truncated %llu != xdp segments %llu",
	      (unsigned long long)tot_pcap.segments, (unsigned long long)truncated,
	      (unsigned long long)tot_xdp.segments);
	CHECK(truncated == n_trunc, "drop_truncated total %llu, %zu cut segments",
	      (unsigned long long)truncated, n_trunc);
	print_message("    %zu whole, %zu cut in the padding, %zu cut but decided by the headers, "
		      "%zu cut segments counted drop_truncated\n",
		      n_whole, n_pad_cut, n_other_cut, n_trunc);
	CHECK(n_trunc >= 20 && n_pad_cut >= 7 && n_other_cut >= 2 && n_big_tcp == 1,
	      "the cut file misses its cases: %zu truncated (%zu BIG TCP), %zu padding cuts, %zu "
	      "other cuts",
	      n_trunc, n_big_tcp, n_pad_cut, n_other_cut);
}

/* Cuts close to the headers, one caplen per frame.  The rule: when the
 * snapshot kept every byte a record carries, the pcap path gives what the
 * kernel gives for the full frame; when it cut payload, drop_truncated and
 * nothing published; when it cut the fixed TCP header itself, short_frame
 * (the flags and sequence number are gone -- the one place the paths
 * cannot agree, and a live capture never cuts that low). */
enum cut_want { CUT_SAME, CUT_TRUNCATED, CUT_SHORT };

struct cut_case {
	const char *name;
	struct spec s;
	uint32_t caplen;
	const char *kernel; /* the full frame's outcome through XDP */
	enum cut_want want;
	uint8_t *data;
	size_t len;
};

static struct cut_case cut_cases[16];
static size_t ncut_cases;

static size_t cut_frame(size_t i, const uint8_t **data, uint32_t *caplen)
{
	*data = cut_cases[i].data;
	*caplen = cut_cases[i].caplen;
	return cut_cases[i].len;
}

static void test_snaplen_headers(void **state)
{
	struct spec sp;
	struct pcap_pkthdr *h;
	const u_char *bytes;
	size_t i = 0;
	pcap_t *pc;
	int rc;

	(void)state;
	need_envs();
	ncut_cases = 0;
#define CUT(nm, spec_, cap, kern, w)                                                              \
	cut_cases[ncut_cases++] = (struct cut_case){.name = nm, .s = spec_, .caplen = cap,        \
						    .kernel = kern, .want = w}
	sp = tcp4(CLIENT, 55000, 3306, MRTE_TCP_SYN, 0);
	sp.doff = 15;
	CUT("SYN, its 40 bytes of TCP options cut", sp, 54, "flow_events", CUT_SAME);
	sp = tcp4(CLIENT, 55001, 3306, MRTE_TCP_ACK, 0);
	sp.doff = 15;
	CUT("pure ACK, TCP options cut", sp, 60, "no_payload", CUT_SAME);
	sp = tcp4(CLIENT, 55002, 3307, PA, 100);
	sp.doff = 15;
	CUT("segment, cut inside its TCP options", sp, 54, "segments", CUT_TRUNCATED);
	sp = tcp4(CLIENT, 55003, 3306, PA, 1);
	CUT("1-byte payload, its one byte cut", sp, 54, "segments", CUT_TRUNCATED);
	sp = tcp4(CLIENT, 55004, 3306, PA, 1);
	sp.min_len = 60;
	CUT("1-byte payload padded to 60, the padding cut", sp, 55, "segments", CUT_SAME);
	CUT("1-byte payload padded to 60, cut before the byte", sp, 54, "segments",
	    CUT_TRUNCATED);
	sp = tcp4(CLIENT, 55005, 3307, PA, 300);
	sp.tot_len = 0;
	CUT("BIG TCP (total length 0), cut to 100 bytes", sp, 100, "segments", CUT_TRUNCATED);
	sp = tcp4(CLIENT, 55006, 3306, MRTE_TCP_RST | MRTE_TCP_ACK, 0);
	CUT("RST, cut 12 bytes into the TCP header", sp, 14 + 20 + 12, "flow_events",
	    CUT_SHORT);
	sp = tcp4(CLIENT, 55007, 3306, PA, 1000);
	sp.frag = 0x2000;
	CUT("first fragment, cut after the TCP header", sp, 54, "drop_fragment", CUT_SAME);
	sp = tcp4(CLIENT, 55008, 3306, PA, 100);
	sp.tot_len = 20 + 20 + 200;
	CUT("total length past the frame, and cut", sp, 60, "drop_malformed", CUT_SAME);
	sp = tcp6(3306, PA, 100);
	CUT("IPv6 to 3306, cut after the ports", sp, 14 + 40 + 4, "drop_ipv6", CUT_SAME);
#undef CUT
	for (size_t c = 0; c < ncut_cases; c++) {
		size_t len = build(&cut_cases[c].s);

		cut_cases[c].data = malloc(len);
		CHECK(cut_cases[c].data, "out of memory");
		memcpy(cut_cases[c].data, frame, len);
		cut_cases[c].len = len;
	}
	CASE("writing %zu frames with header cuts", ncut_cases);
	pc = write_and_reopen(DLT_EN10MB, 65535, ncut_cases, cut_frame);
	while ((rc = pcap_next_ex(pc, &h, &bytes)) == 1) {
		const struct cut_case *c = i < ncut_cases ? &cut_cases[i] : NULL;

		CASE("header cuts, frame %zu (%s)", i, c ? c->name : "beyond the cases");
		CHECK(c, "the file holds more frames than were written");
		CHECK(h->caplen == c->caplen && h->len == c->len && h->caplen < h->len,
		      "read back caplen %u len %u", h->caplen, h->len);
		run_pcap(DLT_EN10MB, bytes, h->caplen, h->len, ts_ns_of(&h->ts), &r_pcap);
		CHECK(run_bpf(P_XDP, c->data, c->len, &r_xdp), "XDP refused the full frame");
		CHECK(kget(&r_xdp.k, c->kernel) == 1, "the full frame is not %s through XDP",
		      c->kernel);
		if (c->want == CUT_SAME) {
			same_records("pcap (cut)", &r_pcap.recs, "xdp (full)", &r_xdp.recs);
			same_counters("pcap (cut)", &r_pcap.k, "xdp (full)", &r_xdp.k);
			CHECK(r_pcap.as.drop_truncated == 0, "drop_truncated counted");
		} else {
			struct mrte_kstats want = {.frames = 1};

			if (c->want == CUT_TRUNCATED)
				want.matched = 1;
			else
				want.short_frame = 1;
			CHECK(r_pcap.recs.n == 0, "the pcap path published %zu record(s)",
			      r_pcap.recs.n);
			same_counters("pcap (cut)", &r_pcap.k, "expected", &want);
			CHECK(r_pcap.as.drop_truncated == (c->want == CUT_TRUNCATED ? 1u : 0u),
			      "drop_truncated moved by %llu",
			      (unsigned long long)r_pcap.as.drop_truncated);
			CHECK(r_xdp.recs.n > 0, "the full frame published nothing through XDP");
		}
		i++;
	}
	CASE("end of the header-cut file");
	CHECK(rc == PCAP_ERROR_BREAK, "pcap_next_ex: %d (%s)", rc, pcap_geterr(pc));
	pcap_close(pc);
	CHECK(i == ncut_cases, "read back %zu frames, wrote %zu", i, ncut_cases);
	for (size_t c = 0; c < ncut_cases; c++)
		free(cut_cases[c].data);
	ncut_cases = 0;
}

/* ---- other link types ----------------------------------------------------------- */

struct linkvar {
	const char *name;
	int dlt;
	int want;          /* 4, 6 or 0 for both */
	uint32_t fam4, fam6; /* DLT_NULL / DLT_LOOP address families */
	bool swapped;      /* DLT_NULL written on a host of the other byte order */
};

static const struct linkvar linkvars[] = {
	{"LINUX_SLL", DLT_LINUX_SLL, 0, 0, 0, false},
	{"LINUX_SLL2", DLT_LINUX_SLL2, 0, 0, 0, false},
	{"RAW", DLT_RAW, 0, 0, 0, false},
	{"IPV4", DLT_IPV4, 4, 0, 0, false},
	{"IPV6", DLT_IPV6, 6, 0, 0, false},
	{"NULL (host order, AF_INET6 30)", DLT_NULL, 0, 2, 30, false},
	{"NULL (other byte order, AF_INET6 10)", DLT_NULL, 0, 2, 10, true},
	{"LOOP (network order, AF_INET6 24)", DLT_LOOP, 0, 2, 24, false},
};

static const struct linkvar *cur_var;
static uint8_t lframe[80 * 1024 + 32];

static bool var_takes(const struct linkvar *v, const struct tframe *t)
{
	if (t->l3 < 0 || (size_t)t->l3 > t->len)
		return false; /* no IP packet, or the frame ends before it */
	if (v->want == 4)
		return t->l3_proto == 0x0800;
	if (v->want == 6)
		return t->l3_proto == 0x86dd;
	return true;
}

/* The frame's IP packet behind the variant's link header. */
static size_t link_frame(size_t i, const uint8_t **data, uint32_t *caplen)
{
	const struct linkvar *v = cur_var;
	const struct tframe *t = &tab[i];
	size_t iplen, hl = 0;
	uint16_t proto;

	(void)caplen;
	if (!var_takes(v, t))
		return SIZE_MAX;
	iplen = t->len - (size_t)t->l3;
	proto = t->l3_proto;
	memset(lframe, 0, 32);
	switch (v->dlt) {
	case DLT_LINUX_SLL: /* packet type, ARPHRD, address length, address, protocol */
		put16(lframe, 0);     /* to us */
		put16(lframe + 2, 1); /* ARPHRD_ETHER */
		put16(lframe + 4, 6);
		memcpy(lframe + 6, t->data + 6, 6);
		put16(lframe + 14, proto);
		hl = 16;
		break;
	case DLT_LINUX_SLL2: /* protocol, reserved, ifindex, ARPHRD, type, addr len, addr */
		put16(lframe, proto);
		put32(lframe + 4, 7);
		put16(lframe + 8, 1);
		lframe[10] = 0;
		lframe[11] = 6;
		memcpy(lframe + 12, t->data + 6, 6);
		hl = 20;
		break;
	case DLT_NULL:
	case DLT_LOOP: {
		uint32_t fam = proto == 0x0800 ? v->fam4 : v->fam6;

		if (v->dlt == DLT_LOOP)
			fam = htonl(fam);
		else if (v->swapped)
			fam = __builtin_bswap32(fam);
		memcpy(lframe, &fam, 4);
		hl = 4;
		break;
	}
	default: /* raw IP */
		break;
	}
	memcpy(lframe + hl, t->data + t->l3, iplen);
	*data = lframe;
	return hl + iplen;
}

/* The IP packets of the table under every other link type: the same
 * records and counters as their Ethernet frames (checked against XDP too). */
static void test_link_types(void **state)
{
	size_t covered[NOUTCOMES] = {0};

	(void)state;
	need_envs();
	for (size_t v = 0; v < sizeof(linkvars) / sizeof(linkvars[0]); v++) {
		const struct linkvar *lv = &linkvars[v];
		struct pcap_pkthdr *h;
		const u_char *bytes;
		size_t i = 0, n = 0, nrecs = 0;
		pcap_t *pc;
		int rc;

		cur_var = lv;
		CASE("%s: writing the file", lv->name);
		CHECK(pcap_linktype_supported(lv->dlt), "the pcap path does not take %s", lv->name);
		pc = write_and_reopen(lv->dlt, FILE_SNAPLEN, ntab, link_frame);
		while ((rc = pcap_next_ex(pc, &h, &bytes)) == 1) {
			while (i < ntab && !var_takes(lv, &tab[i]))
				i++;
			CHECK(i < ntab, "%s: more frames in the file than written", lv->name);

			const struct tframe *t = &tab[i];

			CASE("%s: frame %zu (%s)", lv->name, i, t->name);
			run_pcap(DLT_EN10MB, t->data, (uint32_t)t->len, (uint32_t)t->len,
				 ts_ns_of(&h->ts), &r_ref);
			check_as_expected(t, &r_ref);
			CHECK(run_bpf(P_XDP, t->data, t->len, &r_xdp), "XDP refused the frame");
			same_records("pcap (Ethernet)", &r_ref.recs, "xdp (Ethernet)", &r_xdp.recs);
			same_counters("pcap (Ethernet)", &r_ref.k, "xdp (Ethernet)", &r_xdp.k);
			run_pcap(pcap_datalink(pc), bytes, h->caplen, h->len, ts_ns_of(&h->ts),
				 &r_pcap);
			same_records(lv->name, &r_pcap.recs, "Ethernet", &r_ref.recs);
			same_counters(lv->name, &r_pcap.k, "Ethernet", &r_ref.k);
			CHECK(r_pcap.as.drop_truncated == 0 && r_pcap.as.drop_queue_full == 0,
			      "agent drops counted");
			for (size_t o = 0; o < NOUTCOMES; o++)
				covered[o] += strcmp(outcome_names[o], t->outcome) == 0;
			nrecs += r_pcap.recs.n;
			n++;
			i++;
		}
		CASE("%s: end of the file", lv->name);
		CHECK(rc == PCAP_ERROR_BREAK, "pcap_next_ex: %d (%s)", rc, pcap_geterr(pc));
		pcap_close(pc);
		while (i < ntab && !var_takes(lv, &tab[i]))
			i++;
		CHECK(i == ntab, "%s: the file ends before frame %zu", lv->name, i);
		CHECK(n >= (lv->want == 6 ? 10u : 100u) && (lv->want == 6 || nrecs >= 100),
		      "%s: only %zu packets, %zu records", lv->name, n, nrecs);
		print_message("    %s: %zu packets, %zu records\n", lv->name, n, nrecs);
	}
	CASE("link types");
	for (size_t o = 0; o < NOUTCOMES; o++) {
		bool want = strcmp(outcome_names[o], "segments") == 0 ||
			    strcmp(outcome_names[o], "flow_events") == 0 ||
			    strcmp(outcome_names[o], "no_payload") == 0 ||
			    strcmp(outcome_names[o], "not_matched") == 0 ||
			    strcmp(outcome_names[o], "short_frame") == 0 ||
			    strcmp(outcome_names[o], "drop_fragment") == 0 ||
			    strcmp(outcome_names[o], "drop_malformed") == 0 ||
			    strcmp(outcome_names[o], "drop_ipv6") == 0;

		CHECK(!want || covered[o] > 0, "no packet under another link type was %s",
		      outcome_names[o]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_parity),
		cmocka_unit_test(test_snaplen_cut),
		cmocka_unit_test(test_snaplen_headers),
		cmocka_unit_test(test_link_types),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
