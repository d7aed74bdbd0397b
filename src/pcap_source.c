/* pcap_source.c -- the libpcap capture backend (live interface or a file).
 *
 * For kernels where the BPF path cannot run, for capture files taken
 * elsewhere (a mirror port), and as the like-for-like baseline the
 * benchmark compares against.  One reader thread takes frames from libpcap,
 * runs the same parser the BPF programs run (mrte_parse.h, here with a
 * bounds-checked memcpy as its loader), builds the same records, and pushes
 * each into the queue of the publisher that owns the client -- the same
 * flow hash as the kernel's ring choice, so ordering works the same way.
 *
 * Live capture: inbound frames only (except on loopback, where the kernel
 * shows each packet once, as outgoing), immediate mode, a kernel filter on
 * the destination port(s).  A payload cut by --snapshot_len is counted as
 * drop_truncated and never published as if it were whole.  A full publisher
 * queue drops the segment (drop_queue_full) rather than stall the reader
 * and overflow the kernel buffer unseen.
 *
 * A file is read as fast as the publishers take it: the reader waits for
 * queue room instead of dropping, and capture_done() turns true at EOF.
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capture_impl.h"
#include "counters.h"
#include "log.h"
#include "pcap_parse.h"
#include "queue.h"

struct pcap_capture {
	const struct mrte_config *cfg;
	pcap_t *pc;
	int linktype;
	bool offline;
	unsigned nq;
	struct rec_queue *q[MRTE_MAX_RINGS];
	struct mrte_filter filter;
	pthread_t reader;
	bool started;
	bool stop; /* atomic */
	bool done; /* atomic: reader finished (EOF or error) */
	struct mrte_kstats ks;       /* written by the reader only */
	struct mrte_agent_stats as;  /* drop_queue_full, drop_truncated, pcap_* */
	uint8_t chunk[sizeof(struct mrte_rec) + MRTE_CHUNK];
};

/* ---- frames to records (shared with the parity tests via pcap_parse.h) ---- */

struct frame {
	const uint8_t *data;
	uint32_t caplen;
};

static inline int frame_load(const struct frame *f, uint32_t off, void *dst, uint32_t len)
{
	if (off > f->caplen || len > f->caplen - off)
		return -1;
	memcpy(dst, f->data + off, len);
	return 0;
}

#define MRTE_LOAD(ctx, kind, off, dst, len) ((void)(kind), frame_load((const struct frame *)(ctx), off, dst, len))
#include "mrte_parse.h"

/* Where the network header starts and what it is, per link type. */
static int link_layer(int linktype, const struct frame *f, __u32 *off, __u16 *ethertype)
{
	uint8_t b[4];

	switch (linktype) {
	case DLT_LINUX_SLL: /* 16-byte cooked header, protocol at 14 */
		if (frame_load(f, 14, b, 2))
			return -1;
		*off = 16;
		*ethertype = mrte_be16(b);
		return 0;
	case DLT_LINUX_SLL2: /* 20-byte cooked header, protocol first */
		if (frame_load(f, 0, b, 2))
			return -1;
		*off = 20;
		*ethertype = mrte_be16(b);
		return 0;
	case DLT_RAW:
	case DLT_IPV4:
	case DLT_IPV6:
		if (frame_load(f, 0, b, 1))
			return -1;
		*off = 0;
		*ethertype = (b[0] >> 4) == 6 ? MRTE_ETH_P_IPV6 : MRTE_ETH_P_IP;
		return 0;
	case DLT_NULL: /* BSD loopback: address family, host byte order */
	case DLT_LOOP: /* ... network byte order */
	{
		uint32_t fam;

		if (frame_load(f, 0, b, 4))
			return -1;
		memcpy(&fam, b, 4);
		if (linktype == DLT_LOOP)
			fam = ntohl(fam);
		else if (fam > 0xffff)
			fam = __builtin_bswap32(fam); /* written on a host of the other endianness */
		*off = 4;
		/* AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 by OS. */
		*ethertype = fam == 2 ? MRTE_ETH_P_IP
			     : (fam == 10 || fam == 24 || fam == 28 || fam == 30) ? MRTE_ETH_P_IPV6
										 : 0;
		return 0;
	}
	default:
		return -1;
	}
}

