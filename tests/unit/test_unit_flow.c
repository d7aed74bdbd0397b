/* test_unit_flow.c -- the flow tracker: TCP order in, MySQL packets out.
 *
 * Records are built by hand (struct mrte_rec + payload) and every unit the
 * table emits is recorded, so each test states exactly which units -- bytes
 * and order -- a sequence of segments must produce, and which counter each
 * unpublished segment lands in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "flow.h"

#define T0 1000000000ull       /* a time after zero */
#define TIMEOUT 100000000ull   /* reorder_timeout: 100 ms */
#define MS 1000000ull

/* ---- fixture: a table whose units land in an array --------------------------- */

struct unit {
	uint32_t saddr;
	uint16_t sport;
	size_t len;
	uint8_t *data;
};

struct fx {
	struct flow_table *t;
	struct mrte_agent_stats st;
	struct unit *u;
	size_t n, cap;
};

static void on_unit(void *ctx, uint32_t saddr, uint16_t sport, const uint8_t *a, size_t alen,
		    const uint8_t *b, size_t blen)
{
	struct fx *fx = ctx;

	if (fx->n == fx->cap) {
		fx->cap = fx->cap ? fx->cap * 2 : 64;
		fx->u = realloc(fx->u, fx->cap * sizeof(*fx->u));
		assert_non_null(fx->u);
	}
	struct unit *u = &fx->u[fx->n++];

	u->saddr = saddr;
	u->sport = sport;
	u->len = alen + blen;
	u->data = malloc(u->len ? u->len : 1);
	assert_non_null(u->data);
	if (alen)
		memcpy(u->data, a, alen);
	if (blen)
		memcpy(u->data + alen, b, blen);
}

static void fx_clear_units(struct fx *fx)
{
	for (size_t i = 0; i < fx->n; i++)
		free(fx->u[i].data);
	fx->n = 0;
}

static struct fx *fx_new(uint32_t max_flows, uint64_t budget)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct flow_params p = {
		.max_flows = max_flows,
		.reorder_timeout_ns = TIMEOUT,
		.reorder_budget = budget,
		.unit = on_unit,
		.stats = NULL,
	};

	assert_non_null(fx);
	p.ctx = fx;
	p.stats = &fx->st;
	fx->t = flow_table_new(&p);
	assert_non_null(fx->t);
	return fx;
}

static void fx_free(struct fx *fx)
{
	flow_table_free(fx->t);
	fx_clear_units(fx);
	free(fx->u);
	free(fx);
}

static int setup(void **state)
{
	*state = fx_new(64, 1 << 20);
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- clients, records, MySQL packets --------------------------------------------- */

static uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	uint8_t bytes[4] = {a, b, c, d};
	uint32_t v;

	memcpy(&v, bytes, 4);
	return v;
}

#define CLI ip4(10, 0, 0, 2)
#define SRV ip4(10, 0, 0, 1)
#define ISN 1000u /* the client's SYN sequence number; data starts at ISN + 1 */

/* One record: the whole segment when it fits a chunk. */
static void rec_in(struct fx *fx, uint32_t saddr, uint16_t sport, uint32_t seq, uint8_t flags,
		   const void *data, size_t len, uint64_t now)
{
	struct mrte_rec r = {
		.ts_ns = now,
		.saddr = saddr,
		.daddr = SRV,
		.seq = seq,
		.sport = sport,
		.dport = 3306,
		.len = (uint16_t)len,
		.flags = flags,
		.chunk = 0,
		.seg_len = (uint32_t)len,
	};

	assert_true(len <= MRTE_CHUNK);
	flow_input(fx->t, &r, data, now);
}

/* Data of client port `sport` at stream offset `off` (0 = first byte after the SYN). */
static void data_in(struct fx *fx, uint16_t sport, uint32_t off, const void *d, size_t len,
		    uint64_t now)
{
	rec_in(fx, CLI, sport, ISN + 1 + off, MRTE_TCP_ACK | MRTE_TCP_PSH, d, len, now);
}

static void syn_in(struct fx *fx, uint16_t sport, uint64_t now)
{
	rec_in(fx, CLI, sport, ISN, MRTE_TCP_SYN, NULL, 0, now);
}

static void fin_in(struct fx *fx, uint16_t sport, uint32_t off, uint64_t now)
{
	rec_in(fx, CLI, sport, ISN + 1 + off, MRTE_TCP_FIN | MRTE_TCP_ACK, NULL, 0, now);
}

static void rst_in(struct fx *fx, uint16_t sport, uint32_t off, uint64_t now)
{
	rec_in(fx, CLI, sport, ISN + 1 + off, MRTE_TCP_RST, NULL, 0, now);
}

struct pkt {
	uint8_t b[20000];
	size_t len;
};

/* A MySQL packet: 3-byte length, sequence id, payload. */
static struct pkt mpkt(uint8_t seq, const void *payload, size_t n)
{
	struct pkt p;

	p.b[0] = (uint8_t)n;
	p.b[1] = (uint8_t)(n >> 8);
	p.b[2] = (uint8_t)(n >> 16);
	p.b[3] = seq;
	memcpy(p.b + 4, payload, n);
	p.len = 4 + n;
	return p;
}

/* COM_QUERY with the given text. */
static struct pkt query(const char *sql)
{
	uint8_t buf[20000];
	size_t n = strlen(sql);

	buf[0] = 0x03;
	memcpy(buf + 1, sql, n);
	return mpkt(0, buf, 1 + n);
}

/* COM_QUERY of exactly `total` packet bytes, filled with text. */
static struct pkt long_query(size_t total, char fill)
{
	uint8_t buf[20000];

	buf[0] = 0x03;
	memset(buf + 1, fill, total - 5);
	return mpkt(0, buf, total - 4);
}

#define CAPS_PLAIN 0x0003a20fu /* PROTOCOL_41 | SECURE_CONNECTION | CONNECT_WITH_DB ... */

/* HandshakeResponse41 (sequence id 1) naming user and database. */
static struct pkt handshake(uint32_t caps, const char *user, const char *db)
{
	uint8_t buf[256];
	size_t n = 0;

	buf[n++] = (uint8_t)caps;
	buf[n++] = (uint8_t)(caps >> 8);
	buf[n++] = (uint8_t)(caps >> 16);
	buf[n++] = (uint8_t)(caps >> 24);
	memcpy(buf + n, "\x00\x00\x00\x01", 4); /* max packet size */
	n += 4;
	buf[n++] = 33; /* utf8_general_ci */
	memset(buf + n, 0, 23);
	n += 23;
	if (caps & MYSQL_CLIENT_SSL) /* an SSLRequest ends here */
		return mpkt(1, buf, n);
	memcpy(buf + n, user, strlen(user) + 1);
	n += strlen(user) + 1;
	buf[n++] = 0; /* empty auth response */
	memcpy(buf + n, db, strlen(db) + 1);
	n += strlen(db) + 1;
	return mpkt(1, buf, n);
}

