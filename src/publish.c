/* publish.c -- publisher threads: batch MRTE units and hand them to a sink.
 *
 * Each publisher runs one epoll loop over three sources: its capture feed
 * (a BPF ring or the pcap reader's queue), its control eventfd (synthetic
 * units from the session thread) and its broker socket (acks, returns,
 * closes).  Records go through the flow table, which calls back with units;
 * units fill the open batch, which is closed when it holds --batch_packets
 * units, would pass --batch_bytes, or its first unit has waited
 * --read_timeout.  A closed batch is published at once if nothing is
 * waiting before it, otherwise it joins the pending queue.
 *
 * Backpressure, never a panic: when --queue_size messages are pending (the
 * broker is down or slow) or as many are unconfirmed, the publisher stops
 * reading its feed.  The BPF ring then fills and the kernel counts
 * ring_full drops; the pcap reader counts queue_full.  Reconnection backs
 * off from 100 ms to 5 s.
 *
 * Buffers are recycled: a message's buffer goes back to a spare list once
 * published, so the steady state allocates nothing.
 */
#include "publish.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "flow.h"
#include "log.h"
#include "sink.h"
#include "wire.h"

#define BACKOFF_MIN_NS (100ull * 1000000ull)
#define BACKOFF_MAX_NS (5000ull * 1000000ull)
#define HOUSEKEEPING_NS (1000ull * 1000000ull)
#define FEED_LINGER_MIN_NS 125000  /* looks at the ring while records flow: every 0.125 */
#define FEED_LINGER_MAX_NS 1000000 /* ... to 1 ms, by how many records each look finds */
#define FEED_LINGER_FEW 32
#define FEED_LINGER_MANY 256
#define FEED_LINGER_TURNS 4 /* empty looks before blocking */
#define MAX_DB_NAME 256

/* ---- control messages ------------------------------------------------------ */

enum ctl_kind { CTL_SYNC_DB, CTL_GONE, CTL_EXCLUDE };

struct ctl {
	uint8_t kind;
	uint8_t flag; /* SYNC_DB: force; EXCLUDE: on */
	uint16_t sport;
	uint32_t saddr;
	uint64_t seen_ns; /* GONE: when last seen; EXCLUDE: request number */
	uint64_t at_ns;   /* applies after the records captured before this time */
	char db[MAX_DB_NAME + 1];
};

struct msg {
	uint8_t *buf;
	size_t len;
	uint32_t units;
};

struct publisher {
	int id;
	pthread_t thread;
	bool started;
	const struct mrte_config *cfg;
	uint32_t local_ip;
	struct feed *feed;
	struct flow_table *flows;
	struct sink *sink;
	struct wire_batch batch;
	struct batch_policy policy;
	size_t buf_cap;

	struct msg *pending; /* ring; grows past queue_size only within one record */
	uint32_t pend_head, pend_count, pend_cap;
	uint64_t pend_units;
	uint8_t **spare;
	uint32_t nspare, spare_cap;

	int epfd, evfd;
	bool feed_armed;
	int sink_fd_watched;
	uint64_t reconnect_at, backoff_ns;
	uint64_t now;
	bool stopping;

	pthread_mutex_t ctl_lock;
	struct ctl *ctl; /* pushed by other threads */
	size_t nctl, ctl_cap;
	struct ctl *ready; /* taken, waiting for the capture to pass their time */
	size_t nready, ready_next;

	uint64_t publish_started_ns; /* atomic: set while a write to the sink runs */
	bool stop_flag;              /* atomic */
	uint64_t stop_deadline;      /* written before stop_flag is set */
	uint64_t exclude_requested;  /* atomic: EXCLUDE requests numbered ... */
	uint64_t exclude_applied;    /* atomic: ... and the last one applied */

	struct mrte_agent_stats st __attribute__((aligned(64)));
};

struct publishers {
	const struct mrte_config *cfg;
	unsigned n;
	struct publisher *p;
};

