/* mrte.h -- the contract between the capture programs and the agent.
 *
 * Everything that crosses the kernel/userspace boundary is defined here and
 * nowhere else: the record a capture program writes into a ring buffer, the
 * per-CPU counter block, the agent's own counter block (a BPF map so that
 * `bpftool map dump` prints it with field names), and the flow hash that
 * decides which ring -- and therefore which publisher thread -- owns a client.
 *
 * The libpcap backend builds exactly the same records in userspace, so the
 * publishers cannot tell the two apart.  Plain fixed-width types only.
 */
#ifndef MRTE_H
#define MRTE_H

#include <linux/types.h>

#define MRTE_MAX_PORTS 8   /* --port accepts up to this many ports */
#define MRTE_MAX_RINGS 16  /* --thread_count is 2..10; room to grow */

/* A TCP segment's payload is copied in records of at most MRTE_CHUNK bytes;
 * a larger segment (loopback: 32-64 KB, GRO: 64 KB) becomes several records
 * with consecutive sequence numbers.  MRTE_MAX_CHUNKS bounds the BPF loop. */
#define MRTE_CHUNK 16384
#define MRTE_MAX_CHUNKS 32 /* 512 KiB: beyond this a segment is counted as oversize */

/* TCP flags as they appear in the header byte 13. */
#define MRTE_TCP_FIN 0x01
#define MRTE_TCP_SYN 0x02
#define MRTE_TCP_RST 0x04
#define MRTE_TCP_PSH 0x08
#define MRTE_TCP_ACK 0x10

/* The port set, in the programs' .rodata (and the pcap backend's parser). */
struct mrte_filter {
	__u16 ports[MRTE_MAX_PORTS];
	__u32 nports;
};

/* One record in a ring: this header, then `len` payload bytes. */
struct mrte_rec {
	__u64 ts_ns;   /* capture time, CLOCK_MONOTONIC (a capture file: its own clock) */
	__u32 saddr;   /* client IPv4 address, network byte order */
	__u32 daddr;   /* server IPv4 address, network byte order */
	__u32 seq;     /* TCP sequence number of the first payload byte here */
	__u16 sport;   /* client port, host byte order */
	__u16 dport;   /* server port, host byte order */
	__u16 len;     /* payload bytes in this record (0 for a flow event) */
	__u8 flags;    /* TCP flags; FIN only on the segment's last record */
	__u8 chunk;    /* index of this record within its segment */
	__u32 seg_len; /* payload bytes of the whole segment */
};

/* Kernel-side outcome counters, one block per CPU (BPF_MAP_TYPE_PERCPU_ARRAY,
 * key 0).  Every frame the program runs on lands in `frames` and in exactly
 * one of the outcome groups below it. */
struct mrte_kstats {
	__u64 frames;         /* frames the program looked at */
	__u64 not_matched;    /* not TCP to a configured port (passed on) */
	__u64 short_frame;    /* too short to hold the headers it claims */
	__u64 matched;        /* TCP to a configured port: TotalPacket */
	__u64 no_payload;     /* matched, no payload and no SYN/FIN/RST */
	__u64 flow_events;    /* matched, no payload, SYN/FIN/RST record sent */
	__u64 segments;       /* matched with payload, all of it written to a ring */
	__u64 records;        /* records written (payload chunks + flow events) */
	__u64 bytes;          /* payload bytes written */
	__u64 drop_ring_full; /* segments (or flow events) lost: ring had no room */
	__u64 drop_fragment;  /* IPv4 fragments to our port (cannot be reassembled here) */
	__u64 drop_oversize;  /* segments larger than MRTE_CHUNK * MRTE_MAX_CHUNKS */
	__u64 drop_malformed; /* matched but the TCP/IP header lengths are inconsistent */
	__u64 drop_ipv6;      /* IPv6 to our port: MRTE units carry IPv4 addresses only */
	__u64 drop_no_ring;   /* ring slot empty (agent misconfiguration) */
};

/* The agent's own counters: totals since start.  Kept in an ARRAY map (key 0)
 * pinned next to the kernel counters; the agent rewrites it every second. */
struct mrte_agent_stats {
	__u64 records;             /* records taken from the rings / capture */
	__u64 segments_published;  /* ValidPacket: segments whose payload went into units */
	__u64 units;               /* MRTE units encoded (captured + synthetic) */
	__u64 messages;            /* messages published */
	__u64 message_bytes;       /* bytes of published messages */
	__u64 payload_bytes;       /* TCP payload bytes put into units */
	__u64 mq_errors;           /* MQError: messages nacked by the broker, or unconfirmed
				    * when the connection dropped (a failed write is not one:
				    * the message stays queued and is sent again) */
	__u64 mq_units_lost;       /* units in those messages: the loss, exactly */
	__u64 mq_returned;         /* returned by the broker: no queue bound to the exchange */
	__u64 mq_inflight;         /* gauge: published, not yet confirmed by the broker */
	__u64 mq_reconnects;       /* broker (re)connections made after the first */
	__u64 queue_depth;         /* gauge: units waiting to be published (WaitingQueueCnt) */
	__u64 retransmit_segments; /* duplicates of bytes already published (not re-published) */
	__u64 reordered_segments;  /* segments held and put back in order */
	__u64 drop_gap;            /* segments lost before they reached us (sequence hole) */
	__u64 drop_desync;         /* segments skipped until a MySQL packet boundary was found */
	__u64 drop_tls;            /* segments of TLS sessions (ciphertext is not replayable) */
	__u64 drop_compressed;     /* segments of compressed-protocol sessions */
	__u64 drop_self;           /* segments of the agent's own MySQL connection */
	__u64 drop_queue_full;     /* records dropped: agent queue full (pcap path) */
	__u64 drop_truncated;      /* segments cut by the snapshot length (pcap path) */
	__u64 drop_reorder_overflow; /* holes given up because held bytes hit the budget */
	__u64 packets_streamed;    /* MySQL packets too large to assemble, sent in pieces */
	__u64 drop_unpublished;    /* units still unpublished at shutdown */
	__u64 flows_active;        /* gauge: flows tracked */
	__u64 flow_evictions;      /* flows forgotten because the table was full */
	__u64 synthetic_init_db;   /* COM_INIT_DB units injected from the processlist */
	__u64 synthetic_quit;      /* COM_QUIT units injected (FIN/RST or processlist) */
	__u64 if_drops;            /* PacketIfDropped: interface / pcap drops */
	__u64 pcap_dropped;        /* pcap_stats ps_drop */
	__u64 pcap_ifdropped;      /* pcap_stats ps_ifdrop */
	__u64 rss_bytes;           /* gauge: resident memory of the agent */
};

/* Which ring owns a client.  A murmur3-style finaliser over address and
 * port: cheap, the same on both sides, and spreads sequential client ports
 * evenly even when the ring count is not a power of two. */
static inline __u32 mrte_flow_hash(__u32 saddr, __u16 sport)
{
	__u32 h = saddr ^ ((__u32)sport * 0x9e3779b1u);

	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

#endif /* MRTE_H */
