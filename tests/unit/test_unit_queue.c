/* test_unit_queue.c -- the SPSC record queue the pcap reader feeds.
 *
 * Order and content through many wrap-arounds, refusal when full,
 * backpressure from the consumer callback, the eventfd doorbell, and a
 * two-thread run that checks every byte of every record arrives once, in
 * order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"
#include "queue.h"

/* The bytes of record number i, length len: cheap and position dependent. */
static uint8_t pattern(uint32_t i, uint32_t j)
{
	return (uint8_t)(i * 131u + j * 7u + (j >> 8));
}

static void fill(uint8_t *p, uint32_t i, uint32_t len)
{
	for (uint32_t j = 0; j < len; j++)
		p[j] = pattern(i, j);
}

static int check_bytes(const uint8_t *p, uint32_t i, uint32_t len)
{
	for (uint32_t j = 0; j < len; j++)
		if (p[j] != pattern(i, j))
			return -1;
	return 0;
}

static struct mrte_rec make_rec(uint32_t i, uint32_t len)
{
	struct mrte_rec r = {
		.ts_ns = 1000ull * i,
		.saddr = 0x0100007f,
		.daddr = 0x0200007f,
		.seq = i,
		.sport = (uint16_t)(1024 + i % 50000),
		.dport = 3306,
		.len = (uint16_t)len,
		.flags = (uint8_t)(i & 0x1f),
		.chunk = 0,
		.seg_len = len,
	};
	return r;
}

