/* publish.h -- the publisher threads: feed -> flow -> wire -> sink.
 *
 * One thread per capture ring.  Each owns its feed, its flow table, its
 * open batch, its queue of messages waiting for the broker and its sink.
 * Other threads talk to a publisher only through its control queue (the
 * session thread's synthetic units) and its counter block (read-only). */
#ifndef MRTE_PUBLISH_H
#define MRTE_PUBLISH_H

#include <stdint.h>

#include "capture.h"
#include "config.h"
#include "mrte.h"

struct publishers;

/* Where publisher i gets its records: the capture backend in the agent,
 * a plain record queue in tests. */
struct feed_source {
	struct feed *(*feed)(void *arg, unsigned idx, feed_record_fn fn, void *ctx);
	void *arg;
};

struct publishers *publishers_start(const struct mrte_config *cfg, const struct feed_source *src,
				    uint32_t local_ip);
/* Drain what the capture already delivered, flush, wait for the broker's
 * confirms until deadline_ns, then stop and join every thread. */
void publishers_stop(struct publishers *ps, uint64_t deadline_ns);
void publishers_free(struct publishers *ps);

/* Sum of every publisher's counters. */
void publishers_stats(struct publishers *ps, struct mrte_agent_stats *sum);
/* Reset a broker connection whose write has been blocked longer than limit_ns. */
void publishers_watchdog(struct publishers *ps, uint64_t now_ns, uint64_t limit_ns);

/* Session sync: routed to the publisher that owns saddr:sport, and applied
 * after that client's records captured before at_ns (CLOCK_MONOTONIC: when
 * the processlist was read) and before those captured after. */
void publishers_sync_db(struct publishers *ps, uint32_t saddr, uint16_t sport, const char *db,
			int force, uint64_t at_ns);
void publishers_session_gone(struct publishers *ps, uint32_t saddr, uint16_t sport,
			     uint64_t seen_ns, uint64_t at_ns);
/* The agent's own MySQL connection.  Returns once the owning publisher
 * applied it (0), or -1 after 2 s. */
int publishers_exclude(struct publishers *ps, uint32_t saddr, uint16_t sport, int on);

#endif