/* ---- buffers and the pending queue ------------------------------------------ */

static uint8_t *buf_take(struct publisher *p)
{
	if (p->nspare)
		return p->spare[--p->nspare];
	return malloc(p->buf_cap);
}

static void buf_give(struct publisher *p, uint8_t *buf)
{
	if (p->nspare < p->spare_cap)
		p->spare[p->nspare++] = buf;
	else
		free(buf);
}

static void update_gauges(struct publisher *p)
{
	CTR_SET(p->st.queue_depth, p->pend_units + p->batch.units);
}

static void watch_sink_fd(struct publisher *p)
{
	int fd = sink_fd(p->sink);

	if (fd < 0 || fd == p->sink_fd_watched)
		return;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 2};

	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) && errno == EEXIST)
		epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &ev);
	p->sink_fd_watched = fd;
}

/* Write one message to the sink if it can take it now. */
static int try_publish(struct publisher *p, const uint8_t *buf, size_t len, uint32_t units)
{
	if (!sink_is_open(p->sink)) {
		p->sink_fd_watched = -1; /* a closed fd leaves the epoll set by itself */
		if (p->now < p->reconnect_at)
			return -1;
		/* Past the stop deadline, no new connection: a handshake with a
		 * broker that accepts but never answers takes seconds. */
		if (__atomic_load_n(&p->stop_flag, __ATOMIC_ACQUIRE) && p->now >= p->stop_deadline)
			return -1;
		if (sink_open(p->sink)) {
			p->now = mono_ns(); /* a handshake can time out after seconds */
			p->backoff_ns = p->backoff_ns ? p->backoff_ns * 2 : BACKOFF_MIN_NS;
			if (p->backoff_ns > BACKOFF_MAX_NS)
				p->backoff_ns = BACKOFF_MAX_NS;
			p->reconnect_at = p->now + p->backoff_ns;
			return -1;
		}
		p->backoff_ns = 0;
		watch_sink_fd(p);
	}
	if (sink_inflight(p->sink) >= p->cfg->queue_size) {
		sink_service(p->sink);
		if (sink_inflight(p->sink) >= p->cfg->queue_size)
			return -1; /* wait for the broker's acks */
	}
	__atomic_store_n(&p->publish_started_ns, p->now ? p->now : 1, __ATOMIC_RELAXED);
	int rc = sink_publish(p->sink, buf, len, units);

	__atomic_store_n(&p->publish_started_ns, 0, __ATOMIC_RELAXED);
	if (rc) {
		/* The write may have blocked for seconds (a broker that stopped
		 * reading, until the watchdog or the stop cut it): back off from
		 * now, not from before it, or the reconnect starts at once. */
		p->now = mono_ns();
		p->backoff_ns = BACKOFF_MIN_NS;
		p->reconnect_at = p->now + p->backoff_ns;
		return -1;
	}
	CTR_INC(p->st.messages);
	CTR_ADD(p->st.message_bytes, len);
	return 0;
}

static void drain_pending(struct publisher *p)
{
	while (p->pend_count) {
		struct msg *m = &p->pending[p->pend_head];

		if (try_publish(p, m->buf, m->len, m->units))
			break;
		p->pend_units -= m->units;
		buf_give(p, m->buf);
		p->pend_head = (p->pend_head + 1) % p->pend_cap;
		p->pend_count--;
	}
}

static bool backpressured(const struct publisher *p)
{
	return p->pend_count >= p->cfg->queue_size;
}

/* Make room for one more pending message.  The queue passes queue_size
 * only while the record that filled it is still being cut into units
 * (at most one record's worth), or while stopping. */
static int pending_grow(struct publisher *p)
{
	if (p->pend_count < p->pend_cap)
		return 0;
	uint32_t cap = p->pend_cap * 2;
	struct msg *n = malloc(cap * sizeof(*n));

	if (!n)
		return -1;
	for (uint32_t i = 0; i < p->pend_count; i++)
		n[i] = p->pending[(p->pend_head + i) % p->pend_cap];
	free(p->pending);
	p->pending = n;
	p->pend_head = 0;
	p->pend_cap = cap;
	return 0;
}

