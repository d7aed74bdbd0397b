/* frames.h -- Ethernet frames crafted byte by byte for the BPF tests.
 *
 * Shared by test_bpf_progs.c (each program on each frame) and
 * test_bpf_parity.c (the same frames through the pcap path and the
 * programs).  A struct spec says what to put on the wire -- VLAN tags, IP
 * and TCP header lengths (options are NOPs), fragment bits, a lying total
 * length, payload size, junk padding, a cut -- and build() writes it into
 * the one buffer `frame`, returning the frame's length.  Payload bytes come
 * from pat(seed, i), so a payload read from a wrong offset never matches.
 */
#ifndef MRTE_TEST_FRAMES_H
#define MRTE_TEST_FRAMES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SERVER 0x0a141e28u /* 10.20.30.40 */
#define CLIENT 0xc0a8c8fau /* 192.168.200.250: high bits set, catches byte order */

struct spec {
	uint16_t tpid[4]; /* VLAN tags, outermost first */
	int ntags;
	uint16_t ethertype;
	uint8_t version; /* IP version nibble */
	uint8_t proto;
	unsigned ihl, doff; /* in 32-bit words, as written in the headers */
	uint16_t frag;      /* flags + fragment offset */
	long tot_len;       /* -1: the right one */
	uint32_t saddr, daddr;
	uint16_t sport, dport;
	uint32_t seq;
	uint8_t flags;
	size_t plen;
	uint32_t seed;
	size_t min_len; /* pad with junk (0xa5) up to this frame length */
	size_t cut;     /* non-zero: the frame is cut to this many bytes */
};

/* What record i of a segment (payload plen, `nrec` records) must say: its
 * length, sequence number and flags.  A SYN's data starts one after its
 * sequence number: record 0 keeps the SYN (and the SYN's number), a later
 * record has its own first byte's number; FIN only on the last. */
static inline void expected_record(const struct spec *s, size_t plen, size_t i, size_t nrec,
				   size_t *len, uint32_t *seq, uint8_t *flags)
{
	size_t done = i * MRTE_CHUNK;

	*len = plen - done < MRTE_CHUNK ? plen - done : MRTE_CHUNK;
	*seq = s->seq + (uint32_t)done + (i && (s->flags & MRTE_TCP_SYN) ? 1 : 0);
	*flags = s->flags;
	if (i)
		*flags &= (uint8_t)~MRTE_TCP_SYN;
	if (i + 1 != nrec)
		*flags &= (uint8_t)~MRTE_TCP_FIN;
}

/* The VLAN tag stacks every test runs: the parser follows up to three. */
struct vlan_case {
	const char *name;
	int n;
	uint16_t tpid[4];
};

static const struct vlan_case vlan_cases[] = {
	{"802.1Q", 1, {0x8100}},
	{"802.1ad alone", 1, {0x88a8}},
	{"QinQ 0x88a8 + 0x8100", 2, {0x88a8, 0x8100}},
	{"old QinQ 0x9100 + 0x8100", 2, {0x9100, 0x8100}},
	{"double 0x8100", 2, {0x8100, 0x8100}},
	{"three tags", 3, {0x88a8, 0x8100, 0x8100}},
};
#define N_VLAN_CASES (sizeof(vlan_cases) / sizeof(vlan_cases[0]))

static inline struct spec tcp4(uint32_t saddr, uint16_t sport, uint16_t dport, uint8_t flags,
			       size_t plen)
{
	return (struct spec){
		.ethertype = 0x0800, .version = 4, .proto = 6, .ihl = 5, .doff = 5,
		.frag = 0x4000 /* DF, as Linux sends */, .tot_len = -1, .saddr = saddr,
		.daddr = SERVER, .sport = sport, .dport = dport,
		.seq = 0x8a000000u + sport * 7919u, .flags = flags, .plen = plen,
		.seed = sport * 31u + (uint32_t)plen,
	};
}

static inline struct spec tcp6(uint16_t dport, uint8_t flags, size_t plen)
{
	struct spec s = tcp4(CLIENT, 45000, dport, flags, plen);

	s.ethertype = 0x86dd;
	s.version = 6;
	return s;
}

/* Payload bytes: no period, so a payload read from the wrong offset never
 * matches. */
static inline uint8_t pat(uint32_t seed, size_t i)
{
	uint32_t x = seed * 0x9e3779b1u + (uint32_t)i * 0x85ebca6bu + 0x1234567u;

	x ^= x >> 15;
	x *= 0x2c1b3c6du;
	x ^= x >> 12;
	x *= 0x297a2d39u;
	x ^= x >> 15;
	return (uint8_t)x;
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, (uint16_t)v);
}