/* xorshift32: the producer and the consumer draw the same sizes. */
static uint32_t rnd(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* ---- a checking consumer --------------------------------------------------- */

struct checker {
	uint32_t next;      /* record number expected next */
	uint32_t rng;       /* size generator, in step with the producer's */
	uint32_t max_len;   /* sizes drawn from 0..max_len */
	int stop_after;     /* return -1 after this many (0 = never) */
	int seen;           /* records this consume call */
	uint32_t errors;
	uint64_t bytes;
};

static uint32_t draw_len(uint32_t *rng, uint32_t max_len)
{
	uint32_t r = rnd(rng);

	/* Mostly small records, some up to max_len: many wraps at every
	 * alignment without moving gigabytes. */
	if (r % 8 == 0)
		return rnd(rng) % (max_len + 1);
	return rnd(rng) % (max_len < 300 ? max_len + 1 : 301);
}

static int check_rec(void *ctx, const struct mrte_rec *rec, const uint8_t *payload)
{
	struct checker *c = ctx;
	uint32_t len = draw_len(&c->rng, c->max_len);
	struct mrte_rec want = make_rec(c->next, len);

	if (memcmp(rec, &want, sizeof(want)) || check_bytes(payload, c->next, len))
		c->errors++;
	c->bytes += rec->len;
	c->next++;
	c->seen++;
	return c->stop_after && c->seen >= c->stop_after ? -1 : 0;
}

static int push_n(struct rec_queue *q, uint32_t first, uint32_t n, uint32_t *rng,
		  uint32_t max_len, uint8_t *buf)
{
	for (uint32_t i = first; i < first + n; i++) {
		uint32_t len = draw_len(rng, max_len);
		struct mrte_rec r = make_rec(i, len);

		fill(buf, i, len);
		if (rec_queue_push(q, &r, buf))
			return -1;
	}
	return 0;
}

static int readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_order_and_content(void **state)
{
	struct rec_queue *q = rec_queue_new(64 * 1024);
	struct checker c = {.rng = 12345, .max_len = 1000};
	uint32_t prng = 12345;
	uint8_t buf[MRTE_CHUNK];
	struct feed *f;

	(void)state;
	assert_non_null(q);
	f = rec_queue_feed(q, check_rec, &c);
	assert_non_null(f);
	assert_int_equal(rec_queue_used(q), 0);
	assert_int_equal(f->consume(f), 0); /* empty */
	assert_int_equal(push_n(q, 0, 20, &prng, 1000, buf), 0);
	assert_true(rec_queue_used(q) > 20 * sizeof(struct mrte_rec));
	assert_int_equal(f->consume(f), 20);
	assert_int_equal(c.next, 20);
	assert_int_equal(c.errors, 0);
	assert_int_equal(rec_queue_used(q), 0);

	/* A record with no payload (a flow event) is a record too. */
	struct mrte_rec ev = make_rec(20, 0);

	assert_int_equal(rec_queue_push(q, &ev, NULL), 0);
	c.max_len = 0;
	assert_int_equal(f->consume(f), 1);
	assert_int_equal(c.next, 21);
	assert_int_equal(c.errors, 0);
	f->destroy(f);
	rec_queue_free(q);
}

static void test_wrap_around(void **state)
{
	/* The smallest queue (4 KiB): entries of every size wrap at every
	 * offset; the consumer takes a few at a time. */
	struct rec_queue *q = rec_queue_new(1);
	struct checker c = {.rng = 777, .max_len = 1900};
	uint32_t prng = 777, pushed = 0;
	uint8_t buf[2048];
	struct feed *f;

	(void)state;
	assert_non_null(q);
	f = rec_queue_feed(q, check_rec, &c);
	for (int round = 0; round < 20000; round++) {
		uint32_t want = 1 + (uint32_t)round % 3;

		for (uint32_t k = 0; k < want; k++) {
			uint32_t save = prng;
			uint32_t len = draw_len(&prng, 1900);
			struct mrte_rec r = make_rec(pushed, len);

			fill(buf, pushed, len);
			if (rec_queue_push(q, &r, buf)) {
				prng = save; /* no room: draw the same size next time */
				break;
			}
			pushed++;
		}
		c.seen = 0;
		c.stop_after = 1 + round % 2;
		f->consume(f);
	}
	c.stop_after = 0;
	f->consume(f);
	assert_int_equal(c.errors, 0);
	assert_int_equal(c.next, pushed);
	assert_true(pushed > 20000);
	assert_int_equal(rec_queue_used(q), 0);
	f->destroy(f);
	rec_queue_free(q);
}

static void test_full(void **state)
{
	struct rec_queue *q = rec_queue_new(4096);
	struct checker c = {.rng = 99, .max_len = 100};
	uint32_t prng = 99, n = 0;
	uint8_t buf[4096] = {0};
	struct feed *f;

	(void)state;
	assert_non_null(q);
	/* A record over half the queue never fits. */
	struct mrte_rec big = make_rec(0, 3000);

	assert_int_equal(rec_queue_push(q, &big, buf), -1);
	assert_int_equal(rec_queue_used(q), 0);

	struct mrte_rec refused;

	for (;;) {
		uint32_t save = prng;
		uint32_t len = draw_len(&prng, 100);

		refused = make_rec(n, len);
		fill(buf, n, len);
		if (rec_queue_push(q, &refused, buf)) {
			prng = save;
			break;
		}
		n++;
		assert_true(n < 4096);
	}
	size_t used = rec_queue_used(q);

	/* Refused only because that entry did not fit in what was left. */
	assert_true(used > 4096 - (8 + sizeof(struct mrte_rec) + refused.len + 7) / 8 * 8);
	assert_true(used <= 4096);
	/* Refusing changed nothing, and asking again gets the same answer. */
	assert_int_equal(rec_queue_push(q, &refused, buf), -1);
	assert_int_equal(rec_queue_used(q), used);

	f = rec_queue_feed(q, check_rec, &c);
	assert_int_equal(f->consume(f), (int)n);
	assert_int_equal(c.errors, 0);
	/* Room again. */
	assert_int_equal(push_n(q, n, 5, &prng, 100, buf), 0);
	assert_int_equal(f->consume(f), 5);
	assert_int_equal(c.errors, 0);
	f->destroy(f);
	rec_queue_free(q);
}

static void test_backpressure_stop(void **state)
{
	struct rec_queue *q = rec_queue_new(64 * 1024);
	struct checker c = {.rng = 5, .max_len = 200, .stop_after = 3};
	uint32_t prng = 5;
	uint8_t buf[256];
	struct feed *f;

	(void)state;
	f = rec_queue_feed(q, check_rec, &c);
	assert_int_equal(push_n(q, 0, 10, &prng, 200, buf), 0);
	size_t before = rec_queue_used(q);

	/* The callback's -1 stops consumption after that record. */
	assert_true(f->consume(f) < 0);
	assert_int_equal(c.next, 3);
	assert_true(rec_queue_used(q) < before);
	assert_true(rec_queue_used(q) > 0);
	/* The rest is still there, in order. */
	c.seen = 0;
	c.stop_after = 0;
	assert_int_equal(f->consume(f), 7);
	assert_int_equal(c.next, 10);
	assert_int_equal(c.errors, 0);
	assert_int_equal(rec_queue_used(q), 0);
	f->destroy(f);
	rec_queue_free(q);
}

static void test_doorbell(void **state)
{
	struct rec_queue *q = rec_queue_new(64 * 1024);
	struct checker c = {.rng = 8, .max_len = 50};
	uint32_t prng = 8;
	uint8_t buf[64];
	struct feed *f;
	int fd;

	(void)state;
	f = rec_queue_feed(q, check_rec, &c);
	fd = f->fd(f);
	assert_true(fd >= 0);
	assert_false(readable(fd)); /* nothing yet */
	assert_int_equal(push_n(q, 0, 1, &prng, 50, buf), 0);
	assert_true(readable(fd)); /* the consumer was idle: rung */
	assert_int_equal(f->consume(f), 1);
	assert_false(readable(fd)); /* drained and quiet */

	/* Busy (it consumed and has not said it is going idle): pushes do
	 * not ring -- the consumer looks again by itself. */
	assert_int_equal(push_n(q, 1, 2, &prng, 50, buf), 0);
	assert_false(readable(fd));
	assert_int_equal(f->consume(f), 2);

	/* Idle again: the next push rings, and several pushes ring once
	 * (the counter is read away in one go). */
	f->idle(f);
	assert_false(readable(fd));
	assert_int_equal(push_n(q, 3, 3, &prng, 50, buf), 0);
	assert_true(readable(fd));
	assert_int_equal(f->consume(f), 3);
	assert_false(readable(fd));
	/* A record that slipped in before idle() is not rung for: the
	 * consumer's look after idle() (the publisher makes one) finds it. */
	f->awake(f);
	assert_int_equal(push_n(q, 6, 1, &prng, 50, buf), 0);
	assert_false(readable(fd));
	f->idle(f);
	assert_false(readable(fd));
	assert_int_equal(f->consume(f), 1);
	/* One bell per sleep: the producer lowers the flag as it rings. */
	f->idle(f);
	assert_int_equal(push_n(q, 7, 2, &prng, 50, buf), 0);
	assert_true(readable(fd));
	assert_int_equal(f->consume(f), 2);
	assert_int_equal(push_n(q, 9, 1, &prng, 50, buf), 0);
	assert_false(readable(fd));
	assert_int_equal(f->consume(f), 1);
	assert_int_equal(c.errors, 0);
	f->destroy(f);
	rec_queue_free(q);
}

/* ---- two threads ----------------------------------------------------------- */

#define STRESS_RECORDS 200000u
#define STRESS_SEED 424242u

struct producer {
	struct rec_queue *q;
	uint32_t full; /* pushes refused (queue full) */
};

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	uint32_t prng = STRESS_SEED;
	static uint8_t buf[MRTE_CHUNK];

	for (uint32_t i = 0; i < STRESS_RECORDS; i++) {
		uint32_t len = draw_len(&prng, MRTE_CHUNK);
		struct mrte_rec r = make_rec(i, len);

		fill(buf, i, len);
		while (rec_queue_push(p->q, &r, buf)) {
			p->full++;
			sched_yield();
		}
	}
	return NULL;
}