/* The open batch is complete: publish it or queue it. */
static void close_batch(struct publisher *p)
{
	if (!p->batch.units)
		return;
	if (!p->pend_count && try_publish(p, p->batch.buf, p->batch.len, p->batch.units) == 0) {
		wire_batch_reset(&p->batch);
		return;
	}
	uint8_t *fresh = pending_grow(p) ? NULL : buf_take(p);

	if (!fresh) {
		/* Out of memory: the batch is lost, and counted. */
		CTR_ADD(p->st.drop_unpublished, p->batch.units);
		wire_batch_reset(&p->batch);
		return;
	}
	uint32_t tail = (p->pend_head + p->pend_count) % p->pend_cap;

	p->pending[tail] = (struct msg){p->batch.buf, p->batch.len, p->batch.units};
	p->pend_count++;
	p->pend_units += p->batch.units;
	memcpy(fresh, &p->local_ip, 4);
	p->batch.buf = fresh;
	wire_batch_reset(&p->batch);
}

/* ---- control queue -------------------------------------------------------------- */

static void ctl_push(struct publisher *p, const struct ctl *c)
{
	uint64_t one = 1;

	pthread_mutex_lock(&p->ctl_lock);
	if (p->nctl == p->ctl_cap) {
		size_t cap = p->ctl_cap ? p->ctl_cap * 2 : 16;
		struct ctl *n = realloc(p->ctl, cap * sizeof(*n));

		if (!n) {
			pthread_mutex_unlock(&p->ctl_lock);
			log_error("publisher %d: out of memory queueing a session event", p->id);
			return;
		}
		p->ctl = n;
		p->ctl_cap = cap;
	}
	p->ctl[p->nctl++] = *c;
	pthread_mutex_unlock(&p->ctl_lock);
	if (write(p->evfd, &one, sizeof(one)) < 0) {
		/* the counter saturates only after 2^64 writes */
	}
}

static void ctl_apply(struct publisher *p, const struct ctl *c)
{
	switch (c->kind) {
	case CTL_SYNC_DB:
		flow_sync_db(p->flows, c->saddr, c->sport, c->db, c->flag, p->now);
		break;
	case CTL_GONE:
		flow_session_gone(p->flows, c->saddr, c->sport, c->seen_ns);
		break;
	case CTL_EXCLUDE:
		flow_exclude(p->flows, c->saddr, c->sport, c->flag);
		__atomic_store_n(&p->exclude_applied, c->seen_ns, __ATOMIC_RELEASE);
		break;
	}
}

/* Take what other threads pushed.  Exclusions apply at once (the session
 * thread waits for them); database and session-end events wait in `ready`
 * until the capture has passed the moment they describe, so that they land
 * between the right records of that client (ctl_apply_until). */
static void ctl_take(struct publisher *p)
{
	struct ctl *batch;
	size_t n;

	pthread_mutex_lock(&p->ctl_lock);
	batch = p->ctl;
	n = p->nctl;
	p->ctl = NULL;
	p->nctl = p->ctl_cap = 0;
	pthread_mutex_unlock(&p->ctl_lock);
	if (!n)
		return;
	if (p->ready_next == p->nready) {
		free(p->ready);
		p->ready = NULL;
		p->nready = p->ready_next = 0;
	}
	struct ctl *all = realloc(p->ready, (p->nready + n) * sizeof(*all));

	if (!all) {
		log_error("publisher %d: out of memory for session events", p->id);
		free(batch);
		return;
	}
	p->ready = all;
	for (size_t i = 0; i < n; i++) {
		if (batch[i].kind == CTL_EXCLUDE)
			ctl_apply(p, &batch[i]);
		else
			p->ready[p->nready++] = batch[i];
	}
	free(batch);
}

