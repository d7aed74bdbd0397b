/* queue.h -- a single-producer single-consumer queue of capture records.
 *
 * The pcap reader thread produces, one publisher consumes: the userspace
 * counterpart of a BPF ring buffer, carrying the same struct mrte_rec
 * records.  Bounded (the memory is allocated once); push fails when full. */
#ifndef MRTE_QUEUE_H
#define MRTE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "capture.h"
#include "mrte.h"

struct rec_queue;

struct rec_queue *rec_queue_new(size_t bytes);
void rec_queue_free(struct rec_queue *q);

/* Producer side.  0 = queued, -1 = no room. */
int rec_queue_push(struct rec_queue *q, const struct mrte_rec *rec, const uint8_t *payload);
/* Consumer side, as a feed: fd turns readable when records arrive. */
struct feed *rec_queue_feed(struct rec_queue *q, feed_record_fn fn, void *ctx);
/* Bytes in use (for tests and gauges). */
size_t rec_queue_used(struct rec_queue *q);

#endif
