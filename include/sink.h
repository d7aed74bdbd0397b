/* sink.h -- where a publisher's messages go: RabbitMQ, a file, or nowhere.
 *
 * A sink is used by one publisher thread only, except sink_abort(), which
 * the watchdog may call from another thread to unblock a stuck write. */
#ifndef MRTE_SINK_H
#define MRTE_SINK_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "mrte.h"

struct sink;

struct sink_ops {
	int (*open)(struct sink *s);                                 /* 0 = ready */
	/* 0 = written; units: how many MRTE units the body holds (for the
	 * unit-exact loss count when the broker never confirms it) */
	int (*publish)(struct sink *s, const void *body, size_t len, uint32_t units);
	int (*service)(struct sink *s); /* read acks/returns/closes; <0 = connection lost */
	int (*fd)(struct sink *s);      /* readable when service has work; -1 = none */
	bool (*is_open)(struct sink *s);
	size_t (*inflight)(struct sink *s); /* written, not yet confirmed */
	void (*close)(struct sink *s);
	void (*abort)(struct sink *s); /* thread-safe: make a blocked publish fail */
	void (*destroy)(struct sink *s);
};

struct sink {
	const struct sink_ops *ops;
	struct mrte_agent_stats *stats; /* the owning publisher's counters */
	int id;
};

struct sink *amqp_sink_new(const struct mrte_config *cfg, int id, struct mrte_agent_stats *st);
struct sink *file_sink_new(const char *path, int id, struct mrte_agent_stats *st); /* NULL path: discard */

static inline int sink_open(struct sink *s) { return s->ops->open(s); }
static inline int sink_publish(struct sink *s, const void *b, size_t n, uint32_t units)
{
	return s->ops->publish(s, b, n, units);
}
static inline int sink_service(struct sink *s) { return s->ops->service(s); }
static inline int sink_fd(struct sink *s) { return s->ops->fd(s); }
static inline bool sink_is_open(struct sink *s) { return s->ops->is_open(s); }
static inline size_t sink_inflight(struct sink *s) { return s->ops->inflight(s); }
static inline void sink_close(struct sink *s) { s->ops->close(s); }
static inline void sink_abort(struct sink *s) { s->ops->abort(s); }
static inline void sink_destroy(struct sink *s) { if (s) s->ops->destroy(s); }

#endif
