/* mrte_parse.h -- the one frame parser, compiled into the BPF programs and
 * into the agent's libpcap backend.
 *
 * Sharing the parser is what makes the two capture paths agree frame for
 * frame: there is no second implementation to drift.  The includer defines
 *
 *     MRTE_LOAD(ctx, kind, off, dst, len)   copy len bytes at off into dst,
 *                                           evaluate to 0 on success
 *
 * (BPF: bpf_xdp_load_bytes / bpf_skb_load_bytes chosen by the constant
 * `kind`; userspace: a bounds-checked memcpy).  Headers are read through
 * MRTE_LOAD rather than direct packet pointers so that multi-buffer XDP
 * frames and nonlinear skbs need no special case.
 *
 * Lengths come from the IP header, not the frame, so Ethernet padding is
 * never mistaken for payload; a frame shorter than its IP header says is
 * reported as MRTE_V_TRUNCATED.  `pkt_len` is the frame's length on the
 * wire on both paths (the pcap path checks separately that its snapshot
 * kept the payload), so both count that as malformed.
 */
#ifndef MRTE_PARSE_H
#define MRTE_PARSE_H

#include "mrte.h"

#ifndef MRTE_INLINE
#define MRTE_INLINE static inline __attribute__((always_inline))
#endif

enum mrte_verdict {
	MRTE_V_NOT_MATCHED = 0, /* not TCP to one of our ports */
	MRTE_V_SHORT,           /* frame ends inside a header */
	MRTE_V_MATCHED,         /* TCP to our port; see payload_len */
	MRTE_V_FRAGMENT,        /* first fragment of a fragmented datagram to our port */
	MRTE_V_MALFORMED,       /* header lengths inconsistent */
	MRTE_V_TRUNCATED,       /* IP total length runs past the end of the frame */
	MRTE_V_IPV6,            /* IPv6 TCP to our port */
};

struct mrte_pkt {
	__u32 saddr; /* network byte order */
	__u32 daddr; /* network byte order */
	__u32 seq;
	__u16 sport;
	__u16 dport;
	__u32 payload_off; /* from the start of the frame */
	__u32 payload_len;
	__u8 flags;
};

#define MRTE_ETH_P_IP 0x0800
#define MRTE_ETH_P_IPV6 0x86DD
#define MRTE_ETH_P_8021Q 0x8100
#define MRTE_ETH_P_8021AD 0x88A8
#define MRTE_ETH_P_QINQ_OLD 0x9100
#define MRTE_MAX_VLAN_TAGS 3

MRTE_INLINE __u16 mrte_be16(const __u8 *b)
{
	return (__u16)((b[0] << 8) | b[1]);
}

MRTE_INLINE __u32 mrte_be32(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];
}

MRTE_INLINE int mrte_port_wanted(const volatile struct mrte_filter *f, __u16 port)
{
	for (int i = 0; i < MRTE_MAX_PORTS; i++) {
		if ((__u32)i >= f->nports)
			break;
		if (f->ports[i] == port)
			return 1;
	}
	return 0;
}

/* ---- IPv4 / TCP ---------------------------------------------------------- */

MRTE_INLINE enum mrte_verdict mrte_parse_ipv4(void *ctx, int kind, __u32 off, __u32 pkt_len,
					      const volatile struct mrte_filter *f,
					      struct mrte_pkt *p)
{
	__u8 ip[20], tcp[20];

	if (MRTE_LOAD(ctx, kind, off, ip, sizeof(ip)))
		return MRTE_V_SHORT;
	if ((ip[0] >> 4) != 4 || ip[9] != 6 /* TCP */)
		return MRTE_V_NOT_MATCHED;

	__u32 ihl = (__u32)(ip[0] & 0x0f) * 4;
	__u16 frag = mrte_be16(&ip[6]);

	/* Only a first fragment has a TCP header to match on; libpcap's
	 * "tcp dst port" makes the same choice. */
	if (ihl < 20 || (frag & 0x1fff))
		return MRTE_V_NOT_MATCHED;

