/* flow.h -- per-client TCP and MySQL-packet tracking inside one publisher.
 *
 * A flow table belongs to exactly one publisher thread and is never shared.
 * It turns the records of its clients into MRTE units: duplicates dropped,
 * out-of-order segments put back in order, the byte stream cut at MySQL
 * packet boundaries, synthetic COM_INIT_DB / COM_QUIT injected at packet
 * boundaries only. */
#ifndef MRTE_FLOW_H
#define MRTE_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include "mrte.h"

/* Where units go: one call per unit, data in up to two pieces. */
typedef void (*flow_unit_fn)(void *ctx, uint32_t saddr, uint16_t sport, const uint8_t *a,
			     size_t alen, const uint8_t *b, size_t blen);

struct flow_params {
	uint32_t max_flows;
	uint64_t reorder_timeout_ns;
	uint64_t reorder_budget; /* bytes of held segments */
	flow_unit_fn unit;
	void *ctx;
	struct mrte_agent_stats *stats; /* counters this table adds to */
};

struct flow_table;

struct flow_table *flow_table_new(const struct flow_params *p);
void flow_table_free(struct flow_table *t);

/* One capture record (header + its payload). */
void flow_input(struct flow_table *t, const struct mrte_rec *rec, const uint8_t *payload,
		uint64_t now_ns);

/* Declare held-back segments lost once they waited reorder_timeout. */
void flow_tick(struct flow_table *t, uint64_t now_ns);
/* Earliest time flow_tick has work, or UINT64_MAX. */
uint64_t flow_next_deadline(const struct flow_table *t);
/* End of input: give up on every hole and publish what follows it. */
void flow_flush(struct flow_table *t, uint64_t now_ns);

/* Session sync.  flow_sync_db: the client's default database is `db`; a
 * COM_INIT_DB unit is injected (at the next packet boundary) unless the
 * player already knows it, or always with force.  flow_session_gone: the
 * server no longer lists the session (last seen at seen_ns): inject COM_QUIT
 * unless the client quit by itself or the flow is younger than that. */
void flow_sync_db(struct flow_table *t, uint32_t saddr, uint16_t sport, const char *db,
		  int force, uint64_t now_ns);
void flow_session_gone(struct flow_table *t, uint32_t saddr, uint16_t sport, uint64_t seen_ns);

/* The agent's own MySQL connection: never published (on=0 lifts it). */
void flow_exclude(struct flow_table *t, uint32_t saddr, uint16_t sport, int on);

uint32_t flow_count(const struct flow_table *t);

/* MySQL protocol constants the tracker looks at. */
#define MYSQL_COM_QUIT 0x01
#define MYSQL_COM_INIT_DB 0x02
#define MYSQL_CLIENT_COMPRESS 0x00000020u
#define MYSQL_CLIENT_PROTOCOL_41 0x00000200u
#define MYSQL_CLIENT_SSL 0x00000800u

#endif
