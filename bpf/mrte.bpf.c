// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* mrte.bpf.c -- capture MySQL client segments at XDP or TC ingress.
 *
 * Both programs run the shared parser (mrte_parse.h) on every frame, keep
 * TCP segments whose destination port is in the configured set, and write
 * each segment's payload -- all of it, split into MRTE_CHUNK-sized records
 * when it is larger -- into one of N ring buffers.  The ring is chosen by a
 * hash of the client address and port, so one client always lands in one
 * ring and its records stay in capture order.  Segments without payload are
 * reported only when they carry SYN, FIN or RST (the agent tracks session
 * lifetimes with them).  Every frame is counted under exactly one outcome
 * in a per-CPU counter block.  Both programs always pass the frame on.
 *
 * Configuration arrives through .rodata before load; the rings themselves
 * are created by the agent (their size is a run-time choice) and placed in
 * the `rings` array of maps.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define MRTE_KIND_XDP 1
#define MRTE_KIND_TC 2
#define MRTE_LOAD(ctx, kind, off, dst, len)                                                       \
	((kind) == MRTE_KIND_XDP ? bpf_xdp_load_bytes(ctx, off, dst, len)                         \
				 : bpf_skb_load_bytes(ctx, off, dst, len))
#include "mrte_parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- configuration (set by the agent before load) ------------------------ */

const volatile struct mrte_filter cfg_filter = {};
const volatile __u32 cfg_nrings = 1;

/* ---- wake-ups ---------------------------------------------------------------
 * Records go into the rings without a wake-up (BPF_RB_NO_WAKEUP): a wake-up
 * is an interrupt charged to the CPU that captured the packet, and a
 * publisher that is busy polls its ring anyway.  A publisher about to block
 * raises its flag here (the agent writes this .bss through the skeleton's
 * mapping), then looks at its ring once more; the first record after that
 * sees the flag, drops it and sends one forced wake-up.  The record is
 * committed before the flag is read, and the flag set before the publisher
 * looks again -- both full barriers -- so no record can be missed. */
volatile __u32 ring_waiting[MRTE_MAX_RINGS];

static __always_inline void mrte_wake_if_waiting(void *ring, __u32 idx)
{
	__u64 nudge = 0; /* shorter than a record: the agent skips it */

	if (idx < MRTE_MAX_RINGS && ring_waiting[idx]) {
		ring_waiting[idx] = 0;
		bpf_ringbuf_output(ring, &nudge, sizeof(nudge), BPF_RB_FORCE_WAKEUP);
	}
}

/* ---- maps ---------------------------------------------------------------- */

struct ring_inner {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* replaced by the agent's --ring_mb */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MRTE_MAX_RINGS);
	__type(key, __u32);
	__array(values, struct ring_inner);
} rings SEC(".maps");

/* Records are assembled here, then copied into the ring with their exact
 * length: ring space is spent only on real bytes. */
struct scratch {
	struct mrte_rec rec;
	__u8 data[MRTE_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mrte_kstats);
} kstats SEC(".maps");

/* Written only by the agent; lives here so it is created with BTF and
 * `bpftool map dump` prints field names. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mrte_agent_stats);
} agent_stats SEC(".maps");

/* ---- record output ------------------------------------------------------- */

/* Write a segment's payload (or, with none, the flow event) to its ring.
 * Returns the counter the segment ends up in. */
static __always_inline __u64 *mrte_emit_records(void *ctx, int kind, void *ring,
						const struct mrte_pkt *p, struct mrte_kstats *st);

static __always_inline __u64 *mrte_emit(void *ctx, int kind, const struct mrte_pkt *p,
					struct mrte_kstats *st)
{
	__u32 idx = mrte_flow_hash(p->saddr, p->sport) % cfg_nrings;
	void *ring = bpf_map_lookup_elem(&rings, &idx);
	__u64 *outcome;

	if (!ring)
		return &st->drop_no_ring;
	outcome = mrte_emit_records(ctx, kind, ring, p, st);
	mrte_wake_if_waiting(ring, idx);
	return outcome;
}