	__u32 l4 = off + ihl;

	if (MRTE_LOAD(ctx, kind, l4, tcp, sizeof(tcp)))
		return MRTE_V_SHORT;
	p->dport = mrte_be16(&tcp[2]);
	if (!mrte_port_wanted(f, p->dport))
		return MRTE_V_NOT_MATCHED;

	__builtin_memcpy(&p->saddr, &ip[12], 4); /* kept in network byte order */
	__builtin_memcpy(&p->daddr, &ip[16], 4);
	p->sport = mrte_be16(&tcp[0]);
	p->seq = mrte_be32(&tcp[4]);
	p->flags = tcp[13];
	if (frag & 0x2000 /* more fragments */)
		return MRTE_V_FRAGMENT;

	__u32 doff = (__u32)(tcp[12] >> 4) * 4;
	__u32 ip_len = mrte_be16(&ip[2]);

	if (doff < 20)
		return MRTE_V_MALFORMED;
	/* A GSO/GRO super-packet beyond 64 KiB (BIG TCP) carries tot_len 0. */
	if (ip_len == 0 && pkt_len > off)
		ip_len = pkt_len - off;
	if (ip_len < ihl + doff)
		return MRTE_V_MALFORMED;
	p->payload_off = l4 + doff;
	p->payload_len = ip_len - ihl - doff;
	if (off + ip_len > pkt_len)
		return MRTE_V_TRUNCATED;
	return MRTE_V_MATCHED;
}

MRTE_INLINE enum mrte_verdict mrte_parse_ipv6(void *ctx, int kind, __u32 off,
					      const volatile struct mrte_filter *f)
{
	__u8 ip6[40], tcp[4];

	if (MRTE_LOAD(ctx, kind, off, ip6, sizeof(ip6)))
		return MRTE_V_SHORT;
	if (ip6[6] != 6) /* TCP directly after the fixed header */
		return MRTE_V_NOT_MATCHED;
	if (MRTE_LOAD(ctx, kind, off + 40, tcp, sizeof(tcp)))
		return MRTE_V_SHORT;
	return mrte_port_wanted(f, mrte_be16(&tcp[2])) ? MRTE_V_IPV6 : MRTE_V_NOT_MATCHED;
}

/* Parse from the network header on; `ethertype` says what it is. */
MRTE_INLINE enum mrte_verdict mrte_parse_l3(void *ctx, int kind, __u32 off, __u16 ethertype,
					    __u32 pkt_len, const volatile struct mrte_filter *f,
					    struct mrte_pkt *p)
{
	if (ethertype == MRTE_ETH_P_IP)
		return mrte_parse_ipv4(ctx, kind, off, pkt_len, f, p);
	if (ethertype == MRTE_ETH_P_IPV6)
		return mrte_parse_ipv6(ctx, kind, off, f);
	return MRTE_V_NOT_MATCHED;
}

/* ---- Ethernet with up to three 802.1Q / 802.1ad tags --------------------- */

MRTE_INLINE enum mrte_verdict mrte_parse_eth(void *ctx, int kind, __u32 pkt_len,
					     const volatile struct mrte_filter *f,
					     struct mrte_pkt *p)
{
	__u8 eth[14], tag[4];
	__u32 off = 14;

	if (MRTE_LOAD(ctx, kind, 0, eth, sizeof(eth)))
		return MRTE_V_SHORT;
	__u16 proto = mrte_be16(&eth[12]);

	for (int i = 0; i < MRTE_MAX_VLAN_TAGS; i++) {
		if (proto != MRTE_ETH_P_8021Q && proto != MRTE_ETH_P_8021AD &&
		    proto != MRTE_ETH_P_QINQ_OLD)
			break;
		if (MRTE_LOAD(ctx, kind, off, tag, sizeof(tag)))
			return MRTE_V_SHORT;
		proto = mrte_be16(&tag[2]);
		off += 4;
	}
	return mrte_parse_l3(ctx, kind, off, proto, pkt_len, f, p);
}

#endif /* MRTE_PARSE_H */
