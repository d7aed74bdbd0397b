/* test_unit_publish.c -- the publisher threads end to end, without a broker.
 *
 * Records go in through one rec_queue per publisher (routed by the flow
 * hash, as the capture does), the threads cut and batch them, and the file
 * sink writes each message as a 4-byte length and the body.  The tests read
 * that file back, decode it as the player would, and check the batching
 * limits, the idle flush, per-client order and that nothing is lost at
 * stop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "publish.h"
#include "queue.h"
#include "wire.h"

#define SEC 1000000000ull
#define MS 1000000ull

static uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	uint8_t bytes[4] = {a, b, c, d};
	uint32_t v;

	memcpy(&v, bytes, 4);
	return v;
}

static void pause_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ---- the harness: config, queues, publishers, the output file -------------- */

struct client {
	uint32_t saddr;
	uint16_t sport;
	uint32_t nxt; /* next sequence number */
};

struct harness {
	struct mrte_config cfg;
	struct rec_queue *q[MRTE_MAX_RINGS];
	struct feed_source src;
	struct publishers *ps;
	char path[64];
};

static struct feed *queue_feed_of(void *arg, unsigned idx, feed_record_fn fn, void *ctx)
{
	struct harness *h = arg;

	return rec_queue_feed(h->q[idx], fn, ctx);
}

/* Start two publishers writing to a fresh file; extra flags (NULL-ended)
 * set the batching under test. */
static struct harness *start(const char *flag, ...)
{
	struct harness *h = calloc(1, sizeof(*h));
	char *argv[32], out[96], err[256];
	int argc = 0, fd;
	va_list ap;

	assert_non_null(h);
	strcpy(h->path, "/tmp/mrte-unit-publish-XXXXXX");
	fd = mkstemp(h->path);
	assert_true(fd >= 0);
	close(fd);
	snprintf(out, sizeof(out), "--output=%s", h->path);
	argv[argc++] = strdup("mrte-collector");
	argv[argc++] = strdup("--sink=file");
	argv[argc++] = strdup(out);
	argv[argc++] = strdup("--interface=lo");
	argv[argc++] = strdup("--thread_count=2");
	argv[argc++] = strdup("--local_ip=127.0.0.1");
	argv[argc++] = strdup("--max_flows=1024");
	va_start(ap, flag);
	for (const char *f = flag; f; f = va_arg(ap, const char *))
		argv[argc++] = strdup(f);
	va_end(ap);
	argv[argc] = NULL;
	char *own[32];

	memcpy(own, argv, sizeof(char *) * (size_t)argc);
	if (config_parse(&h->cfg, argc, argv, stdout, err, sizeof(err)) != CONFIG_OK)
		fail_msg("config: %s", err);
	for (int i = 0; i < argc; i++)
		free(own[i]);
	for (unsigned i = 0; i < h->cfg.thread_count; i++) {
		h->q[i] = rec_queue_new(1 << 20);
		assert_non_null(h->q[i]);
	}
	h->src.feed = queue_feed_of;
	h->src.arg = h;
	h->ps = publishers_start(&h->cfg, &h->src, h->cfg.local_ip);
	assert_non_null(h->ps);
	return h;
}

static void stop(struct harness *h)
{
	if (h->ps) {
		publishers_stop(h->ps, mono_ns() + 5 * SEC);
		/* stays allocated until finish(): the counters are read after */
	}
}

static void finish(struct harness *h)
{
	publishers_free(h->ps);
	for (unsigned i = 0; i < MRTE_MAX_RINGS; i++)
		rec_queue_free(h->q[i]);
	unlink(h->path);
	config_free(&h->cfg);
	free(h);
}

static unsigned owner_of(const struct harness *h, const struct client *c)
{
	return mrte_flow_hash(c->saddr, c->sport) % h->cfg.thread_count;
}

static void push_rec(struct harness *h, const struct client *c, uint32_t seq, uint8_t flags,
		     const uint8_t *d, size_t len)
{
	struct mrte_rec r = {
		.ts_ns = mono_ns(),
		.saddr = c->saddr,
		.daddr = ip4(127, 0, 0, 1),
		.seq = seq,
		.sport = c->sport,
		.dport = 3306,
		.len = (uint16_t)len,
		.flags = flags,
		.seg_len = (uint32_t)len,
	};
	uint64_t deadline = mono_ns() + 5 * SEC;

	assert_true(len <= MRTE_CHUNK);
	/* A full queue drains as the publisher runs: wait for room, bounded. */
	while (rec_queue_push(h->q[owner_of(h, c)], &r, d)) {
		if (mono_ns() > deadline)
			fail_msg("queue %u stayed full", owner_of(h, c));
		pause_ms(1);
	}
}