/* Apply the waiting events that describe moments up to `t`. */
static void ctl_apply_until(struct publisher *p, uint64_t t)
{
	while (p->ready_next < p->nready && p->ready[p->ready_next].at_ns <= t)
		ctl_apply(p, &p->ready[p->ready_next++]);
}

/* ---- units and records ------------------------------------------------------ */

static void on_unit(void *ctx, uint32_t saddr, uint16_t sport, const uint8_t *a, size_t alen,
		    const uint8_t *b, size_t blen)
{
	struct publisher *p = ctx;
	size_t size = wire_unit_size(alen + blen);

	if (batch_close_before(&p->policy, &p->batch, size))
		close_batch(p);
	if (size > wire_batch_room(&p->batch)) {
		/* Larger than any record can make: a bug, but never a crash. */
		log_error("publisher %d: unit of %zu bytes does not fit a message", p->id, size);
		CTR_INC(p->st.drop_unpublished);
		return;
	}
	wire_batch_add(&p->batch, saddr, sport, a, alen, b, blen, p->now);
	if (batch_close_after(&p->policy, &p->batch))
		close_batch(p);
}

static int on_record(void *ctx, const struct mrte_rec *rec, const uint8_t *payload)
{
	struct publisher *p = ctx;

	CTR_INC(p->st.records);
	if (p->ready_next < p->nready)
		ctl_apply_until(p, rec->ts_ns);
	flow_input(p->flows, rec, payload, p->now);
	return backpressured(p) && !p->stopping ? -1 : 0;
}

static void arm_feed(struct publisher *p, bool on)
{
	if (p->feed_armed == on)
		return;
	struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.u32 = 0};

	epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->feed->fd(p->feed), &ev);
	p->feed_armed = on;
}

/* ---- the loop ---------------------------------------------------------------------- */

static int loop_timeout_ms(struct publisher *p)
{
	uint64_t deadline = p->now + HOUSEKEEPING_NS;
	uint64_t d;

	if ((d = batch_deadline(&p->policy, &p->batch)) < deadline)
		deadline = d;
	if ((d = flow_next_deadline(p->flows)) < deadline)
		deadline = d;
	if ((p->pend_count || p->batch.units) && !sink_is_open(p->sink) && p->reconnect_at < deadline)
		deadline = p->reconnect_at;
	if (deadline <= p->now)
		return 0;
	return (int)((deadline - p->now + 999999) / 1000000);
}

/* One turn: wait for something to do (up to timeout_ms), then do it all.
 * Returns the records taken from the feed. */
static int loop_once(struct publisher *p, int timeout_ms)
{
	struct epoll_event evs[4];
	int n = epoll_wait(p->epfd, evs, 4, timeout_ms), records = 0;

	p->now = mono_ns();
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u32 == 1) {
			uint64_t v;

			if (read(p->evfd, &v, sizeof(v)) < 0) {
				/* nothing pending: a spurious wakeup */
			}
		}
	}
	ctl_take(p);
	if (sink_is_open(p->sink) && sink_service(p->sink))
		p->reconnect_at = p->now + BACKOFF_MIN_NS;
	drain_pending(p);
	/* Records first, so events apply in capture order; once the feed is
	 * drained, every event left describes a moment already passed. */
	if (!backpressured(p) || p->stopping) {
		records = p->feed->consume(p->feed);
		if (records >= 0)
			ctl_apply_until(p, UINT64_MAX);
	}
	p->now = mono_ns();
	flow_tick(p->flows, p->now);
	if (p->now >= batch_deadline(&p->policy, &p->batch))
		close_batch(p);
	drain_pending(p);
	arm_feed(p, !backpressured(p));
	update_gauges(p);
	return records > 0 ? records : 0;
}

