/* queue.c -- SPSC record queue with an eventfd doorbell.
 *
 * Layout: a power-of-two byte ring of 8-byte-aligned entries, each a 4-byte
 * length, 4 bytes of padding, then the record and its payload.  An entry
 * never wraps: when it does not fit before the end, a WRAP marker fills the
 * rest and the entry starts at offset 0.  `tail` (producer) and `head`
 * (consumer) only grow; acquire/release ordering hands the bytes over.
 *
 * Wake-ups cost a syscall only when the consumer is idle: it raises
 * `waiting` just before it blocks and then looks at the queue once more;
 * the producer rings only if it finds `waiting` raised (and lowers it, so
 * one bell per sleep).  A busy consumer polls and is never rung.
 */
#include "queue.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define ENTRY_HDR 8
#define WRAP 0xffffffffu

struct rec_queue {
	uint8_t *buf;
	size_t mask;
	size_t head; /* consumer position (atomic) */
	size_t tail; /* producer position (atomic) */
	int waiting; /* atomic: consumer is (about to be) asleep */
	int efd;
};

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

struct rec_queue *rec_queue_new(size_t bytes)
{
	struct rec_queue *q = calloc(1, sizeof(*q));
	size_t cap = 4096;

	if (!q)
		return NULL;
	while (cap < bytes)
		cap <<= 1;
	q->buf = malloc(cap);
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!q->buf || q->efd < 0) {
		rec_queue_free(q);
		return NULL;
	}
	q->mask = cap - 1;
	q->waiting = 1;
	return q;
}

void rec_queue_free(struct rec_queue *q)
{
	if (!q)
		return;
	if (q->efd >= 0)
		close(q->efd);
	free(q->buf);
	free(q);
}

static void ring_bell(struct rec_queue *q)
{
	uint64_t one = 1;

	if (write(q->efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the bell is ringing */
	}
}

int rec_queue_push(struct rec_queue *q, const struct mrte_rec *rec, const uint8_t *payload)
{
	size_t need = align8(ENTRY_HDR + sizeof(*rec) + rec->len);
	size_t cap = q->mask + 1;
	size_t head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
	size_t tail = q->tail;
	size_t pos = tail & q->mask, to_end = cap - pos;
	size_t skip = need > to_end ? to_end : 0;

	if (need > cap / 2 || skip + need > cap - (tail - head))
		return -1;
	if (skip) {
		uint32_t wrap = WRAP;

		memcpy(q->buf + pos, &wrap, 4);
		tail += skip;
		pos = 0;
	}
	uint32_t len = (uint32_t)(sizeof(*rec) + rec->len);

	memcpy(q->buf + pos, &len, 4);
	memcpy(q->buf + pos + ENTRY_HDR, rec, sizeof(*rec));
	if (rec->len)
		memcpy(q->buf + pos + ENTRY_HDR + sizeof(*rec), payload, rec->len);
	__atomic_store_n(&q->tail, tail + need, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&q->waiting, 0, __ATOMIC_SEQ_CST))
		ring_bell(q);
	return 0;
}

size_t rec_queue_used(struct rec_queue *q)
{
	return __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) - __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
}

/* ---- the consumer, as a feed --------------------------------------------------- */

struct queue_feed {
	struct feed base;
	struct rec_queue *q;
	feed_record_fn fn;
	void *ctx;
};

static int queue_feed_fd(struct feed *f)
{
	return ((struct queue_feed *)f)->q->efd;
}

static int queue_feed_consume(struct feed *f)
{
	struct queue_feed *qf = (struct queue_feed *)f;
	struct rec_queue *q = qf->q;
	uint64_t v;
	int n = 0;

	if (read(q->efd, &v, sizeof(v)) < 0) {
		/* not rung: we came for the timer */
	}
	for (;;) {
		size_t head = q->head;
		size_t tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);

		if (head == tail)
			break;
		size_t pos = head & q->mask;
		uint32_t len;

		memcpy(&len, q->buf + pos, 4);
		if (len == WRAP) {
			__atomic_store_n(&q->head, head + (q->mask + 1 - pos), __ATOMIC_RELEASE);
			continue;
		}
		const struct mrte_rec *rec = (const struct mrte_rec *)(q->buf + pos + ENTRY_HDR);
		int rc = qf->fn(qf->ctx, rec, (const uint8_t *)(rec + 1));

		__atomic_store_n(&q->head, head + align8(ENTRY_HDR + len), __ATOMIC_RELEASE);
		n++;
		if (rc < 0) {
			/* Backpressure: leave the rest for later, and keep the bell
			 * rung so the consumer's poll wakes as soon as it listens. */
			if (__atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) != q->head)
				ring_bell(q);
			return rc;
		}
	}
	return n;
}

/* About to block: ask the producer to ring.  The consumer looks at the
 * queue once more after this, so a record pushed just before is not missed. */
static void queue_feed_idle(struct feed *f)
{
	__atomic_store_n(&((struct queue_feed *)f)->q->waiting, 1, __ATOMIC_SEQ_CST);
}

static void queue_feed_awake(struct feed *f)
{
	__atomic_store_n(&((struct queue_feed *)f)->q->waiting, 0, __ATOMIC_RELAXED);
}

static void queue_feed_destroy(struct feed *f)
{
	free(f); /* the queue belongs to the pcap backend */
}

struct feed *rec_queue_feed(struct rec_queue *q, feed_record_fn fn, void *ctx)
{
	struct queue_feed *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->q = q;
	f->fn = fn;
	f->ctx = ctx;
	f->base.fd = queue_feed_fd;
	f->base.consume = queue_feed_consume;
	f->base.idle = queue_feed_idle;
	f->base.awake = queue_feed_awake;
	f->base.destroy = queue_feed_destroy;
	return &f->base;
}