static const uint8_t QUIT[5] = {0x01, 0x00, 0x00, 0x00, 0x01};

static void assert_unit(const struct fx *fx, size_t i, uint16_t sport, const void *d, size_t len)
{
	if (i >= fx->n)
		fail_msg("unit %zu expected, only %zu emitted", i, fx->n);
	assert_int_equal(fx->u[i].saddr, CLI);
	assert_int_equal(fx->u[i].sport, sport);
	if (fx->u[i].len != len)
		fail_msg("unit %zu: %zu bytes, expected %zu", i, fx->u[i].len, len);
	assert_memory_equal(fx->u[i].data, d, len);
}

static void assert_init_db(const struct fx *fx, size_t i, uint16_t sport, const char *db)
{
	uint8_t want[300];
	size_t n = strlen(db);

	want[0] = (uint8_t)(n + 1);
	want[1] = 0;
	want[2] = 0;
	want[3] = 0x00;
	want[4] = 0x02;
	memcpy(want + 5, db, n);
	assert_unit(fx, i, sport, want, 5 + n);
}

/* ---- a connection from its SYN --------------------------------------------------------- */

static void test_syn_handshake_queries(void **state)
{
	struct fx *fx = *state;
	struct pkt hs = handshake(CAPS_PLAIN, "app", "shop");
	struct pkt q1 = query("SELECT 1"), q2 = query("SELECT * FROM orders WHERE id = 42");
	uint32_t off = 0;

	syn_in(fx, 40000, T0);
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.flows_active, 1);
	data_in(fx, 40000, off, hs.b, hs.len, T0 + 1);
	off += (uint32_t)hs.len;
	data_in(fx, 40000, off, q1.b, q1.len, T0 + 2);
	off += (uint32_t)q1.len;
	data_in(fx, 40000, off, q2.b, q2.len, T0 + 3);

	assert_int_equal(fx->n, 3);
	assert_unit(fx, 0, 40000, hs.b, hs.len);
	assert_unit(fx, 1, 40000, q1.b, q1.len);
	assert_unit(fx, 2, 40000, q2.b, q2.len);
	assert_int_equal(fx->st.units, 3);
	assert_int_equal(fx->st.segments_published, 3);
	assert_int_equal(fx->st.payload_bytes, hs.len + q1.len + q2.len);
	assert_int_equal(fx->st.drop_desync, 0);
	assert_int_equal(flow_count(fx->t), 1);
}

static void test_pipelined(void **state)
{
	struct fx *fx = *state;
	struct pkt a = query("SELECT 1"), b = query("SELECT 2"), c = mpkt(0, "\x0e", 1); /* PING */
	uint8_t seg[256];
	size_t n = 0;

	memcpy(seg + n, a.b, a.len);
	n += a.len;
	memcpy(seg + n, b.b, b.len);
	n += b.len;
	memcpy(seg + n, c.b, c.len);
	n += c.len;
	syn_in(fx, 40001, T0);
	data_in(fx, 40001, 0, seg, n, T0);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 0, 40001, a.b, a.len);
	assert_unit(fx, 1, 40001, b.b, b.len);
	assert_unit(fx, 2, 40001, c.b, c.len);
	assert_int_equal(fx->st.segments_published, 1);
}

static void concat_units(const struct fx *fx, size_t from, uint8_t *out, size_t *len)
{
	*len = 0;
	for (size_t i = from; i < fx->n; i++) {
		memcpy(out + *len, fx->u[i].data, fx->u[i].len);
		*len += fx->u[i].len;
	}
}

static void test_packet_over_three_segments(void **state)
{
	struct fx *fx = *state;
	struct pkt p = long_query(104, 'x');
	uint8_t all[200];
	size_t n;

	syn_in(fx, 40002, T0);
	data_in(fx, 40002, 0, p.b, 40, T0);
	data_in(fx, 40002, 40, p.b + 40, 40, T0);
	/* Assembled: the player never sees half a packet. */
	assert_int_equal(fx->n, 0);
	data_in(fx, 40002, 80, p.b + 80, 24, T0);
	assert_int_equal(fx->n, 1);
	assert_unit(fx, 0, 40002, p.b, p.len);
	concat_units(fx, 0, all, &n);
	assert_int_equal(n, p.len);
	assert_memory_equal(all, p.b, p.len);
	assert_int_equal(fx->st.segments_published, 3);
	assert_int_equal(fx->st.packets_streamed, 0);

	/* The next packet starts a unit of its own. */
	struct pkt q = query("COMMIT");

	data_in(fx, 40002, 104, q.b, q.len, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40002, q.b, q.len);
}

/* A packet larger than a record, over many segments: assembled, then
 * written as consecutive units of at most MRTE_CHUNK bytes, the first
 * starting with the header, all at once when the last byte arrives. */
static void test_large_packet_assembled(void **state)
{
	struct fx *fx = *state;
	static struct pkt p;
	uint8_t *all = malloc(sizeof(p.b));
	size_t n;

	p = long_query(19000, 'L');
	syn_in(fx, 40004, T0);
	for (uint32_t off = 0; off < p.len; off += 1400) {
		uint32_t k = p.len - off < 1400 ? (uint32_t)(p.len - off) : 1400;

		assert_int_equal(fx->n, 0);
		data_in(fx, 40004, off, p.b + off, k, T0);
	}
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 0, 40004, p.b, MRTE_CHUNK);
	assert_unit(fx, 1, 40004, p.b + MRTE_CHUNK, p.len - MRTE_CHUNK);
	concat_units(fx, 0, all, &n);
	assert_int_equal(n, p.len);
	assert_memory_equal(all, p.b, p.len);
	assert_int_equal(fx->st.packets_streamed, 0);
	free(all);
}

/* A segment lost inside a packet being assembled: nothing of that packet
 * reaches the player (it would hold half a statement forever), the loss is
 * counted, and the stream resumes at the next command -- no synthetic
 * COM_QUIT is needed. */
