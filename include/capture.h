/* capture.h -- capture backends (XDP, TC, libpcap) behind one interface.
 *
 * capture_open() probes and attaches the best backend the configuration
 * allows (--capture=auto falls back XDP native -> XDP generic -> TC -> pcap)
 * and says which it chose and why.  Each publisher then takes its feed:
 * the stream of records for the clients that hash to it. */
#ifndef MRTE_CAPTURE_H
#define MRTE_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "mrte.h"

/* Called for each record; return <0 to stop consuming for now
 * (backpressure: the record itself has been handled). */
typedef int (*feed_record_fn)(void *ctx, const struct mrte_rec *rec, const uint8_t *payload);

struct feed {
	int (*fd)(struct feed *f);      /* becomes readable when records wait */
	int (*consume)(struct feed *f); /* hand every waiting record to the callback */
	/* The consumer is about to block on fd: from now on a new record must
	 * make fd readable.  It consumes once more after this, then blocks;
	 * awake() when it runs again.  (A busy consumer polls: producers do
	 * not signal it, which saves an interrupt or a syscall per record.) */
	void (*idle)(struct feed *f);
	void (*awake)(struct feed *f);
	void (*destroy)(struct feed *f);
};

struct capture;

struct capture *capture_open(const struct mrte_config *cfg);

struct feed *capture_feed(struct capture *c, unsigned idx, feed_record_fn fn, void *ctx);

/* Start delivering (pcap: the reader thread).  BPF capture runs from attach. */
int capture_start(struct capture *c);
/* Offline input finished (pcap file at EOF and handed to the feeds). */
bool capture_done(const struct capture *c);

/* Sum of the capture-side counters (kernel per-CPU block, or the pcap
 * reader's own), and interface drops since start. */
void capture_kstats(struct capture *c, struct mrte_kstats *out);
uint64_t capture_if_drops(struct capture *c);
/* Add the capture side's own drop counters (pcap: queue full, truncated,
 * pcap_stats) to the agent's block. */
void capture_agent_stats(struct capture *c, struct mrte_agent_stats *a);

/* Write the counters into the pinned maps (when there are maps): the
 * agent's block always; in pcap mode also the capture block, so that
 * `bpftool map dump` reads the same fields whatever the backend. */
void capture_publish_counters(struct capture *c, const struct mrte_kstats *k,
			      const struct mrte_agent_stats *a);

/* Stop capturing new packets (detach); feeds stay readable to drain. */
void capture_stop(struct capture *c);
void capture_close(struct capture *c);

#endif