bool pcap_linktype_supported(int linktype)
{
	switch (linktype) {
	case DLT_EN10MB:
	case DLT_LINUX_SLL:
	case DLT_LINUX_SLL2:
	case DLT_RAW:
	case DLT_IPV4:
	case DLT_IPV6:
	case DLT_NULL:
	case DLT_LOOP:
		return true;
	default:
		return false;
	}
}

int pcap_frame_records(int linktype, const uint8_t *data, uint32_t caplen, uint32_t wirelen,
		       uint64_t ts_ns, const struct mrte_filter *filter, struct mrte_kstats *ks,
		       struct mrte_agent_stats *as, pcap_record_fn emit, void *ctx)
{
	const struct frame f = {data, caplen};
	/* The parser gets the frame's length on the wire, as the kernel's
	 * does, not what the snapshot kept: a total length past the real
	 * frame is then malformed on both paths, and a BIG TCP packet (total
	 * length 0) is sized by the real frame -- sized by caplen, a cut one
	 * would pass for a whole, shorter segment.  The loads stay within
	 * caplen; whether the payload was kept is checked before emitting. */
	const uint32_t pkt_len = wirelen > caplen ? wirelen : caplen;
	struct mrte_pkt p = {0};
	enum mrte_verdict v;

	ks->frames++;
	if (linktype == DLT_EN10MB) {
		v = mrte_parse_eth((void *)&f, 0, pkt_len, filter, &p);
	} else {
		__u32 off;
		__u16 et;

		if (link_layer(linktype, &f, &off, &et)) {
			ks->short_frame++;
			return 0;
		}
		v = mrte_parse_l3((void *)&f, 0, off, et, pkt_len, filter, &p);
	}
	switch (v) {
	case MRTE_V_NOT_MATCHED:
		ks->not_matched++;
		return 0;
	case MRTE_V_SHORT:
		/* A header cut by the snapshot length is still a short frame:
		 * the port was never seen, so nobody can say it was ours. */
		ks->short_frame++;
		return 0;
	case MRTE_V_IPV6:
		ks->matched++;
		ks->drop_ipv6++;
		return 0;
	case MRTE_V_FRAGMENT:
		ks->matched++;
		ks->drop_fragment++;
		return 0;
	case MRTE_V_MALFORMED:
	case MRTE_V_TRUNCATED: /* the total length runs past the frame on the wire */
		ks->matched++;
		ks->drop_malformed++;
		return 0;
	case MRTE_V_MATCHED:
		break;
	}
	ks->matched++;
	if (p.payload_len == 0 && !(p.flags & (MRTE_TCP_SYN | MRTE_TCP_FIN | MRTE_TCP_RST))) {
		ks->no_payload++;
		return 0;
	}
	if (p.payload_len > (__u32)MRTE_CHUNK * MRTE_MAX_CHUNKS) {
		ks->drop_oversize++;
		return 0;
	}
	if (p.payload_len && (uint64_t)p.payload_off + p.payload_len > caplen) {
		as->drop_truncated++; /* cut by --snapshot_len: never publish a partial */
		return 0;
	}

	struct mrte_rec rec = {
		.ts_ns = ts_ns, .saddr = p.saddr, .daddr = p.daddr, .sport = p.sport,
		.dport = p.dport, .seg_len = p.payload_len, .seq = p.seq, .flags = p.flags,
	};

	if (p.payload_len == 0) {
		if (emit(ctx, &rec, NULL)) {
			as->drop_queue_full++;
			return -1;
		}
		ks->records++;
		ks->flow_events++;
		return 0;
	}
	for (uint32_t i = 0, done = 0; done < p.payload_len; i++, done += MRTE_CHUNK) {
		uint32_t n = p.payload_len - done;
		bool last = n <= MRTE_CHUNK;

		if (!last)
			n = MRTE_CHUNK;
		/* Data after a SYN starts at seq + 1; only the first record
		 * carries the SYN flag that tells the consumer so. */
		rec.seq = p.seq + done + (i && (p.flags & MRTE_TCP_SYN) ? 1 : 0);
		rec.len = (__u16)n;
		rec.chunk = (__u8)i;
		rec.flags = p.flags & ~((i ? MRTE_TCP_SYN : 0) | (last ? 0 : MRTE_TCP_FIN));
		if (emit(ctx, &rec, data + p.payload_off + done)) {
			as->drop_queue_full++;
			return -1;
		}
		ks->records++;
		ks->bytes += n;
	}
	ks->segments++;
	return 0;
}