static void test_gap_inside_packet(void **state)
{
	struct fx *fx = *state;
	struct pkt q = query("SELECT 1"), big = long_query(300, 'g'), q2 = query("SELECT 2");
	uint32_t off = 0;

	syn_in(fx, 40005, T0);
	data_in(fx, 40005, off, q.b, q.len, T0);
	off += (uint32_t)q.len;
	data_in(fx, 40005, off, big.b, 100, T0);           /* piece 1 */
	data_in(fx, 40005, off + 200, big.b + 200, 100, T0); /* piece 3; piece 2 lost */
	data_in(fx, 40005, off + 300, q2.b, q2.len, T0);
	assert_int_equal(fx->n, 1);
	flow_tick(fx->t, T0 + TIMEOUT);
	assert_int_equal(fx->st.drop_gap, 1);
	assert_int_equal(fx->n, 2); /* SELECT 1, then SELECT 2; no part of big */
	assert_unit(fx, 0, 40005, q.b, q.len);
	assert_unit(fx, 1, 40005, q2.b, q2.len);
	assert_int_equal(fx->st.synthetic_quit, 0);
	assert_int_equal(fx->st.drop_desync, 1); /* piece 3: no packet start */

	/* FIN inside a packet: the half packet is dropped, the session ends. */
	struct pkt big2 = long_query(300, 'h');

	off += 300 + (uint32_t)q2.len;
	data_in(fx, 40005, off, big2.b, 100, T0 + TIMEOUT);
	fin_in(fx, 40005, off + 100, T0 + TIMEOUT);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 2, 40005, QUIT, sizeof(QUIT));
	assert_int_equal(fx->st.drop_gap, 2);
	assert_int_equal(fx->st.flows_active, 0);
}

/* The first piece ends inside the 8 bytes the tracker gathers. */
static void test_header_split(void **state)
{
	struct fx *fx = *state;
	struct pkt p = long_query(60, 'y');
	struct pkt quit = mpkt(0, "\x01", 1);

	for (uint32_t cut = 1; cut < 12; cut++) {
		uint16_t port = (uint16_t)(41000 + cut);

		fx_clear_units(fx);
		syn_in(fx, port, T0);
		data_in(fx, port, 0, p.b, cut, T0);
		if (cut < 8) {
			/* Nothing yet: a unit must start with a complete header. */
			assert_int_equal(fx->n, 0);
			data_in(fx, port, cut, p.b + cut, p.len - cut, T0);
			assert_int_equal(fx->n, 1);
			assert_unit(fx, 0, port, p.b, p.len);
		} else {
			assert_int_equal(fx->n, 0); /* assembled, not streamed */
			data_in(fx, port, cut, p.b + cut, p.len - cut, T0);
			assert_int_equal(fx->n, 1);
			assert_unit(fx, 0, port, p.b, p.len);
		}
	}
	/* A packet shorter than 8 bytes (COM_QUIT) split 2 + 3. */
	fx_clear_units(fx);
	syn_in(fx, 42000, T0);
	data_in(fx, 42000, 0, quit.b, 2, T0);
	assert_int_equal(fx->n, 0);
	data_in(fx, 42000, 2, quit.b + 2, 3, T0);
	assert_int_equal(fx->n, 1);
	assert_unit(fx, 0, 42000, QUIT, 5);
	/* Header pieces one byte at a time, then the rest with the next packet. */
	struct pkt q = query("SELECT 'a'");
	uint8_t seg[128];

	fx_clear_units(fx);
	syn_in(fx, 42001, T0);
	for (uint32_t i = 0; i < 3; i++)
		data_in(fx, 42001, i, p.b + i, 1, T0);
	assert_int_equal(fx->n, 0);
	memcpy(seg, p.b + 3, p.len - 3);
	memcpy(seg + p.len - 3, q.b, q.len);
	data_in(fx, 42001, 3, seg, p.len - 3 + q.len, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 0, 42001, p.b, p.len);
	assert_unit(fx, 1, 42001, q.b, q.len);
}

/* A segment larger than MRTE_CHUNK arrives as two records; one segment. */
static void test_chunked_segment(void **state)
{
	struct fx *fx = *state;
	struct pkt p = long_query(20000, 'z');
	struct mrte_rec r = {.saddr = CLI, .daddr = SRV, .sport = 40003, .dport = 3306,
			     .seg_len = (uint32_t)p.len, .flags = MRTE_TCP_ACK};

	syn_in(fx, 40003, T0);
	r.seq = ISN + 1;
	r.len = MRTE_CHUNK;
	r.chunk = 0;
	flow_input(fx->t, &r, p.b, T0);
	assert_int_equal(fx->st.segments_published, 0); /* not the last record yet */
	r.seq = ISN + 1 + MRTE_CHUNK;
	r.len = (uint16_t)(p.len - MRTE_CHUNK);
	r.chunk = 1;
	flow_input(fx->t, &r, p.b + MRTE_CHUNK, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 0, 40003, p.b, MRTE_CHUNK);
	assert_unit(fx, 1, 40003, p.b + MRTE_CHUNK, p.len - MRTE_CHUNK);
	assert_int_equal(fx->st.segments_published, 1);
}

/* ---- retransmission and reordering ---------------------------------------------------- */

static void test_retransmission(void **state)
{
	struct fx *fx = *state;
	struct pkt q = query("SELECT 1");
	struct pkt p = long_query(60, 'r');

	syn_in(fx, 40010, T0);
	data_in(fx, 40010, 0, q.b, q.len, T0);
	data_in(fx, 40010, 0, q.b, q.len, T0 + 1); /* the same segment again */
	assert_int_equal(fx->n, 1);
	assert_int_equal(fx->st.retransmit_segments, 1);
	assert_int_equal(fx->st.segments_published, 1);

	/* Overlapping: [0, 40) then [20, 60): only [40, 60) is new. */
	uint32_t base = (uint32_t)q.len;

	data_in(fx, 40010, base, p.b, 40, T0);
	data_in(fx, 40010, base + 20, p.b + 20, 40, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40010, p.b, p.len); /* the overlap counted once */
	assert_int_equal(fx->st.retransmit_segments, 1);

	/* One covering everything seen: nothing, counted. */
	data_in(fx, 40010, base, p.b, p.len, T0);
	assert_int_equal(fx->n, 2);
	assert_int_equal(fx->st.retransmit_segments, 2);
	assert_int_equal(fx->st.flows_active, 1);
}