static inline uint16_t ip_checksum(const uint8_t *h, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(h[i] << 8 | h[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint8_t frame[80 * 1024];

static inline size_t build(const struct spec *s)
{
	static const uint8_t dst[6] = {0x02, 0x00, 0x5e, 0x00, 0x00, 0x01};
	static const uint8_t src[6] = {0x02, 0x00, 0x5e, 0x00, 0x00, 0x02};
	size_t off = 12, l3, l4;
	unsigned iphl = (s->ihl < 5 ? 5 : s->ihl) * 4, tcphl = (s->doff < 5 ? 5 : s->doff) * 4;

	memset(frame, 0xa5, sizeof(frame));
	memcpy(frame, dst, 6);
	memcpy(frame + 6, src, 6);
	for (int i = 0; i < s->ntags; i++, off += 4) {
		put16(frame + off, s->tpid[i]);
		put16(frame + off + 2, (uint16_t)(100 + i)); /* PCP 0, VID 100.. */
	}
	put16(frame + off, s->ethertype);
	l3 = off + 2;
	if (s->version == 6) {
		memset(frame + l3, 0, 40);
		frame[l3] = 0x60;
		put16(frame + l3 + 4, (uint16_t)(20 + s->plen));
		frame[l3 + 6] = s->proto;
		frame[l3 + 7] = 64;
		frame[l3 + 8] = 0xfd;
		put32(frame + l3 + 20, s->saddr);
		frame[l3 + 24] = 0xfd;
		put32(frame + l3 + 36, s->daddr);
		l4 = l3 + 40;
	} else {
		long tot = s->tot_len >= 0 ? s->tot_len : (long)(iphl + tcphl + s->plen);

		frame[l3] = (uint8_t)(s->version << 4 | (s->ihl & 0x0f));
		frame[l3 + 1] = 0;
		put16(frame + l3 + 2, (uint16_t)tot);
		put16(frame + l3 + 4, 0x1234);
		put16(frame + l3 + 6, s->frag);
		frame[l3 + 8] = 64;
		frame[l3 + 9] = s->proto;
		put16(frame + l3 + 10, 0);
		put32(frame + l3 + 12, s->saddr);
		put32(frame + l3 + 16, s->daddr);
		memset(frame + l3 + 20, 0x01, iphl - 20); /* options: NOPs */
		put16(frame + l3 + 10, ip_checksum(frame + l3, iphl));
		l4 = l3 + iphl;
	}
	put16(frame + l4, s->sport);
	put16(frame + l4 + 2, s->dport);
	put32(frame + l4 + 4, s->seq);
	put32(frame + l4 + 8, 0x01020304); /* ack */
	frame[l4 + 12] = (uint8_t)(s->doff << 4);
	frame[l4 + 13] = s->flags;
	put16(frame + l4 + 14, 65535);
	put16(frame + l4 + 16, 0); /* checksum: the programs do not look */
	put16(frame + l4 + 18, 0);
	memset(frame + l4 + 20, 0x01, tcphl - 20); /* options: NOPs */
	off = l4 + tcphl;
	for (size_t i = 0; i < s->plen; i++)
		frame[off + i] = pat(s->seed, i);
	off += s->plen;
	if (off < s->min_len)
		off = s->min_len; /* the 0xa5 junk stays as padding */
	if (s->cut)
		off = s->cut;
	return off;
}

/* A frame that is not IP at all: ARP request, padded to 60 bytes. */
static inline size_t build_arp(uint16_t outer_tpid)
{
	size_t off = 12;

	memset(frame, 0, 64);
	memset(frame, 0xff, 6);
	frame[6] = 0x02;
	if (outer_tpid) {
		put16(frame + off, outer_tpid);
		put16(frame + off + 2, 7);
		off += 4;
	}
	put16(frame + off, 0x0806);
	off += 2;
	put16(frame + off, 1);          /* Ethernet */
	put16(frame + off + 2, 0x0800); /* IPv4 */
	frame[off + 4] = 6;
	frame[off + 5] = 4;
	put16(frame + off + 6, 1); /* request */
	put32(frame + off + 14, CLIENT);
	put32(frame + off + 24, SERVER);
	/* An ARP frame whose bytes where TCP ports would sit say 3306. */
	put16(frame + off + 22, 3306);
	return outer_tpid ? 64 : 60;
}

#endif /* MRTE_TEST_FRAMES_H */