/* ---- the reader thread ----------------------------------------------------------- */

struct emit_ctx {
	struct pcap_capture *p;
};

static int emit_to_queue(void *ctx, const struct mrte_rec *rec, const uint8_t *payload)
{
	struct pcap_capture *p = ((struct emit_ctx *)ctx)->p;
	struct rec_queue *q = p->q[mrte_flow_hash(rec->saddr, rec->sport) % p->nq];

	while (rec_queue_push(q, rec, payload)) {
		if (!p->offline || __atomic_load_n(&p->stop, __ATOMIC_RELAXED))
			return -1;
		usleep(200); /* a file waits for the publishers; a live capture cannot */
	}
	return 0;
}

/* Counters the stats thread reads: copy the reader's private block out
 * with relaxed stores (one writer). */
static void publish_counters(struct pcap_capture *p, const struct mrte_kstats *ks,
			     const struct mrte_agent_stats *as)
{
	const __u64 *src = (const __u64 *)ks;
	__u64 *dst = (__u64 *)&p->ks;

	for (size_t i = 0; i < sizeof(*ks) / sizeof(__u64); i++)
		CTR_SET(dst[i], src[i]);
	CTR_SET(p->as.drop_queue_full, as->drop_queue_full);
	CTR_SET(p->as.drop_truncated, as->drop_truncated);
}

static void read_pcap_stats(struct pcap_capture *p)
{
	struct pcap_stat st;

	if (p->offline || pcap_stats(p->pc, &st))
		return;
	CTR_SET(p->as.pcap_dropped, st.ps_drop);
	CTR_SET(p->as.pcap_ifdropped, st.ps_ifdrop);
}

struct reader_state {
	struct pcap_capture *p;
	struct mrte_kstats ks;
	struct mrte_agent_stats as;
	struct emit_ctx ec;
};

static void on_frame(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct reader_state *r = (struct reader_state *)user;
	/* Live: the monotonic clock, like the kernel path, so session events
	 * order against records the same way.  A file keeps its own time. */
	uint64_t ts = r->p->offline ? (uint64_t)h->ts.tv_sec * 1000000000ull +
					      (uint64_t)h->ts.tv_usec * 1000ull
				    : mono_ns();

	pcap_frame_records(r->p->linktype, bytes, h->caplen, h->len, ts, &r->p->filter, &r->ks,
			   &r->as, emit_to_queue, &r->ec);
}