static void test_reorder(void **state)
{
	struct fx *fx = *state;
	struct pkt a = query("SELECT 'a'"), b = query("SELECT 'bb'"), c = query("SELECT 'ccc'");
	uint32_t oa = 0, ob = (uint32_t)a.len, oc = ob + (uint32_t)b.len;

	syn_in(fx, 40020, T0);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);
	data_in(fx, 40020, ob, b.b, b.len, T0 + 5 * MS); /* B before A */
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.reordered_segments, 1);
	assert_int_equal(flow_next_deadline(fx->t), T0 + 5 * MS + TIMEOUT);
	flow_tick(fx->t, T0 + 5 * MS + TIMEOUT - 1); /* not yet */
	assert_int_equal(fx->n, 0);
	data_in(fx, 40020, oa, a.b, a.len, T0 + 6 * MS);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 0, 40020, a.b, a.len);
	assert_unit(fx, 1, 40020, b.b, b.len);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);
	assert_int_equal(fx->st.segments_published, 2);
	assert_int_equal(fx->st.drop_gap, 0);

	/* Three in reverse order. */
	uint32_t base = oc + (uint32_t)c.len;

	data_in(fx, 40020, oc, c.b, c.len, T0); /* C in order: the first round is done */
	assert_int_equal(fx->n, 3);
	fx_clear_units(fx);
	data_in(fx, 40020, base + (uint32_t)(a.len + b.len), c.b, c.len, T0 + 7 * MS);
	data_in(fx, 40020, base + (uint32_t)a.len, b.b, b.len, T0 + 7 * MS);
	assert_int_equal(fx->n, 0);
	data_in(fx, 40020, base, a.b, a.len, T0 + 8 * MS);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 0, 40020, a.b, a.len);
	assert_unit(fx, 1, 40020, b.b, b.len);
	assert_unit(fx, 2, 40020, c.b, c.len);
	assert_int_equal(fx->st.reordered_segments, 3);
}

static void test_gap_timeout(void **state)
{
	struct fx *fx = *state;
	struct pkt q1 = query("SELECT 1"), q2 = query("SELECT 22"), q3 = query("SELECT 333");
	struct pkt q4 = query("SELECT 4444");
	uint32_t o2 = (uint32_t)q1.len, o3 = o2 + (uint32_t)q2.len, o4 = o3 + (uint32_t)q3.len;

	syn_in(fx, 40030, T0);
	data_in(fx, 40030, 0, q1.b, q1.len, T0);
	data_in(fx, 40030, o3, q3.b, q3.len, T0 + MS); /* q2 is lost */
	assert_int_equal(fx->n, 1);
	assert_int_equal(flow_next_deadline(fx->t), T0 + MS + TIMEOUT);
	flow_tick(fx->t, T0 + MS + TIMEOUT - 1);
	assert_int_equal(fx->n, 1);
	assert_int_equal(fx->st.drop_gap, 0);
	flow_tick(fx->t, T0 + MS + TIMEOUT);
	assert_int_equal(fx->st.drop_gap, 1);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40030, q3.b, q3.len);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);
	/* The stream goes on after the hole. */
	data_in(fx, 40030, o4, q4.b, q4.len, T0 + 200 * MS);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 2, 40030, q4.b, q4.len);
	/* The late q2 is now behind: a retransmission, not published. */
	data_in(fx, 40030, o2, q2.b, q2.len, T0 + 201 * MS);
	assert_int_equal(fx->n, 3);
}

/* A hole that swallowed a packet's start: what follows it up to the next
 * packet start cannot be cut, and is skipped. */
static void test_gap_resyncs_at_packet_start(void **state)
{
	struct fx *fx = *state;
	struct pkt q1 = query("SELECT 1"), big = long_query(80, 'k'), q3 = query("SELECT 3");
	uint32_t ob = (uint32_t)q1.len, o3 = ob + (uint32_t)big.len;

	syn_in(fx, 40031, T0);
	data_in(fx, 40031, 0, q1.b, q1.len, T0);
	/* big's first 30 bytes are lost; its tail and q3 arrive. */
	data_in(fx, 40031, ob + 30, big.b + 30, big.len - 30, T0);
	data_in(fx, 40031, o3, q3.b, q3.len, T0);
	assert_int_equal(fx->n, 1);
	flow_tick(fx->t, T0 + TIMEOUT);
	assert_int_equal(fx->st.drop_gap, 1);
	assert_int_equal(fx->st.drop_desync, 1); /* big's tail */
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40031, q3.b, q3.len);
}

/* ---- joining a session mid-stream ------------------------------------------------------ */

static void test_midstream_hunt(void **state)
{
	struct fx *fx = *state;
	struct pkt big = long_query(100, 'm');
	struct pkt resp = mpkt(3, "\x03xyz", 4);  /* sequence id 3: not a command */
	struct pkt odd = mpkt(0, "\x41zzzz", 5); /* command byte 0x41: not a command */
	struct pkt q = query("SELECT 1"), q2 = query("SELECT 2");
	uint32_t off = 5000;

	/* No SYN: the agent started while the session was open. */
	data_in(fx, 40040, off, big.b + 50, 50, T0); /* the middle of a packet */
	off += 50;
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.drop_desync, 1);
	assert_int_equal(fx->st.flows_active, 1);
	data_in(fx, 40040, off, resp.b, resp.len, T0);
	off += (uint32_t)resp.len;
	data_in(fx, 40040, off, odd.b, odd.len, T0);
	off += (uint32_t)odd.len;
	data_in(fx, 40040, off, "ab", 2, T0); /* too short to judge */
	off += 2;
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.drop_desync, 4);
	/* A command packet: in sync from here on. */
	data_in(fx, 40040, off, q.b, q.len, T0);
	off += (uint32_t)q.len;
	assert_int_equal(fx->n, 1);
	assert_unit(fx, 0, 40040, q.b, q.len);
	/* Continuations of a packet are no longer judged by their look. */
	data_in(fx, 40040, off, big.b, 50, T0);
	data_in(fx, 40040, off + 50, big.b + 50, 50, T0);
	data_in(fx, 40040, off + 100, q2.b, q2.len, T0);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 1, 40040, big.b, big.len);
	assert_unit(fx, 2, 40040, q2.b, q2.len);
	assert_int_equal(fx->st.drop_desync, 4);
	assert_int_equal(fx->st.segments_published, 4);

	/* The command byte limit: 0x20 is not a command, 0x1f
	 * (COM_RESET_CONNECTION) is. */
	struct pkt c20 = mpkt(0, "\x20" "abc", 4), c1f = mpkt(0, "\x1f", 1);

	fx_clear_units(fx);
	data_in(fx, 40042, 1, c20.b, c20.len, T0);
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.drop_desync, 5);
	data_in(fx, 40042, 1 + (uint32_t)c20.len, c1f.b, c1f.len, T0);
	assert_int_equal(fx->n, 1);
	assert_unit(fx, 0, 40042, c1f.b, c1f.len);

	/* A handshake response found mid-stream is a packet start too. */
	struct pkt hs = handshake(CAPS_PLAIN, "u", "db1");

	fx_clear_units(fx);
	data_in(fx, 40041, 777, hs.b, hs.len, T0);
	assert_int_equal(fx->n, 1);
	assert_unit(fx, 0, 40041, hs.b, hs.len);
}

/* ---- unreplayable sessions -------------------------------------------------------------- */

