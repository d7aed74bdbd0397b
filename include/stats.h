/* stats.h -- the status table (the original's columns) and the counters map. */
#ifndef MRTE_STATS_H
#define MRTE_STATS_H

#include <stdint.h>
#include <stdio.h>

#include "capture.h"
#include "mrte.h"
#include "publish.h"

struct stats;

struct stats *stats_new(FILE *out, struct capture *cap, struct publishers *ps,
			uint64_t mem_budget);
/* Read every counter now; also rewrite the pinned agent_stats map. */
void stats_sample(struct stats *s);
/* One row: values per second since the previous row (gauges as they are). */
void stats_print_row(struct stats *s);
/* Totals and every drop reason, for the exit log. */
void stats_print_summary(struct stats *s);
void stats_free(struct stats *s);

#endif