/* Stopping: the capture is detached, so the feed holds all there will be. */
static void publisher_finish(struct publisher *p, uint64_t deadline)
{
	p->stopping = true;
	p->now = mono_ns();
	ctl_take(p);
	while (p->feed->consume(p->feed) > 0)
		;
	ctl_apply_until(p, UINT64_MAX);
	flow_flush(p->flows, p->now);
	close_batch(p);
	while ((p->pend_count || sink_inflight(p->sink)) && p->now < deadline) {
		int left = (int)((deadline - p->now) / 1000000);

		drain_pending(p);
		if (!p->pend_count && !sink_inflight(p->sink))
			break;
		loop_once(p, left < 20 ? left : 20);
	}
	if (p->pend_units || sink_inflight(p->sink)) {
		log_error("publisher %d: stopping with %llu unit(s) unpublished and %zu message(s) "
			  "unconfirmed (broker unavailable)",
			  p->id, (unsigned long long)p->pend_units, sink_inflight(p->sink));
		CTR_ADD(p->st.drop_unpublished, p->pend_units);
	}
	sink_close(p->sink);
	update_gauges(p);
}

static void *publisher_main(void *arg)
{
	struct publisher *p = arg;
	char name[16];

	snprintf(name, sizeof(name), "mrte-pub%d", p->id);
	pthread_setname_np(pthread_self(), name);
	p->now = mono_ns();
	if (sink_open(p->sink) == 0)
		watch_sink_fd(p);
	else
		p->reconnect_at = p->now + (p->backoff_ns = BACKOFF_MIN_NS);
	/* While records keep coming, look every 0.125..1 ms instead of
	 * blocking: a wake-up is an interrupt charged to the CPU that captured
	 * the packet, and the capture sends none to a publisher that has not
	 * asked for one (feed->idle).  After FEED_LINGER_TURNS empty looks the
	 * publisher blocks, and the next record wakes it once. */
	unsigned empty_turns = 0;
	long linger_ns = FEED_LINGER_MIN_NS;

	while (!__atomic_load_n(&p->stop_flag, __ATOMIC_ACQUIRE)) {
		if (empty_turns < FEED_LINGER_TURNS) {
			struct timespec linger = {.tv_nsec = linger_ns};
			int n;

			nanosleep(&linger, NULL);
			n = loop_once(p, 0);
			empty_turns = n ? 0 : empty_turns + 1;
			/* Look less often when few records come per look (each
			 * look is a wake-up of this thread), more often when many
			 * do (the ring is filling). */
			if (n < FEED_LINGER_FEW && linger_ns < FEED_LINGER_MAX_NS)
				linger_ns *= 2;
			else if (n > FEED_LINGER_MANY && linger_ns > FEED_LINGER_MIN_NS)
				linger_ns /= 2;
			continue;
		}
		/* Going to block: ask for a wake-up, look once more (a record
		 * may have come just before the ask), then wait. */
		p->feed->idle(p->feed);
		if (!loop_once(p, 0) && !loop_once(p, loop_timeout_ms(p)))
			empty_turns = FEED_LINGER_TURNS; /* woken for a timer or an event */
		else
			empty_turns = 0;
		p->feed->awake(p->feed);
	}
	publisher_finish(p, p->stop_deadline);
	return NULL;
}

/* ---- set-up and the public interface ---------------------------------------------------- */