static void test_tls_not_published(void **state)
{
	struct fx *fx = *state;
	struct pkt ssl = handshake(CAPS_PLAIN | MYSQL_CLIENT_SSL, "", "");
	uint8_t hello[300];
	uint32_t off = 0;

	for (size_t i = 0; i < sizeof(hello); i++)
		hello[i] = (uint8_t)(0x16 + i);
	syn_in(fx, 40050, T0);
	data_in(fx, 40050, off, ssl.b, ssl.len, T0);
	off += (uint32_t)ssl.len;
	data_in(fx, 40050, off, hello, sizeof(hello), T0); /* ClientHello */
	off += sizeof(hello);
	struct pkt q = query("SELECT 1"); /* even if it looked like a packet */

	data_in(fx, 40050, off, q.b, q.len, T0);
	off += (uint32_t)q.len;
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.drop_tls, 3);
	assert_int_equal(fx->st.segments_published, 0);
	/* Session sync leaves it alone, and its end says nothing. */
	flow_sync_db(fx->t, CLI, 40050, "shop", 1, T0);
	fin_in(fx, 40050, off, T0);
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.flows_active, 0);
}

static void test_compressed_not_published(void **state)
{
	struct fx *fx = *state;
	struct pkt hs = handshake(CAPS_PLAIN | MYSQL_CLIENT_COMPRESS, "app", "shop");
	uint8_t comp[] = {0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
			  0x03, 'S', 'E', 'L', 'E', 'C', 'T'};
	uint32_t off = 0;

	syn_in(fx, 40051, T0);
	data_in(fx, 40051, off, hs.b, hs.len, T0);
	off += (uint32_t)hs.len;
	data_in(fx, 40051, off, comp, sizeof(comp), T0);
	off += sizeof(comp);
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.drop_compressed, 2);
	rst_in(fx, 40051, off, T0);
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.synthetic_quit, 0);
}

/* ---- session end --------------------------------------------------------------------------- */

static void test_fin_without_quit(void **state)
{
	struct fx *fx = *state;
	struct pkt q = query("SELECT 1");

	syn_in(fx, 40060, T0);
	data_in(fx, 40060, 0, q.b, q.len, T0);
	fin_in(fx, 40060, (uint32_t)q.len, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40060, QUIT, sizeof(QUIT));
	assert_int_equal(fx->st.synthetic_quit, 1);
	assert_int_equal(fx->st.flows_active, 0);
	/* A retransmitted FIN of the closed session: unknown flow, nothing. */
	fin_in(fx, 40060, (uint32_t)q.len, T0);
	assert_int_equal(fx->n, 2);
	assert_int_equal(fx->st.flows_active, 0);
}

static void test_fin_after_quit(void **state)
{
	struct fx *fx = *state;
	struct pkt q = query("SELECT 1"), quit = mpkt(0, "\x01", 1);

	syn_in(fx, 40061, T0);
	data_in(fx, 40061, 0, q.b, q.len, T0);
	data_in(fx, 40061, (uint32_t)q.len, quit.b, quit.len, T0);
	fin_in(fx, 40061, (uint32_t)(q.len + quit.len), T0);
	assert_int_equal(fx->n, 2); /* the client's own COM_QUIT only */
	assert_unit(fx, 1, 40061, QUIT, sizeof(QUIT));
	assert_int_equal(fx->st.synthetic_quit, 0);
	assert_int_equal(fx->st.flows_active, 0);

	/* COM_QUIT and FIN in one segment. */
	fx_clear_units(fx);
	syn_in(fx, 40062, T0);
	data_in(fx, 40062, 0, q.b, q.len, T0);
	rec_in(fx, CLI, 40062, ISN + 1 + (uint32_t)q.len, MRTE_TCP_FIN | MRTE_TCP_ACK, quit.b,
	       quit.len, T0);
	assert_int_equal(fx->n, 2);
	assert_int_equal(fx->st.synthetic_quit, 0);

	/* A query and FIN in one segment: the query, then a synthetic quit. */
	fx_clear_units(fx);
	syn_in(fx, 40063, T0);
	rec_in(fx, CLI, 40063, ISN + 1, MRTE_TCP_FIN | MRTE_TCP_ACK, q.b, q.len, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 0, 40063, q.b, q.len);
	assert_unit(fx, 1, 40063, QUIT, sizeof(QUIT));
	assert_int_equal(fx->st.synthetic_quit, 1);
}

static void test_rst_and_unknown(void **state)
{
	struct fx *fx = *state;
	struct pkt q = query("SELECT 1");

	syn_in(fx, 40070, T0);
	data_in(fx, 40070, 0, q.b, q.len, T0);
	rst_in(fx, 40070, (uint32_t)q.len, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40070, QUIT, sizeof(QUIT));
	assert_int_equal(fx->st.flows_active, 0);

	/* FIN and RST of flows never seen: nothing, and no flow made. */
	fin_in(fx, 40071, 0, T0);
	rst_in(fx, 40072, 0, T0);
	assert_int_equal(fx->n, 2);
	assert_int_equal(fx->st.flows_active, 0);
	assert_int_equal(fx->st.synthetic_quit, 1);

	/* A session that never published anything ends silently. */
	syn_in(fx, 40073, T0);
	fin_in(fx, 40073, 0, T0);
	assert_int_equal(fx->n, 2);
	assert_int_equal(fx->st.flows_active, 0);
}

static void test_fin_out_of_order(void **state)
{
	struct fx *fx = *state;
	struct pkt a = query("SELECT 'a'"), b = query("SELECT 'b'");

	syn_in(fx, 40080, T0);
	data_in(fx, 40080, 0, a.b, a.len, T0);
	fin_in(fx, 40080, (uint32_t)(a.len + b.len), T0); /* b not here yet */
	assert_int_equal(fx->n, 1);
	assert_int_equal(fx->st.flows_active, 1);
	data_in(fx, 40080, (uint32_t)a.len, b.b, b.len, T0);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 1, 40080, b.b, b.len);
	assert_unit(fx, 2, 40080, QUIT, sizeof(QUIT));
	assert_int_equal(fx->st.flows_active, 0);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);
}

/* A new SYN on a port whose session never ended closes the old one. */
static void test_port_reuse(void **state)
{
	struct fx *fx = *state;
	struct pkt q = query("SELECT 1");

	syn_in(fx, 40090, T0);
	data_in(fx, 40090, 0, q.b, q.len, T0);
	rec_in(fx, CLI, 40090, 777777, MRTE_TCP_SYN, NULL, 0, T0 + MS);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40090, QUIT, sizeof(QUIT));
	rec_in(fx, CLI, 40090, 777778, MRTE_TCP_ACK, q.b, q.len, T0 + MS);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 2, 40090, q.b, q.len);
	assert_int_equal(fx->st.flows_active, 1);
}