static void syn(struct harness *h, struct client *c)
{
	push_rec(h, c, c->nxt, MRTE_TCP_SYN, NULL, 0);
	c->nxt++;
}

static void segment(struct harness *h, struct client *c, const uint8_t *d, size_t len)
{
	push_rec(h, c, c->nxt, MRTE_TCP_ACK | MRTE_TCP_PSH, d, len);
	c->nxt += (uint32_t)len;
}

/* COM_QUERY "<tag> <n>" padded with filler to `total` packet bytes. */
static size_t make_query(uint8_t *out, size_t total, const char *tag, unsigned n)
{
	size_t body = total - 4;
	int k;

	out[0] = (uint8_t)body;
	out[1] = (uint8_t)(body >> 8);
	out[2] = (uint8_t)(body >> 16);
	out[3] = 0;
	out[4] = 0x03;
	memset(out + 5, '.', total - 5);
	k = snprintf((char *)out + 5, total - 5, "%s %u ", tag, n);
	if (k > 0 && (size_t)k < total - 5)
		out[5 + k] = '.'; /* snprintf's terminator back to filler */
	return total;
}

/* ---- reading the output back ---------------------------------------------------- */

struct unit_copy {
	uint32_t saddr;
	uint16_t sport;
	size_t len;
	uint8_t *data;
	size_t msg; /* index of the message it came in */
};

struct output {
	size_t nmsg;
	size_t msg_len[4096];   /* body lengths */
	size_t msg_units[4096]; /* units per message */
	struct unit_copy *u;
	size_t nu, cap;
	uint32_t bad_local_ip;
};

static int keep_unit(void *ctx, const struct wire_unit *wu)
{
	struct output *o = ctx;

	if (o->nu == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 256;
		o->u = realloc(o->u, o->cap * sizeof(*o->u));
		assert_non_null(o->u);
	}
	struct unit_copy *u = &o->u[o->nu++];

	u->saddr = wu->saddr;
	u->sport = wu->sport;
	u->len = wu->len;
	u->data = malloc(wu->len);
	assert_non_null(u->data);
	memcpy(u->data, wu->data, wu->len);
	u->msg = o->nmsg;
	return 0;
}

static void output_free(struct output *o)
{
	for (size_t i = 0; i < o->nu; i++)
		free(o->u[i].data);
	free(o->u);
	free(o);
}

/* Decode every complete message in the file; each must be one the player
 * accepts, with our LOCAL_IP. */
static struct output *read_output(const char *path)
{
	struct output *o = calloc(1, sizeof(*o));
	FILE *f = fopen(path, "rb");
	uint8_t hdr[4];

	assert_non_null(o);
	assert_non_null(f);
	while (fread(hdr, 1, 4, f) == 4) {
		size_t len = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 |
			     (size_t)hdr[3] << 24;
		uint8_t *body = malloc(len ? len : 1);
		uint32_t local = 0;
		size_t units = 0;
		enum wire_status st;

		assert_non_null(body);
		if (fread(body, 1, len, f) != len) {
			free(body); /* a message being written right now */
			break;
		}
		assert_true(o->nmsg < 4096);
		st = wire_decode(body, len, &local, keep_unit, o, &units);
		if (st != WIRE_OK)
			fail_msg("message %zu: %s", o->nmsg, wire_status_str(st));
		if (local != ip4(127, 0, 0, 1))
			o->bad_local_ip++;
		o->msg_len[o->nmsg] = len;
		o->msg_units[o->nmsg] = units;
		o->nmsg++;
		free(body);
	}
	fclose(f);
	return o;
}

/* Poll the file until it holds at least `want` messages or `ms` pass. */
static struct output *await_messages(const char *path, size_t want, unsigned ms)
{
	uint64_t deadline = mono_ns() + ms * MS;

