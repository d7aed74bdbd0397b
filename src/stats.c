/* stats.c -- the 10-second status table and the pinned counter map.
 *
 * The columns and their meaning are the original collector's (SPEC 5):
 *   TotalPacket      segments to the MySQL port(s) the capture looked at
 *   ValidPacket      segments whose payload was published
 *   PacketDropped    segments the agent could not publish, any reason
 *   PacketIfDropped  frames the interface (or pcap) dropped
 *   WaitingQueueCnt  units waiting in the publishers (a gauge)
 *   MQError          messages that failed to reach the broker
 * as values per second over the interval.  Drops and errors round up, so
 * a single event never shows as 0.  Extra columns follow on the right, and
 * whenever a drop counter moved, a log line names the reasons.
 */
#include "stats.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct stats_snapshot {
	uint64_t t_ns;
	struct mrte_kstats k;
	struct mrte_agent_stats a;
	uint64_t if_drops;
};

struct stats {
	FILE *out;
	struct capture *cap;
	struct publishers *ps;
	struct stats_snapshot cur, row_prev;
	unsigned rows;
	uint64_t mem_budget;
	bool warned_rss;
};

/* ---- derived totals --------------------------------------------------------- */

static uint64_t stats_total_packets(const struct stats_snapshot *s)
{
	return s->k.matched;
}

static uint64_t stats_valid_packets(const struct stats_snapshot *s)
{
	return s->a.segments_published;
}

static uint64_t stats_dropped_packets(const struct stats_snapshot *s)
{
	const struct mrte_kstats *k = &s->k;
	const struct mrte_agent_stats *a = &s->a;

	return k->drop_ring_full + k->drop_fragment + k->drop_oversize + k->drop_malformed +
	       k->drop_ipv6 + k->drop_no_ring + a->drop_desync + a->drop_tls + a->drop_compressed +
	       a->drop_queue_full + a->drop_truncated + a->drop_reorder_overflow + a->pcap_dropped;
}

/* ---- sampling ------------------------------------------------------------------ */

struct stats *stats_new(FILE *out, struct capture *cap, struct publishers *ps,
			uint64_t mem_budget)
{
	struct stats *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->mem_budget = mem_budget;
	s->out = out;
	s->cap = cap;
	s->ps = ps;
	stats_sample(s);
	s->row_prev = s->cur;
	return s;
}

/* Resident memory, from /proc/self/statm (pages). */
static uint64_t rss_bytes(void)
{
	unsigned long long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

void stats_sample(struct stats *s)
{
	s->cur.t_ns = mono_ns();
	capture_kstats(s->cap, &s->cur.k);
	publishers_stats(s->ps, &s->cur.a);
	capture_agent_stats(s->cap, &s->cur.a);
	s->cur.if_drops = capture_if_drops(s->cap);
	s->cur.a.if_drops = s->cur.if_drops;
	s->cur.a.rss_bytes = rss_bytes();
	if (s->cur.a.rss_bytes > s->mem_budget && !s->warned_rss) {
		log_warn("resident memory %llu MiB is above --max_mem_mb %llu MiB (the agent goes "
			 "on: it never exits for memory, unlike the original)",
			 (unsigned long long)(s->cur.a.rss_bytes >> 20),
			 (unsigned long long)(s->mem_budget >> 20));
		s->warned_rss = true;
	}
	capture_publish_counters(s->cap, &s->cur.k, &s->cur.a);
}

/* ---- the table -------------------------------------------------------------------- */

static uint64_t per_sec(uint64_t now, uint64_t before, double secs, int round_up)
{
	double v = now > before ? (double)(now - before) / secs : 0.0;

	return (uint64_t)(round_up ? ceil(v) : v + 0.5);
}

static void print_header(FILE *out)
{
	fprintf(out, "\n%-19s %15s %15s %16s %18s %20s %15s %12s %10s %8s\n", "DateTime",
		"TotalPacket", "ValidPacket", "PacketDropped", "PacketIfDropped", "WaitingQueueCnt",
		"MQError", "Units", "Messages", "Flows");
}

/* Name the reasons behind any drop since the previous row. */
static void log_drop_reasons(const struct stats_snapshot *n, const struct stats_snapshot *o)
{
	char buf[512];
	size_t len = 0;
#define REASON(field, name)                                                                         \
	if (n->field > o->field)                                                                   \
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, " %s=%llu", name,           \
					(unsigned long long)(n->field - o->field));
	REASON(k.drop_ring_full, "ring_full")
	REASON(k.drop_fragment, "ip_fragment")
	REASON(k.drop_oversize, "oversize")
	REASON(k.drop_malformed, "malformed")
	REASON(k.drop_ipv6, "ipv6")
	REASON(k.drop_no_ring, "no_ring")
	REASON(a.drop_desync, "desync")
	REASON(a.drop_gap, "seq_gap")
	REASON(a.drop_tls, "tls")
	REASON(a.drop_compressed, "compressed")
	REASON(a.drop_queue_full, "queue_full")
	REASON(a.pcap_dropped, "pcap_buffer_full")
	REASON(a.drop_truncated, "truncated")
	REASON(a.drop_reorder_overflow, "reorder_overflow")
	REASON(a.drop_unpublished, "unpublished_units")
	REASON(a.mq_errors, "mq_errors")
	REASON(a.mq_units_lost, "mq_units_lost")
	REASON(a.mq_returned, "mq_returned")
	REASON(a.flow_evictions, "flow_evictions")
#undef REASON
	if (len)
		log_warn("not published since the last row:%s", buf);
}