static void *reader_main(void *arg)
{
	struct pcap_capture *p = arg;
	struct reader_state *r = calloc(1, sizeof(*r));
	uint64_t next_pub = 0;

	pthread_setname_np(pthread_self(), "mrte-pcap");
	if (!r) {
		log_error("pcap reader: out of memory");
		__atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
		return NULL;
	}
	r->p = p;
	r->ec.p = p;
	int fd = p->offline ? -1 : pcap_get_selectable_fd(p->pc);

	while (!__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
		int rc;

		if (fd >= 0) {
			struct pollfd pfd = {.fd = fd, .events = POLLIN};

			poll(&pfd, 1, 100);
			rc = pcap_dispatch(p->pc, -1, on_frame, (u_char *)r);
		} else {
			rc = pcap_dispatch(p->pc, 256, on_frame, (u_char *)r);
			if (rc == 0) {
				publish_counters(p, &r->ks, &r->as);
				break; /* end of file */
			}
		}
		if (rc < 0 && rc != PCAP_ERROR_BREAK) {
			log_error("pcap: %s", pcap_geterr(p->pc));
			break;
		}
		uint64_t now = mono_ns();

		if (now >= next_pub) {
			publish_counters(p, &r->ks, &r->as);
			read_pcap_stats(p);
			next_pub = now + 50000000ull;
		}
	}
	publish_counters(p, &r->ks, &r->as);
	read_pcap_stats(p);
	free(r);
	__atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* ---- opening ------------------------------------------------------------------------- */

/* "tcp dst port (3306 or 3307)", also under one or two VLAN tags. */
static void build_filter(const struct mrte_config *cfg, char *buf, size_t len, bool vlan)
{
	char ports[128] = "";
	size_t n = 0;

	for (uint32_t i = 0; i < cfg->nports; i++)
		n += (size_t)snprintf(ports + n, sizeof(ports) - n, "%s%u", i ? " or " : "",
				      cfg->ports[i]);
	if (vlan)
		snprintf(buf, len,
			 "(tcp dst port (%s)) or (vlan and tcp dst port (%s)) or "
			 "(vlan and vlan and tcp dst port (%s))",
			 ports, ports, ports);
	else
		snprintf(buf, len, "tcp dst port (%s)", ports);
}

static int set_filter(struct pcap_capture *p, char *err, size_t errlen)
{
	struct bpf_program prog;
	char expr[512];

	build_filter(p->cfg, expr, sizeof(expr), true);
	if (pcap_compile(p->pc, &prog, expr, 1, PCAP_NETMASK_UNKNOWN)) {
		/* Some link types have no VLAN syntax: the plain filter. */
		build_filter(p->cfg, expr, sizeof(expr), false);
		if (pcap_compile(p->pc, &prog, expr, 1, PCAP_NETMASK_UNKNOWN)) {
			snprintf(err, errlen, "cannot compile filter '%s': %s", expr,
				 pcap_geterr(p->pc));
			return -1;
		}
	}
	int rc = pcap_setfilter(p->pc, &prog);

	pcap_freecode(&prog);
	if (rc) {
		snprintf(err, errlen, "cannot set filter: %s", pcap_geterr(p->pc));
		return -1;
	}
	log_debug("pcap filter: %s", expr);
	return 0;
}

static bool is_loopback(const char *ifname)
{
	unsigned flags = 0;
	pcap_if_t *all, *i;
	char errbuf[PCAP_ERRBUF_SIZE];

	if (pcap_findalldevs(&all, errbuf))
		return !strcmp(ifname, "lo");
	for (i = all; i; i = i->next)
		if (!strcmp(i->name, ifname))
			flags = i->flags;
	pcap_freealldevs(all);
	return (flags & PCAP_IF_LOOPBACK) || !strcmp(ifname, "lo");
}

static pcap_t *open_live(const struct mrte_config *cfg, uint32_t buffer_mb, char *err,
			 size_t errlen)
{
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	pcap_t *pc = pcap_create(cfg->interface, errbuf);

	if (!pc) {
		snprintf(err, errlen, "%s", errbuf);
		return NULL;
	}
	pcap_set_snaplen(pc, (int)cfg->snapshot_len);
	pcap_set_promisc(pc, 0);
	pcap_set_immediate_mode(pc, 1);
	pcap_set_timeout(pc, (int)cfg->read_timeout_ms);
	pcap_set_buffer_size(pc, (int)(buffer_mb << 20));
	int rc = pcap_activate(pc);

	if (rc < 0) {
		snprintf(err, errlen, "cannot capture on %s: %s%s", cfg->interface, pcap_geterr(pc),
			 rc == PCAP_ERROR_PERM_DENIED ? " (needs CAP_NET_RAW)" : "");
		pcap_close(pc);
		return NULL;
	}
	if (rc > 0)
		log_warn("pcap on %s: %s", cfg->interface, pcap_statustostr(rc));
	/* On loopback every packet passes once, as outgoing: keep both
	 * directions there; the destination-port filter does the rest. */
	if (!is_loopback(cfg->interface) && pcap_setdirection(pc, PCAP_D_IN))
		log_warn("pcap on %s: cannot restrict to inbound frames (%s); the filter on the "
			 "destination port still applies",
			 cfg->interface, pcap_geterr(pc));
	if (pcap_setnonblock(pc, 1, errbuf))
		log_warn("pcap on %s: %s", cfg->interface, errbuf);
	return pc;
}

struct pcap_capture *pcap_capture_open(const struct mrte_config *cfg, uint32_t buffer_mb,
				       char *err, size_t errlen)
{
	struct pcap_capture *p = calloc(1, sizeof(*p));
	char errbuf[PCAP_ERRBUF_SIZE] = "";

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->cfg = cfg;
	p->offline = cfg->read_file != NULL;
	p->nq = cfg->thread_count;
	for (uint32_t i = 0; i < cfg->nports; i++)
		p->filter.ports[i] = cfg->ports[i];
	p->filter.nports = cfg->nports;

	if (p->offline) {
		p->pc = pcap_open_offline_with_tstamp_precision(cfg->read_file,
								PCAP_TSTAMP_PRECISION_MICRO, errbuf);
		if (!p->pc)
			snprintf(err, errlen, "cannot read %s: %s", cfg->read_file, errbuf);
	} else {
		p->pc = open_live(cfg, buffer_mb, err, errlen);
	}
	if (!p->pc)
		goto fail;
	p->linktype = pcap_datalink(p->pc);
	if (!pcap_linktype_supported(p->linktype)) {
		snprintf(err, errlen, "link type %s is not supported (Ethernet, Linux cooked, raw IP "
			 "and BSD loopback are)",
			 pcap_datalink_val_to_name(p->linktype));
		goto fail;
	}
	if (set_filter(p, err, errlen))
		goto fail;
	for (unsigned i = 0; i < p->nq; i++) {
		p->q[i] = rec_queue_new((size_t)cfg->ring_mb << 20);
		if (!p->q[i]) {
			snprintf(err, errlen, "out of memory for the publisher queues");
			goto fail;
		}
	}
	return p;
fail:
	pcap_capture_free(p);
	return NULL;
}

/* ---- the capture interface ------------------------------------------------------------ */

struct feed *pcap_capture_feed(struct pcap_capture *p, unsigned idx, feed_record_fn fn, void *ctx)
{
	return idx < p->nq ? rec_queue_feed(p->q[idx], fn, ctx) : NULL;
}

int pcap_capture_start(struct pcap_capture *p)
{
	if (pthread_create(&p->reader, NULL, reader_main, p))
		return -1;
	p->started = true;
	return 0;
}

bool pcap_capture_done(const struct pcap_capture *p)
{
	return __atomic_load_n(&p->done, __ATOMIC_ACQUIRE);
}

void pcap_capture_kstats(struct pcap_capture *p, struct mrte_kstats *out)
{
	const __u64 *src = (const __u64 *)&p->ks;
	__u64 *dst = (__u64 *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(__u64); i++)
		dst[i] = CTR_GET(src[i]);
}

void pcap_capture_agent_stats(struct pcap_capture *p, struct mrte_agent_stats *a)
{
	a->drop_queue_full += CTR_GET(p->as.drop_queue_full);
	a->drop_truncated += CTR_GET(p->as.drop_truncated);
	a->pcap_dropped += CTR_GET(p->as.pcap_dropped);
	a->pcap_ifdropped += CTR_GET(p->as.pcap_ifdropped);
}

uint64_t pcap_capture_if_drops(struct pcap_capture *p)
{
	return CTR_GET(p->as.pcap_ifdropped);
}

void pcap_capture_stop(struct pcap_capture *p)
{
	if (!p || !p->started)
		return;
	__atomic_store_n(&p->stop, true, __ATOMIC_RELAXED);
	pcap_breakloop(p->pc);
	pthread_join(p->reader, NULL);
	p->started = false;
}

void pcap_capture_free(struct pcap_capture *p)
{
	if (!p)
		return;
	pcap_capture_stop(p);
	if (p->pc)
		pcap_close(p->pc);
	for (unsigned i = 0; i < MRTE_MAX_RINGS; i++)
		rec_queue_free(p->q[i]);
	free(p);
}