static void test_two_threads(void **state)
{
	struct rec_queue *q = rec_queue_new(1 << 20);
	struct checker c = {.rng = STRESS_SEED, .max_len = MRTE_CHUNK};
	struct producer p = {.q = q};
	pthread_t t;
	struct feed *f;
	uint64_t start = mono_ns(), deadline = start + 20000000000ull;

	(void)state;
	f = rec_queue_feed(q, check_rec, &c);
	assert_int_equal(pthread_create(&t, NULL, producer_main, &p), 0);
	/* The consumer sleeps on the doorbell as a publisher does; a missed
	 * wake-up would show as a 1 s poll timeout and a slow test, so the
	 * poll result is counted too. */
	uint32_t timeouts = 0;

	while (c.next < STRESS_RECORDS && mono_ns() < deadline) {
		struct pollfd pfd = {.fd = f->fd(f), .events = POLLIN};

		/* As the publisher does: ask for the bell, look once more, and
		 * only then block. */
		f->idle(f);
		if (f->consume(f) == 0 && poll(&pfd, 1, 1000) == 0)
			timeouts++;
		f->awake(f);
		f->consume(f);
	}
	pthread_join(t, NULL);
	f->consume(f);
	uint64_t took = mono_ns() - start;

	print_message("  %u records, %.1f MB in %.2f s, producer found it full %u times\n",
		      c.next, (double)c.bytes / 1e6, (double)took / 1e9, p.full);
	assert_int_equal(c.next, STRESS_RECORDS);
	assert_int_equal(c.errors, 0);
	assert_int_equal(timeouts, 0);
	assert_int_equal(rec_queue_used(q), 0);
	assert_true(took < 10000000000ull);
	f->destroy(f);
	rec_queue_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_content),
		cmocka_unit_test(test_wrap_around),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_backpressure_stop),
		cmocka_unit_test(test_doorbell),
		cmocka_unit_test(test_two_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