static int publisher_init(struct publisher *p, int id, const struct mrte_config *cfg,
			  const struct feed_source *src, uint32_t local_ip)
{
	p->id = id;
	p->cfg = cfg;
	p->local_ip = local_ip;
	p->sink_fd_watched = -1;
	p->epfd = p->evfd = -1;
	pthread_mutex_init(&p->ctl_lock, NULL);
	/* The same size the memory bound counts per message. */
	p->buf_cap = config_message_max(cfg);
	p->pend_cap = cfg->queue_size + 1;
	p->policy = (struct batch_policy){.max_units = cfg->batch_packets,
					  .max_bytes = cfg->batch_bytes,
					  .max_wait_ns = cfg->read_timeout_ms * 1000000ull};
	p->pending = calloc(p->pend_cap, sizeof(*p->pending));
	p->spare_cap = 4;
	p->spare = calloc(p->spare_cap, sizeof(*p->spare));
	if (!p->pending || !p->spare || wire_batch_init(&p->batch, p->buf_cap, local_ip))
		return -1;

	struct flow_params fp = {
		.max_flows = cfg->max_flows / cfg->thread_count ? cfg->max_flows / cfg->thread_count : 1,
		.reorder_timeout_ns = cfg->reorder_timeout_ms * 1000000ull,
		.reorder_budget = ((uint64_t)cfg->reorder_mb << 20) / cfg->thread_count,
		.unit = on_unit,
		.ctx = p,
		.stats = &p->st,
	};
	p->flows = flow_table_new(&fp);
	if (!p->flows)
		return -1;
	if (cfg->sink == SINK_AMQP)
		p->sink = amqp_sink_new(cfg, id, &p->st);
	else
		p->sink = file_sink_new(cfg->sink == SINK_FILE ? cfg->output : NULL, id, &p->st);
	p->feed = src->feed(src->arg, (unsigned)id, on_record, p);
	if (!p->sink || !p->feed)
		return -1;

	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	p->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->epfd < 0 || p->evfd < 0)
		return -1;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};

	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->feed->fd(p->feed), &ev))
		return -1;
	p->feed_armed = true;
	ev.data.u32 = 1;
	return epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev);
}

static void publisher_free(struct publisher *p)
{
	if (p->feed)
		p->feed->destroy(p->feed);
	sink_destroy(p->sink);
	flow_table_free(p->flows);
	for (uint32_t i = 0; i < p->pend_count; i++)
		free(p->pending[(p->pend_head + i) % p->pend_cap].buf);
	for (uint32_t i = 0; i < p->nspare; i++)
		free(p->spare[i]);
	free(p->pending);
	free(p->spare);
	free(p->ctl);
	free(p->ready);
	wire_batch_free(&p->batch);
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->evfd >= 0)
		close(p->evfd);
	pthread_mutex_destroy(&p->ctl_lock);
}

struct publishers *publishers_start(const struct mrte_config *cfg, const struct feed_source *src,
				    uint32_t local_ip)
{
	struct publishers *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return NULL;
	ps->cfg = cfg;
	ps->n = cfg->thread_count;
	ps->p = aligned_alloc(64, ((sizeof(*ps->p) * ps->n + 63) / 64) * 64);
	if (!ps->p) {
		free(ps);
		return NULL;
	}
	memset(ps->p, 0, sizeof(*ps->p) * ps->n);
	for (unsigned i = 0; i < ps->n; i++) {
		if (publisher_init(&ps->p[i], (int)i, cfg, src, local_ip)) {
			log_error("publisher %u: cannot set up: %s", i, strerror(errno));
			goto fail;
		}
	}
	for (unsigned i = 0; i < ps->n; i++) {
		if (pthread_create(&ps->p[i].thread, NULL, publisher_main, &ps->p[i])) {
			log_error("cannot start publisher thread %u", i);
			goto fail;
		}
		ps->p[i].started = true;
	}
	return ps;
fail:
	publishers_stop(ps, mono_ns());
	publishers_free(ps);
	return NULL;
}

