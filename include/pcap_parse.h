/* pcap_parse.h -- frames to records in userspace (the pcap backend's core).
 *
 * The same parser and the same chunking as the BPF programs, so the pcap
 * path and the kernel path turn a frame into identical records and count
 * it under the same outcome.  Public so the parity tests can run a capture
 * file through both. */
#ifndef MRTE_PCAP_PARSE_H
#define MRTE_PCAP_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "mrte.h"

/* Receives each record; non-zero = no room (the segment is counted dropped). */
typedef int (*pcap_record_fn)(void *ctx, const struct mrte_rec *rec, const uint8_t *payload);

bool pcap_linktype_supported(int linktype);

/* One frame of link type `linktype` (a DLT_ value).  Counters go to ks (the
 * kernel block's fields) and as (drop_truncated, drop_queue_full).  Returns
 * 0, or -1 when emit refused a record. */
int pcap_frame_records(int linktype, const uint8_t *data, uint32_t caplen, uint32_t wirelen,
		       uint64_t ts_ns, const struct mrte_filter *filter, struct mrte_kstats *ks,
		       struct mrte_agent_stats *as, pcap_record_fn emit, void *ctx);

#endif