/* ---- session sync ------------------------------------------------------------------------- */

static void test_sync_db(void **state)
{
	struct fx *fx = *state;

	/* A session the capture never saw (idle since before the start). */
	flow_sync_db(fx->t, CLI, 40100, "shop", 0, T0);
	assert_int_equal(fx->n, 1);
	assert_init_db(fx, 0, 40100, "shop");
	assert_unit(fx, 0, 40100, "\x05\x00\x00\x00\x02shop", 9);
	assert_int_equal(fx->st.synthetic_init_db, 1);
	flow_sync_db(fx->t, CLI, 40100, "shop", 0, T0);
	assert_int_equal(fx->n, 1);
	flow_sync_db(fx->t, CLI, 40100, "shop2", 1, T0);
	assert_int_equal(fx->n, 2);
	assert_init_db(fx, 1, 40100, "shop2");
	assert_int_equal(fx->st.synthetic_init_db, 2);

	/* Its next command is published after the INIT_DB (found by hunting). */
	struct pkt q = query("SELECT 1");

	data_in(fx, 40100, 123456, q.b, q.len, T0);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 2, 40100, q.b, q.len);

	/* A session whose handshake was captured named its own database. */
	struct pkt hs = handshake(CAPS_PLAIN, "app", "shop");

	fx_clear_units(fx);
	syn_in(fx, 40101, T0);
	data_in(fx, 40101, 0, hs.b, hs.len, T0);
	flow_sync_db(fx->t, CLI, 40101, "shop", 0, T0);
	assert_int_equal(fx->n, 1);
	flow_sync_db(fx->t, CLI, 40101, "other", 1, T0);
	assert_int_equal(fx->n, 2);
	assert_init_db(fx, 1, 40101, "other");
}

/* INIT_DB never lands between a packet's pieces.  A packet being assembled
 * is not out yet, so the INIT_DB goes first; a packet too large to assemble
 * is streamed, and then the INIT_DB waits for its end. */
static void test_sync_db_waits_for_boundary(void **state)
{
	struct fx *fx = *state;
	struct pkt big = long_query(100, 'w'), q = query("SELECT 2");
	uint8_t seg[200];

	syn_in(fx, 40110, T0);
	data_in(fx, 40110, 0, big.b, 40, T0);
	assert_int_equal(fx->n, 0); /* being assembled */
	flow_sync_db(fx->t, CLI, 40110, "db_x", 0, T0);
	assert_int_equal(fx->n, 1);
	assert_init_db(fx, 0, 40110, "db_x");
	data_in(fx, 40110, 40, big.b + 40, 60, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40110, big.b, big.len);

	/* Streamed: a table whose budget cannot hold the packet. */
	struct fx *small = fx_new(64, 64);

	syn_in(small, 40111, T0);
	data_in(small, 40111, 0, big.b, 40, T0);
	assert_int_equal(small->n, 1); /* the first piece is out */
	assert_int_equal(small->st.packets_streamed, 1);
	flow_sync_db(small->t, CLI, 40111, "db_x", 0, T0);
	assert_int_equal(small->n, 1); /* held: the player is inside a packet */
	data_in(small, 40111, 40, big.b + 40, 30, T0);
	assert_int_equal(small->n, 2); /* still inside */
	/* The rest of the packet and the next one in one segment. */
	memcpy(seg, big.b + 70, 30);
	memcpy(seg + 30, q.b, q.len);
	data_in(small, 40111, 70, seg, 30 + q.len, T0);
	assert_int_equal(small->n, 5);
	assert_unit(small, 2, 40111, big.b + 70, 30);
	assert_init_db(small, 3, 40111, "db_x");
	assert_unit(small, 4, 40111, q.b, q.len);
	assert_int_equal(small->st.synthetic_init_db, 1);
	fx_free(small);

	/* Inside a packet header being gathered (2 of 8 bytes seen). */
	fx_clear_units(fx);
	data_in(fx, 40110, (uint32_t)big.len, big.b, 2, T0);
	flow_sync_db(fx->t, CLI, 40110, "db_y", 1, T0);
	assert_int_equal(fx->n, 1); /* nothing of the packet is out: no wait */
	assert_init_db(fx, 0, 40110, "db_y");
	data_in(fx, 40110, (uint32_t)big.len + 2, big.b + 2, big.len - 2, T0);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40110, big.b, big.len);
}

static void test_session_gone(void **state)
{
	struct fx *fx = *state;
	struct pkt q = query("SELECT 1"), quit = mpkt(0, "\x01", 1);

	syn_in(fx, 40120, T0);
	data_in(fx, 40120, 0, q.b, q.len, T0);
	flow_session_gone(fx->t, CLI, 40120, T0 + 10 * MS);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40120, QUIT, sizeof(QUIT));
	assert_int_equal(fx->st.flows_active, 0);
	assert_int_equal(fx->st.synthetic_quit, 1);

	/* The client already quit (its FIN not seen yet). */
	syn_in(fx, 40121, T0);
	data_in(fx, 40121, 0, quit.b, quit.len, T0);
	flow_session_gone(fx->t, CLI, 40121, T0 + 10 * MS);
	assert_int_equal(fx->n, 3);
	assert_int_equal(fx->st.synthetic_quit, 1);

	/* A newer connection reusing the port after the server last saw
	 * the old session: left alone. */
	syn_in(fx, 40122, T0 + 20 * MS);
	data_in(fx, 40122, 0, q.b, q.len, T0 + 20 * MS);
	flow_session_gone(fx->t, CLI, 40122, T0 + 10 * MS);
	assert_int_equal(fx->n, 4);
	assert_int_equal(fx->st.flows_active, 1);
	/* Unknown: nothing. */
	flow_session_gone(fx->t, CLI, 40123, T0 + 10 * MS);
	assert_int_equal(fx->n, 4);
	assert_int_equal(fx->st.synthetic_quit, 1);
}