	for (;;) {
		struct output *o = read_output(path);

		if (o->nmsg >= want || mono_ns() > deadline)
			return o;
		output_free(o);
		pause_ms(2);
	}
}

/* Clients whose flows belong to publisher `idx`. */
static void pick_clients(const struct harness *h, unsigned idx, struct client *out, int n,
			 uint16_t first_port)
{
	uint16_t port = first_port;

	for (int i = 0; i < n; port++) {
		struct client c = {.saddr = ip4(10, 9, (uint8_t)(port >> 8), (uint8_t)port),
				   .sport = port,
				   .nxt = 100000u * port};

		if (owner_of(h, &c) == idx)
			out[i++] = c;
	}
}

static void assert_unit_is(const struct output *o, size_t i, const struct client *c,
			   const uint8_t *d, size_t len)
{
	assert_true(i < o->nu);
	assert_int_equal(o->u[i].saddr, c->saddr);
	assert_int_equal(o->u[i].sport, c->sport);
	assert_int_equal(o->u[i].len, len);
	assert_memory_equal(o->u[i].data, d, len);
}

static int setup(void **state)
{
	(void)state;
	log_set_level(LOG_WARN);
	return 0;
}

/* ---- (a) --batch_packets ------------------------------------------------------------- */

static void test_batch_packets(void **state)
{
	struct harness *h = start("--batch_packets=5", "--read_timeout=60000", NULL);
	struct client c[2];
	uint8_t q[2][8][64];
	size_t ql[2][8];

	(void)state;
	pick_clients(h, 0, &c[0], 1, 30000);
	pick_clients(h, 1, &c[1], 1, 30000);
	for (int k = 0; k < 2; k++) {
		syn(h, &c[k]);
		for (unsigned i = 0; i < 5; i++) {
			ql[k][i] = make_query(q[k][i], 20 + i * 3, k ? "B" : "A", i);
			segment(h, &c[k], q[k][i], ql[k][i]);
		}
	}
	/* Five complete units: a message from each publisher, long before
	 * the (60 s) read timeout could have flushed anything. */
	struct output *o = await_messages(h->path, 2, 5000);

	assert_int_equal(o->nmsg, 2);
	assert_int_equal(o->msg_units[0], 5);
	assert_int_equal(o->msg_units[1], 5);
	for (size_t m = 0; m < 2; m++) {
		int k = o->u[m * 5].sport == c[0].sport ? 0 : 1;

		for (unsigned i = 0; i < 5; i++)
			assert_unit_is(o, m * 5 + i, &c[k], q[k][i], ql[k][i]);
	}
	output_free(o);

	/* Three more for client A: a partial batch, flushed by the stop. */
	for (unsigned i = 5; i < 8; i++) {
		ql[0][i] = make_query(q[0][i], 30, "A", i);
		segment(h, &c[0], q[0][i], ql[0][i]);
	}
	stop(h);
	o = read_output(h->path);
	assert_int_equal(o->nmsg, 3);
	assert_int_equal(o->msg_units[2], 3);
	for (unsigned i = 5; i < 8; i++)
		assert_unit_is(o, 10 + i - 5, &c[0], q[0][i], ql[0][i]);
	assert_int_equal(o->bad_local_ip, 0);

	struct mrte_agent_stats st;

	publishers_stats(h->ps, &st);
	assert_int_equal(st.units, 13);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.segments_published, 13);
	assert_int_equal(st.drop_unpublished, 0);
	assert_int_equal(st.queue_depth, 0);
	output_free(o);
	finish(h);
}

/* ---- (b) --batch_bytes ----------------------------------------------------------------- */