void stats_print_row(struct stats *s)
{
	const struct stats_snapshot *n = &s->cur, *o = &s->row_prev;
	double secs = (double)(n->t_ns - o->t_ns) / 1e9;
	char when[32];
	time_t now = time(NULL);
	struct tm tm;

	if (secs < 0.5)
		return; /* too short to say anything per second; the totals follow */
	if (s->rows++ % 20 == 0)
		print_header(s->out);
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(s->out, "%-19s %15llu %15llu %16llu %18llu %20llu %15llu %12llu %10llu %8llu\n",
		when,
		(unsigned long long)per_sec(stats_total_packets(n), stats_total_packets(o), secs, 0),
		(unsigned long long)per_sec(stats_valid_packets(n), stats_valid_packets(o), secs, 0),
		(unsigned long long)per_sec(stats_dropped_packets(n), stats_dropped_packets(o), secs, 1),
		(unsigned long long)per_sec(n->if_drops, o->if_drops, secs, 1),
		(unsigned long long)n->a.queue_depth,
		(unsigned long long)per_sec(n->a.mq_errors, o->a.mq_errors, secs, 1),
		(unsigned long long)per_sec(n->a.units, o->a.units, secs, 0),
		(unsigned long long)per_sec(n->a.messages, o->a.messages, secs, 0),
		(unsigned long long)n->a.flows_active);
	fflush(s->out);
	log_drop_reasons(n, o);
	s->row_prev = *n;
}

void stats_print_summary(struct stats *s)
{
	const struct stats_snapshot *n = &s->cur;
	const struct mrte_kstats *k = &n->k;
	const struct mrte_agent_stats *a = &n->a;

	log_info("totals: frames=%llu matched=%llu published_segments=%llu units=%llu "
		 "messages=%llu bytes=%llu dropped=%llu if_dropped=%llu mq_errors=%llu",
		 (unsigned long long)k->frames, (unsigned long long)k->matched,
		 (unsigned long long)a->segments_published, (unsigned long long)a->units,
		 (unsigned long long)a->messages, (unsigned long long)a->message_bytes,
		 (unsigned long long)stats_dropped_packets(n), (unsigned long long)n->if_drops,
		 (unsigned long long)a->mq_errors);
	log_info("detail: no_payload=%llu flow_events=%llu retransmits=%llu reordered=%llu "
		 "seq_gaps=%llu desync=%llu tls=%llu compressed=%llu self=%llu ring_full=%llu "
		 "fragments=%llu oversize=%llu malformed=%llu ipv6=%llu queue_full=%llu "
		 "truncated=%llu unpublished_units=%llu mq_units_lost=%llu mq_returned=%llu "
		 "reconnects=%llu "
		 "init_db=%llu quit=%llu evictions=%llu",
		 (unsigned long long)k->no_payload, (unsigned long long)k->flow_events,
		 (unsigned long long)a->retransmit_segments, (unsigned long long)a->reordered_segments,
		 (unsigned long long)a->drop_gap, (unsigned long long)a->drop_desync,
		 (unsigned long long)a->drop_tls, (unsigned long long)a->drop_compressed,
		 (unsigned long long)a->drop_self, (unsigned long long)k->drop_ring_full,
		 (unsigned long long)k->drop_fragment, (unsigned long long)k->drop_oversize,
		 (unsigned long long)k->drop_malformed, (unsigned long long)k->drop_ipv6,
		 (unsigned long long)a->drop_queue_full, (unsigned long long)a->drop_truncated,
		 (unsigned long long)a->drop_unpublished, (unsigned long long)a->mq_units_lost,
		 (unsigned long long)a->mq_returned,
		 (unsigned long long)a->mq_reconnects, (unsigned long long)a->synthetic_init_db,
		 (unsigned long long)a->synthetic_quit, (unsigned long long)a->flow_evictions);
}

void stats_free(struct stats *s)
{
	free(s);
}