static __always_inline __u64 *mrte_emit_records(void *ctx, int kind, void *ring,
						const struct mrte_pkt *p, struct mrte_kstats *st)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);

	if (!s)
		return &st->drop_no_ring;

	s->rec.ts_ns = bpf_ktime_get_ns();
	s->rec.saddr = p->saddr;
	s->rec.daddr = p->daddr;
	s->rec.sport = p->sport;
	s->rec.dport = p->dport;
	s->rec.seg_len = p->payload_len;

	if (p->payload_len == 0) {
		s->rec.seq = p->seq;
		s->rec.len = 0;
		s->rec.chunk = 0;
		s->rec.flags = p->flags;
		if (bpf_ringbuf_output(ring, &s->rec, sizeof(s->rec), BPF_RB_NO_WAKEUP))
			return &st->drop_ring_full;
		st->records++;
		return &st->flow_events;
	}
	if (p->payload_len > (__u32)MRTE_CHUNK * MRTE_MAX_CHUNKS)
		return &st->drop_oversize;

	for (int i = 0; i < MRTE_MAX_CHUNKS; i++) {
		__u32 done = (__u32)i * MRTE_CHUNK;

		if (done >= p->payload_len)
			break;
		__u32 n = p->payload_len - done;
		int last = n <= MRTE_CHUNK;

		if (n > MRTE_CHUNK)
			n = MRTE_CHUNK;
		/* Make the compiler forget what it knows about n, so the
		 * verifier sees the bounds checked right before the copy. */
		barrier_var(n);
		if (n < 1 || n > MRTE_CHUNK)
			break;
		/* A SYN takes the segment's first sequence number and its data
		 * starts one after: chunk 0 keeps the SYN (the consumer adds
		 * the one), a later chunk has no SYN, so its seq is that of
		 * its own first byte. */
		s->rec.seq = p->seq + done + (i && (p->flags & MRTE_TCP_SYN) ? 1 : 0);
		s->rec.len = n;
		s->rec.chunk = i;
		/* SYN belongs to the first byte, FIN after the last. */
		s->rec.flags = p->flags & ~((i ? MRTE_TCP_SYN : 0) | (last ? 0 : MRTE_TCP_FIN));
		if (MRTE_LOAD(ctx, kind, p->payload_off + done, s->data, n))
			return &st->drop_malformed;
		if (bpf_ringbuf_output(ring, s, sizeof(s->rec) + n, BPF_RB_NO_WAKEUP))
			return &st->drop_ring_full;
		st->records++;
		st->bytes += n;
	}
	return &st->segments;
}

/* ---- the shared program body --------------------------------------------- */

static __always_inline void mrte_handle(void *ctx, int kind, __u32 pkt_len)
{
	__u32 zero = 0;
	struct mrte_kstats *st = bpf_map_lookup_elem(&kstats, &zero);
	struct mrte_pkt p = {};
	__u64 *outcome;

	if (!st)
		return;
	st->frames++;

	switch (mrte_parse_eth(ctx, kind, pkt_len, &cfg_filter, &p)) {
	case MRTE_V_NOT_MATCHED:
		st->not_matched++;
		return;
	case MRTE_V_SHORT:
		st->short_frame++;
		return;
	case MRTE_V_IPV6:
		outcome = &st->drop_ipv6;
		break;
	case MRTE_V_FRAGMENT:
		outcome = &st->drop_fragment;
		break;
	case MRTE_V_MALFORMED:
	case MRTE_V_TRUNCATED: /* the kernel holds the whole frame: tot_len lies */
		outcome = &st->drop_malformed;
		break;
	case MRTE_V_MATCHED:
		if (p.payload_len == 0 &&
		    !(p.flags & (MRTE_TCP_SYN | MRTE_TCP_FIN | MRTE_TCP_RST)))
			outcome = &st->no_payload;
		else
			outcome = mrte_emit(ctx, kind, &p, st);
		break;
	default:
		return;
	}
	st->matched++;
	(*outcome)++;
}

SEC("xdp.frags")
int mrte_xdp(struct xdp_md *ctx)
{
	mrte_handle(ctx, MRTE_KIND_XDP, bpf_xdp_get_buff_len(ctx));
	return XDP_PASS;
}

SEC("tc")
int mrte_tc(struct __sk_buff *skb)
{
	mrte_handle(skb, MRTE_KIND_TC, skb->len);
	return TC_ACT_UNSPEC; /* let the rest of the ingress chain decide */
}