static void test_batch_bytes(void **state)
{
	struct harness *h = start("--batch_bytes=1024", "--batch_packets=100000",
				  "--read_timeout=60000", NULL);
	enum { N = 300 };
	static uint8_t q[N][3100];
	size_t ql[N];
	struct client c;
	uint32_t rng = 99;

	(void)state;
	pick_clients(h, 1, &c, 1, 31000);
	syn(h, &c);
	for (unsigned i = 0; i < N; i++) {
		rng = rng * 1103515245u + 12345u;
		/* Mostly small, some larger than a whole message. */
		size_t total = (rng >> 16) % 10 == 0 ? 1100 + (rng >> 8) % 2000 : 20 + (rng >> 8) % 300;

		ql[i] = make_query(q[i], total, "Q", i);
		segment(h, &c, q[i], ql[i]);
	}
	stop(h);

	struct output *o = read_output(h->path);
	size_t u = 0;

	assert_int_equal(o->nu, N);
	for (unsigned i = 0; i < N; i++)
		assert_unit_is(o, i, &c, q[i], ql[i]);
	assert_true(o->nmsg > 10);
	for (size_t m = 0; m < o->nmsg; m++) {
		/* Never over the limit, unless one unit is over it on its own. */
		if (o->msg_len[m] > 1024)
			assert_int_equal(o->msg_units[m], 1);
		/* Greedy: the next message's first unit did not fit in this one
		 * (the last message was cut by the stop). */
		if (m + 1 < o->nmsg) {
			size_t next_first = u + o->msg_units[m];

			assert_true(o->msg_len[m] + wire_unit_size(o->u[next_first].len) > 1024);
		}
		u += o->msg_units[m];
	}
	output_free(o);
	finish(h);
}

/* ---- (c) --read_timeout ---------------------------------------------------------------- */

static void test_read_timeout(void **state)
{
	struct harness *h = start("--read_timeout=300", "--batch_packets=1000", NULL);
	struct client c;
	uint8_t q[64];
	size_t ql = make_query(q, 40, "lonely", 1);

	(void)state;
	pick_clients(h, 0, &c, 1, 32000);
	syn(h, &c);
	uint64_t t0 = mono_ns();

	segment(h, &c, q, ql);
	/* Poll until the message shows up; it must, and not much before the
	 * timeout (it was not flushed for another reason). */
	struct output *o = await_messages(h->path, 1, 5000);
	uint64_t waited = mono_ns() - t0;

	print_message("  lone unit published after %llu ms (read_timeout 300 ms)\n",
		      (unsigned long long)(waited / MS));
	assert_int_equal(o->nmsg, 1);
	assert_int_equal(o->msg_units[0], 1);
	assert_unit_is(o, 0, &c, q, ql);
	assert_true(waited >= 150 * MS);
	output_free(o);

	/* The next lone unit gets its own timer. */
	ql = make_query(q, 50, "again", 2);
	segment(h, &c, q, ql);
	o = await_messages(h->path, 2, 5000);
	assert_int_equal(o->nmsg, 2);
	assert_unit_is(o, 1, &c, q, ql);
	output_free(o);
	stop(h);
	finish(h);
}

/* ---- (d, e, f) many clients: order, completeness, exact bytes ---------------------------- */

#define NCLIENTS 16
#define NQUERIES 150

struct expect {
	struct client c;
	size_t n;
	size_t len[NQUERIES * 3];
	uint8_t *data[NQUERIES * 3];
};

static void expect_add(struct expect *e, const uint8_t *d, size_t len)
{
	e->data[e->n] = malloc(len);
	assert_non_null(e->data[e->n]);
	memcpy(e->data[e->n], d, len);
	e->len[e->n++] = len;
}