static void test_exclude(void **state)
{
	struct fx *fx = *state;
	struct pkt q = query("SELECT 1");

	flow_exclude(fx->t, CLI, 40130, 1);
	syn_in(fx, 40130, T0);
	data_in(fx, 40130, 0, q.b, q.len, T0);
	data_in(fx, 40130, (uint32_t)q.len, q.b, q.len, T0);
	flow_sync_db(fx->t, CLI, 40130, "x", 1, T0);
	assert_int_equal(fx->n, 0);
	assert_int_equal(fx->st.drop_self, 2);
	assert_int_equal(fx->st.flows_active, 0);

	/* Excluding a flow already published (the agent's own handshake went
	 * out before its port was known) ends that session in the player. */
	syn_in(fx, 40131, T0);
	data_in(fx, 40131, 0, q.b, q.len, T0);
	assert_int_equal(fx->n, 1);
	flow_exclude(fx->t, CLI, 40131, 1);
	assert_int_equal(fx->n, 2);
	assert_unit(fx, 1, 40131, QUIT, sizeof(QUIT));
	assert_int_equal(fx->st.flows_active, 0);
	data_in(fx, 40131, (uint32_t)q.len, q.b, q.len, T0);
	assert_int_equal(fx->n, 2);
	/* Lifted: published again (found by hunting). */
	flow_exclude(fx->t, CLI, 40131, 0);
	data_in(fx, 40131, 2 * (uint32_t)q.len, q.b, q.len, T0);
	assert_int_equal(fx->n, 3);
	assert_unit(fx, 2, 40131, q.b, q.len);
	/* The other exclusion still holds. */
	data_in(fx, 40130, 2 * (uint32_t)q.len, q.b, q.len, T0);
	assert_int_equal(fx->n, 3);
	assert_int_equal(fx->st.drop_self, 4);
}

/* ---- limits --------------------------------------------------------------------------------- */

static void test_table_full(void **state)
{
	struct fx *fx = fx_new(8, 1 << 20);
	struct pkt big = long_query(100, 'e');

	(void)state;
	/* Eight sessions, each inside a two-piece packet. */
	for (uint16_t i = 0; i < 8; i++) {
		syn_in(fx, (uint16_t)(50000 + i), T0 + i);
		data_in(fx, (uint16_t)(50000 + i), 0, big.b, 50, T0 + i);
	}
	assert_int_equal(fx->st.flows_active, 8);
	assert_int_equal(fx->st.flow_evictions, 0);
	/* Session 0 speaks again: session 1 is now the least recently active. */
	data_in(fx, 50000, 50, big.b + 50, 50, T0 + 100);
	syn_in(fx, 50100, T0 + 101);
	assert_int_equal(fx->st.flows_active, 8);
	assert_int_equal(fx->st.flow_evictions, 1);
	assert_int_equal(flow_count(fx->t), 8);
	/* Session 2 was kept: its continuation is published. */
	fx_clear_units(fx);
	data_in(fx, 50002, 50, big.b + 50, 50, T0 + 102);
	assert_int_equal(fx->n, 1);
	/* Session 1 was forgotten: its continuation is a mid-stream start
	 * (and tracking it again evicts the next least recent, session 3). */
	data_in(fx, 50001, 50, big.b + 50, 50, T0 + 103);
	assert_int_equal(fx->n, 1);
	assert_int_equal(fx->st.drop_desync, 1);
	assert_int_equal(fx->st.flow_evictions, 2);
	data_in(fx, 50004, 50, big.b + 50, 50, T0 + 104);
	assert_int_equal(fx->n, 2);

	/* Churn: 1000 more clients; the last eight must all still be found
	 * (index deletions kept every probe chain intact). */
	for (uint32_t i = 0; i < 1000; i++) {
		uint16_t port = (uint16_t)(20000 + i * 7);

		syn_in(fx, port, T0 + 1000 + i);
		data_in(fx, port, 0, big.b, 50, T0 + 1000 + i);
		assert_true(fx->st.flows_active <= 8);
	}
	assert_int_equal(fx->st.flows_active, 8);
	fx_clear_units(fx);
	uint64_t desync = fx->st.drop_desync;

	for (uint32_t i = 992; i < 1000; i++)
		data_in(fx, (uint16_t)(20000 + i * 7), 50, big.b + 50, 50, T0 + 5000);
	assert_int_equal(fx->n, 8);
	assert_int_equal(fx->st.drop_desync, desync);
	assert_int_equal(fx->st.flow_evictions, 2 + 1000);
	fx_free(fx);
}

/* A flow evicted while it holds out-of-order data frees it. */
static void test_evict_with_held_data(void **state)
{
	struct fx *fx = fx_new(2, 1 << 20);
	struct pkt q = query("SELECT 1");

	(void)state;
	syn_in(fx, 1, T0);
	data_in(fx, 1, 100, q.b, q.len, T0); /* held */
	assert_int_equal(fx->st.reordered_segments, 1);
	assert_int_not_equal(flow_next_deadline(fx->t), UINT64_MAX);
	syn_in(fx, 2, T0 + 1);
	syn_in(fx, 3, T0 + 2); /* evicts port 1 */
	assert_int_equal(fx->st.flow_evictions, 1);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);
	flow_tick(fx->t, T0 + 10 * TIMEOUT);
	assert_int_equal(fx->n, 0);
	fx_free(fx);
}

static void test_reorder_budget(void **state)
{
	struct fx *fx = fx_new(64, 1000);
	struct pkt q1 = query("SELECT 1");
	uint8_t blob[1200];

	(void)state;
	memset(blob, 'q', sizeof(blob));
	/* One out-of-order segment larger than the whole budget: no room to
	 * wait, so the hole before it is given up and the stream resumes there
	 * (at no packet start here: hunting). */
	syn_in(fx, 1, T0);
	data_in(fx, 1, 10, blob, 1200, T0);
	assert_int_equal(fx->st.drop_reorder_overflow, 1);
	assert_int_equal(fx->st.drop_gap, 1);
	assert_int_equal(fx->st.drop_desync, 1);
	assert_int_equal(fx->st.reordered_segments, 0);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);

	/* Held segments fill the budget; the next one gives up the hole. */
	struct pkt p[4];
	uint32_t off[4], o = (uint32_t)q1.len + 50; /* 50 bytes lost after q1 */

	syn_in(fx, 2, T0);
	data_in(fx, 2, 0, q1.b, q1.len, T0);
	for (int i = 0; i < 4; i++) {
		p[i] = long_query(300, (char)('a' + i));
		off[i] = o;
		o += (uint32_t)p[i].len;
	}
	for (int i = 0; i < 3; i++)
		data_in(fx, 2, off[i], p[i].b, p[i].len, T0);
	assert_int_equal(fx->st.reordered_segments, 3);
	assert_int_equal(fx->n, 1);
	data_in(fx, 2, off[3], p[3].b, p[3].len, T0); /* 1200 > 1000 */
	assert_int_equal(fx->st.drop_gap, 2);
	assert_int_equal(fx->n, 5);
	for (int i = 0; i < 4; i++)
		assert_unit(fx, 1 + (size_t)i, 2, p[i].b, p[i].len);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);

	/* The budget is shared: one flow's held bytes leave less for another. */
	syn_in(fx, 3, T0);
	syn_in(fx, 4, T0);
	data_in(fx, 3, 10, blob, 900, T0);
	assert_int_equal(fx->st.reordered_segments, 4);
	data_in(fx, 4, 10, blob, 200, T0);
	assert_int_equal(fx->st.drop_reorder_overflow, 2);
	fx_free(fx);
}