void publishers_stop(struct publishers *ps, uint64_t deadline_ns)
{
	for (unsigned i = 0; i < ps->n; i++) {
		struct publisher *p = &ps->p[i];
		uint64_t one = 1;

		p->stop_deadline = deadline_ns;
		__atomic_store_n(&p->stop_flag, true, __ATOMIC_RELEASE);
		if (p->evfd >= 0 && write(p->evfd, &one, sizeof(one)) < 0) {
			/* it will see the flag at its next wakeup */
		}
	}
	for (unsigned i = 0; i < ps->n; i++) {
		struct publisher *p = &ps->p[i];

		if (!p->started)
			continue;
		/* A write blocked on a broker that stopped reading cannot see
		 * the deadline: past it, shut the socket under it. */
		struct timespec ts;
		uint64_t grace = deadline_ns + 200000000ull;

		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t now = mono_ns(), wait = grace > now ? grace - now : 0;
		uint64_t abs = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + wait;

		ts.tv_sec = (time_t)(abs / 1000000000ull);
		ts.tv_nsec = (long)(abs % 1000000000ull);
		if (pthread_timedjoin_np(p->thread, NULL, &ts)) {
			sink_abort(p->sink);
			pthread_join(p->thread, NULL);
		}
		p->started = false;
	}
}

void publishers_free(struct publishers *ps)
{
	if (!ps)
		return;
	for (unsigned i = 0; i < ps->n; i++)
		publisher_free(&ps->p[i]);
	free(ps->p);
	free(ps);
}

void publishers_stats(struct publishers *ps, struct mrte_agent_stats *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (unsigned i = 0; i < ps->n; i++) {
		__u64 *dst = (__u64 *)sum;
		__u64 *src = (__u64 *)&ps->p[i].st;

		for (size_t k = 0; k < sizeof(*sum) / sizeof(__u64); k++)
			dst[k] += CTR_GET(src[k]);
	}
}

void publishers_watchdog(struct publishers *ps, uint64_t now_ns, uint64_t limit_ns)
{
	for (unsigned i = 0; i < ps->n; i++) {
		struct publisher *p = &ps->p[i];
		uint64_t t = __atomic_load_n(&p->publish_started_ns, __ATOMIC_RELAXED);

		if (t && now_ns > t + limit_ns) {
			log_warn("publisher %u: a write to the broker has been blocked for %llu ms; "
				 "resetting the connection",
				 i, (unsigned long long)((now_ns - t) / 1000000));
			sink_abort(p->sink);
		}
	}
}

static struct publisher *owner(struct publishers *ps, uint32_t saddr, uint16_t sport)
{
	return &ps->p[mrte_flow_hash(saddr, sport) % ps->n];
}

void publishers_sync_db(struct publishers *ps, uint32_t saddr, uint16_t sport, const char *db,
			int force, uint64_t at_ns)
{
	struct ctl c = {.kind = CTL_SYNC_DB, .flag = (uint8_t)!!force, .saddr = saddr, .sport = sport,
			.at_ns = at_ns};

	if (strlen(db) > MAX_DB_NAME)
		return;
	strcpy(c.db, db);
	ctl_push(owner(ps, saddr, sport), &c);
}

void publishers_session_gone(struct publishers *ps, uint32_t saddr, uint16_t sport,
			     uint64_t seen_ns, uint64_t at_ns)
{
	struct ctl c = {.kind = CTL_GONE, .saddr = saddr, .sport = sport, .seen_ns = seen_ns,
			.at_ns = at_ns};

	ctl_push(owner(ps, saddr, sport), &c);
}

int publishers_exclude(struct publishers *ps, uint32_t saddr, uint16_t sport, int on)
{
	struct publisher *p = owner(ps, saddr, sport);
	uint64_t n = __atomic_add_fetch(&p->exclude_requested, 1, __ATOMIC_ACQ_REL);
	struct ctl c = {.kind = CTL_EXCLUDE, .flag = (uint8_t)!!on, .saddr = saddr, .sport = sport,
			.seen_ns = n};
	struct timespec pause = {.tv_nsec = 1000000};

	ctl_push(p, &c);
	/* Wait until the publisher applies it: what the caller sends next on
	 * that connection must already be filtered. */
	for (int i = 0; i < 2000; i++) {
		if (__atomic_load_n(&p->exclude_applied, __ATOMIC_ACQUIRE) >= n)
			return 0;
		nanosleep(&pause, NULL);
	}
	return -1;
}