static void test_order_many_clients(void **state)
{
	struct harness *h = start("--batch_packets=7", "--read_timeout=20", NULL);
	struct expect *e = calloc(NCLIENTS, sizeof(*e));
	static uint8_t q[3000];
	uint32_t rng = 7;

	(void)state;
	assert_non_null(e);
	/* Half the clients on each publisher. */
	struct client tmp[NCLIENTS];

	pick_clients(h, 0, tmp, NCLIENTS / 2, 33000);
	pick_clients(h, 1, tmp + NCLIENTS / 2, NCLIENTS / 2, 33000);
	for (int k = 0; k < NCLIENTS; k++) {
		e[k].c = tmp[k];
		syn(h, &e[k].c);
	}
	size_t big = 0; /* packets sent in three segments */

	for (unsigned i = 0; i < NQUERIES; i++) {
		for (int k = 0; k < NCLIENTS; k++) {
			rng = rng * 1103515245u + 12345u;
			size_t total = 20 + (rng >> 16) % 200;

			if (i % 10 == 3) {
				/* A larger packet in three segments: assembled,
				 * one unit once complete. */
				total = 2000 + (rng >> 16) % 900;
				make_query(q, total, "big", i);
				segment(h, &e[k].c, q, 700);
				segment(h, &e[k].c, q + 700, 600);
				segment(h, &e[k].c, q + 1300, total - 1300);
				expect_add(&e[k], q, total);
				big++;
				continue;
			}
			make_query(q, total, "q", i);
			segment(h, &e[k].c, q, total);
			expect_add(&e[k], q, total);
		}
		if (i % 25 == 0)
			pause_ms(1); /* let some batches close by time, some by count */
	}
	stop(h);

	struct output *o = read_output(h->path);
	size_t expected_units = 0;

	for (int k = 0; k < NCLIENTS; k++)
		expected_units += e[k].n;
	assert_int_equal(o->nu, expected_units);
	assert_int_equal(o->bad_local_ip, 0);
	for (size_t m = 0; m < o->nmsg; m++)
		assert_true(o->msg_units[m] >= 1 && o->msg_units[m] <= 7);
	/* Each client's units, in the order they came in, byte for byte. */
	for (int k = 0; k < NCLIENTS; k++) {
		size_t next = 0;

		for (size_t i = 0; i < o->nu; i++) {
			if (o->u[i].sport != e[k].c.sport || o->u[i].saddr != e[k].c.saddr)
				continue;
			assert_true(next < e[k].n);
			if (o->u[i].len != e[k].len[next] ||
			    memcmp(o->u[i].data, e[k].data[next], o->u[i].len))
				fail_msg("client %d: unit %zu out of order or altered", k, next);
			next++;
		}
		assert_int_equal(next, e[k].n);
	}

	struct mrte_agent_stats st;

	publishers_stats(h->ps, &st);
	assert_int_equal(st.units, expected_units);
	assert_int_equal(st.messages, o->nmsg);
	assert_int_equal(st.records, NCLIENTS + expected_units + 2 * big);
	assert_int_equal(st.drop_unpublished, 0);
	assert_int_equal(st.drop_desync + st.drop_gap + st.retransmit_segments, 0);
	output_free(o);
	for (int k = 0; k < NCLIENTS; k++)
		for (size_t i = 0; i < e[k].n; i++)
			free(e[k].data[i]);
	free(e);
	finish(h);
}

/* ---- session sync through the control queue --------------------------------------------- */

static void test_sync_db_unit(void **state)
{
	struct harness *h = start("--batch_packets=100", "--read_timeout=20", NULL);
	struct client c;
	uint8_t want[] = {0x05, 0x00, 0x00, 0x00, 0x02, 's', 'h', 'o', 'p'};

	(void)state;
	pick_clients(h, 1, &c, 1, 34000);
	publishers_sync_db(h->ps, c.saddr, c.sport, "shop", 0, mono_ns());
	struct output *o = await_messages(h->path, 1, 5000);

	assert_int_equal(o->nu, 1);
	assert_unit_is(o, 0, &c, want, sizeof(want));
	output_free(o);

	/* The server no longer lists it: a COM_QUIT for the player. */
	const uint8_t quit[] = {0x01, 0x00, 0x00, 0x00, 0x01};

	publishers_session_gone(h->ps, c.saddr, c.sport, mono_ns(), mono_ns());
	o = await_messages(h->path, 2, 5000);
	assert_int_equal(o->nu, 2);
	assert_unit_is(o, 1, &c, quit, sizeof(quit));
	output_free(o);

	/* An excluded client is not published. */
	struct client self;
	uint8_t q[64];
	size_t ql = make_query(q, 30, "self", 0);

	pick_clients(h, 0, &self, 1, 35000);
	assert_int_equal(publishers_exclude(h->ps, self.saddr, self.sport, 1), 0);
	syn(h, &self);
	segment(h, &self, q, ql);
	stop(h);
	o = read_output(h->path);
	assert_int_equal(o->nu, 2);

	struct mrte_agent_stats st;

	publishers_stats(h->ps, &st);
	assert_int_equal(st.drop_self, 1);
	assert_int_equal(st.synthetic_init_db, 1);
	assert_int_equal(st.synthetic_quit, 1);
	output_free(o);
	finish(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_batch_packets, setup),
		cmocka_unit_test_setup(test_batch_bytes, setup),
		cmocka_unit_test_setup(test_read_timeout, setup),
		cmocka_unit_test_setup(test_order_many_clients, setup),
		cmocka_unit_test_setup(test_sync_db_unit, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