/* Many tiny held segments put back in one go. */
static void test_many_held_segments(void **state)
{
	struct fx *fx = fx_new(64, 8 << 20);
	enum { N = 100000 }; /* one packet of N + 1 bytes, one byte per segment */
	uint8_t *p = malloc(N + 1), *all = malloc(N + 1);
	size_t n;

	(void)state;
	assert_non_null(p);
	assert_non_null(all);
	p[0] = (uint8_t)(N - 3);
	p[1] = (uint8_t)((N - 3) >> 8);
	p[2] = (uint8_t)((N - 3) >> 16);
	p[3] = 0;
	p[4] = 0x03;
	memset(p + 5, 's', N - 4);
	syn_in(fx, 7, T0);
	for (uint32_t i = 1; i <= N; i++)
		data_in(fx, 7, i, p + i, 1, T0);
	assert_int_equal(fx->st.reordered_segments, N);
	assert_int_equal(fx->n, 0);
	data_in(fx, 7, 0, p, 1, T0); /* the first byte: everything drains */
	concat_units(fx, 0, all, &n);
	assert_int_equal(n, N + 1);
	assert_memory_equal(all, p, N + 1);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);
	assert_int_equal(fx->st.segments_published, N + 1);
	free(all);
	free(p);
	fx_free(fx);
}

/* Segments of one packet in a shuffled order, some twice: put back whole. */
static void test_shuffled_segments(void **state)
{
	struct fx *fx = *state;
	enum { SEGS = 100, SEG = 20 };
	struct pkt p = long_query(SEGS * SEG, 'h');
	int order[SEGS + 20];
	uint32_t rng = 2024;
	uint8_t all[SEGS * SEG];
	size_t n;

	for (int i = 0; i < SEGS; i++)
		p.b[10 + i] = (uint8_t)('A' + i % 26); /* make misplacement visible */
	for (int i = 0; i < SEGS; i++)
		order[i] = i;
	for (int i = SEGS - 1; i > 0; i--) {
		rng = rng * 1103515245u + 12345u;
		int j = (int)((rng >> 16) % (uint32_t)(i + 1)), tmp = order[i];

		order[i] = order[j];
		order[j] = tmp;
	}
	for (int i = 0; i < 20; i++) /* duplicates of some */
		order[SEGS + i] = order[i * 3];
	syn_in(fx, 40150, T0);
	for (int i = 0; i < SEGS + 20; i++)
		data_in(fx, 40150, (uint32_t)(order[i] * SEG), p.b + order[i] * SEG, SEG, T0);
	concat_units(fx, 0, all, &n);
	assert_int_equal(n, p.len);
	assert_memory_equal(all, p.b, p.len);
	assert_int_equal(fx->st.drop_gap, 0);
	/* Every segment ends up published or known as a duplicate. */
	assert_int_equal(fx->st.retransmit_segments + fx->st.segments_published, SEGS + 20);
	assert_true(fx->st.reordered_segments > 0);
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);
}

/* The budget counts what holding costs, not only payload bytes: a flood of
 * one-byte segments cannot pin more memory than the budget says. */
static void test_budget_counts_overhead(void **state)
{
	struct fx *fx = fx_new(64, 1000);
	struct pkt p = long_query(200, 'o');

	(void)state;
	syn_in(fx, 9, T0);
	for (uint32_t i = 1; i <= 100; i++)
		data_in(fx, 9, i, p.b + i, 1, T0);
	/* 100 payload bytes, but far more than 1000 bytes of memory. */
	assert_true(fx->st.reordered_segments < 100);
	assert_true(fx->st.drop_gap + fx->st.drop_reorder_overflow > 0);
	fx_free(fx);
}

static void test_flush(void **state)
{
	struct fx *fx = *state;
	struct pkt q1 = query("SELECT 1"), q2 = query("SELECT 2"), q3 = query("SELECT 3");

	syn_in(fx, 40140, T0);
	data_in(fx, 40140, 0, q1.b, q1.len, T0);
	/* q2 lost; q3 held, and two holes on another flow. */
	data_in(fx, 40140, (uint32_t)(q1.len + q2.len), q3.b, q3.len, T0);
	syn_in(fx, 40141, T0);
	data_in(fx, 40141, 10, q1.b, q1.len, T0);
	data_in(fx, 40141, 10 + (uint32_t)q1.len + 10, q2.b, q2.len, T0);
	assert_int_equal(fx->n, 1);
	assert_int_not_equal(flow_next_deadline(fx->t), UINT64_MAX);
	flow_flush(fx->t, T0 + 1); /* long before the timeout */
	assert_int_equal(flow_next_deadline(fx->t), UINT64_MAX);
	assert_int_equal(fx->st.drop_gap, 3);
	assert_int_equal(fx->n, 4);
	/* Each flow's units stay in order. */
	size_t a = 0, b = 0;

	for (size_t i = 1; i < fx->n; i++) {
		if (fx->u[i].sport == 40140) {
			assert_unit(fx, i, 40140, q3.b, q3.len);
			a++;
		} else {
			assert_unit(fx, i, 40141, b ? q2.b : q1.b, b ? q2.len : q1.len);
			b++;
		}
	}
	assert_int_equal(a, 1);
	assert_int_equal(b, 2);
	/* Nothing left to tick. */
	flow_tick(fx->t, T0 + 10 * TIMEOUT);
	assert_int_equal(fx->n, 4);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_syn_handshake_queries),
		T(test_pipelined),
		T(test_packet_over_three_segments),
		T(test_large_packet_assembled),
		T(test_gap_inside_packet),
		T(test_header_split),
		T(test_chunked_segment),
		T(test_retransmission),
		T(test_reorder),
		T(test_gap_timeout),
		T(test_gap_resyncs_at_packet_start),
		T(test_midstream_hunt),
		T(test_tls_not_published),
		T(test_compressed_not_published),
		T(test_fin_without_quit),
		T(test_fin_after_quit),
		T(test_rst_and_unknown),
		T(test_fin_out_of_order),
		T(test_port_reuse),
		T(test_sync_db),
		T(test_sync_db_waits_for_boundary),
		T(test_session_gone),
		T(test_exclude),
		cmocka_unit_test(test_table_full),
		cmocka_unit_test(test_evict_with_held_data),
		cmocka_unit_test(test_reorder_budget),
		cmocka_unit_test(test_many_held_segments),
		T(test_shuffled_segments),
		cmocka_unit_test(test_budget_counts_overhead),
		T(test_flush),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
