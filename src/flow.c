/* flow.c -- per-client TCP sequence tracking and MySQL packet cutting.
 *
 * Design.  Each publisher thread owns one table, so nothing here locks.
 * Flows live in a fixed pool (max_flows entries, allocated once) and are
 * found through an open-addressing index of pool numbers with linear probing
 * and backward-shift deletion; pool entries never move, so the LRU list and
 * the list of flows holding out-of-order data link them by number.
 *
 * Sequence tracking.  `nxt` is the next byte the player needs.  A record
 * wholly before it is a retransmission (dropped, counted); one overlapping
 * it is trimmed; one after it is held, sorted, until the hole fills or
 * reorder_timeout passes -- then the hole is declared lost (drop_gap) and
 * the stream resumes at the next MySQL packet start found.
 *
 * Packet cutting.  MRTE-Player treats a unit as the start of a MySQL packet
 * and joins following units only while that packet is incomplete, so every
 * unit must start at a packet boundary or continue the packet before it.
 * The first up-to-8 bytes of each packet (header, command byte, handshake
 * capability flags) are gathered in `hdr` first.  A packet that is whole in
 * the record being read is written straight from it, without a copy: two
 * pipelined packets in one segment become two units.  A packet that goes on
 * into later segments is assembled in a buffer and written, as consecutive
 * units of at most MRTE_CHUNK bytes, only once it is complete -- so the
 * player never holds half a packet: a lost segment, a FIN or a synthetic
 * COM_INIT_DB/COM_QUIT can never end up glued into a statement.  Only a
 * packet too large for the memory budget is streamed piece by piece
 * (packets_streamed); the player's own limit (64 KiB by default) is far
 * below that budget anyway.
 *
 * Sessions the capture joined mid-stream (open before the agent started, or
 * after a loss) are in HUNT state: records are dropped (drop_desync) until
 * one starts with something that looks like a command packet (sequence id
 * 0, a known command byte) or a handshake response.
 *
 * The handshake response tells whether the client switches to TLS or to the
 * compressed protocol; neither can be replayed, so such sessions are not
 * published at all and their segments are counted.
 */
#include "flow.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "log.h"

/* ---- data structures ----------------------------------------------------- */

enum flow_state {
	FS_FREE = 0,
	FS_HUNT,       /* looking for a MySQL packet start */
	FS_STREAM,     /* in sync with the client's packets */
	FS_TLS,        /* client asked for TLS: ciphertext follows */
	FS_COMPRESSED, /* compressed protocol: not replayable */
};

#define HDR_MAX 8 /* 3 length + 1 sequence + 4 payload bytes (command, capabilities) */

struct held {
	struct held *next;
	uint32_t seq;
	uint32_t len;
	uint8_t flags;
	uint8_t last; /* last record of its segment (for per-segment counters) */
	uint8_t data[];
};

struct flow {
	uint32_t saddr;
	uint16_t sport;
	uint8_t state;
	bool streaming;   /* the current packet goes out piece by piece */
	uint8_t hdr_len;
	uint8_t hdr[HDR_MAX];
	uint8_t last_cmd;
	bool have_nxt;
	bool db_synced; /* the player knows the default database */
	bool quit_seen; /* the client sent COM_QUIT */
	bool published; /* at least one unit written: the player knows the session */
	uint32_t nxt;
	uint32_t pkt_left; /* bytes of the current packet not yet seen */
	uint8_t *pkt_buf;  /* the current packet, while it is assembled */
	uint32_t pkt_len;  /* ... bytes in it so far */
	uint32_t packets;  /* packet starts seen */
	uint32_t held_bytes;
	struct held *held;
	struct held *held_tail; /* the last of held: in-order arrivals append here */
	char *pending_db; /* COM_INIT_DB waiting for a packet boundary */
	uint64_t created_ns;
	uint64_t held_since;
	uint32_t lru_prev, lru_next;   /* pool numbers, 0 = none */
	uint32_t hold_prev, hold_next; /* flows with held data */
};

#define MAX_EXCLUDED 4

struct flow_table {
	struct flow_params p;
	struct flow *pool; /* pool[0] unused: number 0 means "none" */
	uint32_t *index;   /* pool numbers, 0 = empty slot */
	uint32_t index_mask;
	uint32_t index_bits;
	uint32_t free_head;
	uint32_t count;
	uint32_t lru_head, lru_tail; /* head = least recently active */
	uint32_t hold_head;
	uint64_t held_total;
	struct {
		uint32_t saddr;
		uint16_t sport;
		bool on;
	} excluded[MAX_EXCLUDED];
	int excluded_next;
	/* What happened to the record being processed: the counter its
	 * segment lands in (NULL = published or still undecided). */
	__u64 *outcome;
	bool emitted;
	bool draining; /* drain_held is running: replays must not recurse into it */
};

/* ---- index and pool ------------------------------------------------------ */

static uint32_t le24(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
}

static uint32_t le32(const uint8_t *p)
{
	return le24(p) | ((uint32_t)p[3] << 24);
}

static uint32_t slot_of(const struct flow_table *t, uint32_t saddr, uint16_t sport)
{
	/* The ring was chosen from the low bits of mrte_flow_hash; use the
	 * high bits of a different mix so one ring's flows spread evenly. */
	uint64_t h = ((uint64_t)saddr << 16 | sport) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> (64 - t->index_bits)) & t->index_mask;
}

static struct flow *flow_lookup(struct flow_table *t, uint32_t saddr, uint16_t sport)
{
	for (uint32_t s = slot_of(t, saddr, sport);; s = (s + 1) & t->index_mask) {
		uint32_t n = t->index[s];

		if (!n)
			return NULL;
		if (t->pool[n].saddr == saddr && t->pool[n].sport == sport)
			return &t->pool[n];
	}
}

static uint32_t flow_num(const struct flow_table *t, const struct flow *f)
{
	return (uint32_t)(f - t->pool);
}

static void index_remove(struct flow_table *t, struct flow *f)
{
	uint32_t n = flow_num(t, f), s = slot_of(t, f->saddr, f->sport);

	while (t->index[s] != n)
		s = (s + 1) & t->index_mask;
	/* Backward-shift deletion: pull later entries of the probe run back. */
	for (uint32_t j = (s + 1) & t->index_mask; t->index[j]; j = (j + 1) & t->index_mask) {
		struct flow *g = &t->pool[t->index[j]];
		uint32_t home = slot_of(t, g->saddr, g->sport);

		/* Move g into the hole at s unless its home lies cyclically in (s, j]. */
		bool stays = (s < j) ? (home > s && home <= j) : (home > s || home <= j);

		if (!stays) {
			t->index[s] = t->index[j];
			s = j;
		}
	}
	t->index[s] = 0;
}

static void lru_unlink(struct flow_table *t, struct flow *f)
{
	if (f->lru_prev)
		t->pool[f->lru_prev].lru_next = f->lru_next;
	else
		t->lru_head = f->lru_next;
	if (f->lru_next)
		t->pool[f->lru_next].lru_prev = f->lru_prev;
	else
		t->lru_tail = f->lru_prev;
	f->lru_prev = f->lru_next = 0;
}

static void lru_append(struct flow_table *t, struct flow *f)
{
	uint32_t n = flow_num(t, f);

	f->lru_prev = t->lru_tail;
	f->lru_next = 0;
	if (t->lru_tail)
		t->pool[t->lru_tail].lru_next = n;
	else
		t->lru_head = n;
	t->lru_tail = n;
}

static void flow_touch(struct flow_table *t, struct flow *f)
{
	if (t->lru_tail != flow_num(t, f)) {
		lru_unlink(t, f);
		lru_append(t, f);
	}
}

static void hold_link(struct flow_table *t, struct flow *f)
{
	uint32_t n = flow_num(t, f);

	f->hold_prev = 0;
	f->hold_next = t->hold_head;
	if (t->hold_head)
		t->pool[t->hold_head].hold_prev = n;
	t->hold_head = n;
}

static void hold_unlink(struct flow_table *t, struct flow *f)
{
	if (f->hold_prev)
		t->pool[f->hold_prev].hold_next = f->hold_next;
	else
		t->hold_head = f->hold_next;
	if (f->hold_next)
		t->pool[f->hold_next].hold_prev = f->hold_prev;
	f->hold_prev = f->hold_next = 0;
}

static void held_free_all(struct flow_table *t, struct flow *f)
{
	struct held *h = f->held;

	if (!h)
		return;
	while (h) {
		struct held *next = h->next;

		free(h);
		h = next;
	}
	t->held_total -= f->held_bytes;
	f->held = NULL;
	f->held_tail = NULL;
	f->held_bytes = 0;
	hold_unlink(t, f);
}

/* Forget a packet that will never be complete (gap, FIN, RST, session gone). */
static void abandon_packet(struct flow_table *t, struct flow *f)
{
	if (f->pkt_buf) {
		t->held_total -= 4u + le24(f->pkt_buf);
		free(f->pkt_buf);
		f->pkt_buf = NULL;
	}
	f->pkt_len = 0;
	f->pkt_left = 0;
	f->hdr_len = 0;
	f->streaming = false;
}

static void flow_release(struct flow_table *t, struct flow *f)
{
	abandon_packet(t, f);
	held_free_all(t, f);
	free(f->pending_db);
	index_remove(t, f);
	lru_unlink(t, f);
	memset(f, 0, sizeof(*f));
	f->lru_next = t->free_head;
	t->free_head = flow_num(t, f);
	t->count--;
	CTR_SET(t->p.stats->flows_active, t->count);
}

static struct flow *flow_create(struct flow_table *t, uint32_t saddr, uint16_t sport,
				uint64_t now_ns)
{
	if (!t->free_head) {
		/* Full: forget the least recently active client.  If it speaks
		 * again it is picked up mid-stream like a pre-existing session. */
		flow_release(t, &t->pool[t->lru_head]);
		CTR_INC(t->p.stats->flow_evictions);
	}
	uint32_t n = t->free_head;
	struct flow *f = &t->pool[n];

	t->free_head = f->lru_next;
	memset(f, 0, sizeof(*f));
	f->saddr = saddr;
	f->sport = sport;
	f->state = FS_HUNT;
	f->created_ns = now_ns;
	uint32_t s = slot_of(t, saddr, sport);

	while (t->index[s])
		s = (s + 1) & t->index_mask;
	t->index[s] = n;
	lru_append(t, f);
	t->count++;
	CTR_SET(t->p.stats->flows_active, t->count);
	return f;
}

struct flow_table *flow_table_new(const struct flow_params *p)
{
	struct flow_table *t = calloc(1, sizeof(*t));
	uint32_t slots = 2, bits = 1;

	if (!t)
		return NULL;
	t->p = *p;
	while (slots < p->max_flows * 2u) {
		slots <<= 1;
		bits++;
	}
	t->index_mask = slots - 1;
	t->index_bits = bits;
	t->pool = calloc(p->max_flows + 1, sizeof(*t->pool));
	t->index = calloc(slots, sizeof(*t->index));
	if (!t->pool || !t->index) {
		flow_table_free(t);
		return NULL;
	}
	for (uint32_t n = p->max_flows; n >= 1; n--) {
		t->pool[n].lru_next = t->free_head;
		t->free_head = n;
	}
	return t;
}

void flow_table_free(struct flow_table *t)
{
	if (!t)
		return;
	if (t->pool && t->index)
		while (t->lru_head)
			flow_release(t, &t->pool[t->lru_head]);
	free(t->pool);
	free(t->index);
	free(t);
}

uint32_t flow_count(const struct flow_table *t)
{
	return t->count;
}

/* ---- unit output ---------------------------------------------------------- */

static void emit(struct flow_table *t, struct flow *f, const uint8_t *a, size_t alen,
		 const uint8_t *b, size_t blen)
{
	t->p.unit(t->p.ctx, f->saddr, f->sport, a, alen, b, blen);
	f->published = true;
	t->emitted = true;
	CTR_INC(t->p.stats->units);
	CTR_ADD(t->p.stats->payload_bytes, alen + blen);
}

/* May a synthetic unit go out now?  Only a streamed packet leaves the
 * player holding part of a packet; an assembled one is not out yet. */
static bool at_boundary(const struct flow *f)
{
	return !(f->streaming && f->pkt_left);
}

static void emit_init_db(struct flow_table *t, struct flow *f, const char *db)
{
	size_t n = strlen(db);
	uint8_t hdr[5];

	if (n > 0xfffffe)
		return;
	hdr[0] = (uint8_t)(n + 1);
	hdr[1] = (uint8_t)((n + 1) >> 8);
	hdr[2] = (uint8_t)((n + 1) >> 16);
	hdr[3] = 0;
	hdr[4] = MYSQL_COM_INIT_DB;
	emit(t, f, hdr, sizeof(hdr), (const uint8_t *)db, n);
	f->db_synced = true;
	CTR_INC(t->p.stats->synthetic_init_db);
}

static void emit_quit(struct flow_table *t, struct flow *f)
{
	static const uint8_t quit[5] = {1, 0, 0, 0, MYSQL_COM_QUIT};

	emit(t, f, quit, sizeof(quit), NULL, 0);
	f->quit_seen = true;
	CTR_INC(t->p.stats->synthetic_quit);
}

/* The session is over: tell the player unless the client already did.  A
 * packet still being assembled is dropped: the client never finished it. */
static void flow_close(struct flow_table *t, struct flow *f)
{
	if (f->pkt_buf)
		CTR_INC(t->p.stats->drop_gap);
	abandon_packet(t, f);
	if (f->published && !f->quit_seen && f->state != FS_TLS && f->state != FS_COMPRESSED)
		emit_quit(t, f);
	flow_release(t, f);
}

/* ---- MySQL packet cutting -------------------------------------------------- */

/* How many bytes of a packet start we gather before writing its first unit. */
static uint32_t hdr_want(const struct flow *f)
{
	if (f->hdr_len < 3)
		return 4;
	uint32_t whole = 4 + le24(f->hdr);

	return whole < HDR_MAX ? whole : HDR_MAX;
}

/* Does a record that starts here look like the start of a client packet? */
static bool looks_like_packet_start(const uint8_t *d, uint32_t len)
{
	if (len < 5)
		return false;
	uint32_t plen = le24(d);

	if (d[3] == 0) /* a command: COM_SLEEP .. COM_RESET_CONNECTION */
		return plen >= 1 && d[4] <= 0x1f;
	if (d[3] == 1 && len >= 8) /* a handshake response */
		return plen >= 32 && (le32(d + 4) & MYSQL_CLIENT_PROTOCOL_41);
	return false;
}

/* A packet's first bytes are in f->hdr: learn what the player will learn.
 * Returns false when the session turned out to be unreplayable. */
static bool packet_start(struct flow_table *t, struct flow *f)
{
	uint8_t seq = f->hdr[3];
	uint32_t plen = le24(f->hdr);

	if (f->packets++ == 0 && seq >= 1 && seq <= 10 && plen >= 4) {
		uint32_t caps = le32(f->hdr + 4);

		if (caps & MYSQL_CLIENT_SSL) {
			f->state = FS_TLS;
			t->outcome = &t->p.stats->drop_tls;
			return false;
		}
		if (caps & MYSQL_CLIENT_COMPRESS) {
			f->state = FS_COMPRESSED;
			t->outcome = &t->p.stats->drop_compressed;
			return false;
		}
		f->db_synced = true; /* the handshake names the database */
	} else if (seq == 0 && plen >= 1) {
		f->last_cmd = f->hdr[4];
		if (f->last_cmd == MYSQL_COM_QUIT)
			f->quit_seen = true;
	}
	return true;
}

static void boundary_reached(struct flow_table *t, struct flow *f)
{
	if (f->pending_db) {
		emit_init_db(t, f, f->pending_db);
		free(f->pending_db);
		f->pending_db = NULL;
	}
}

/* Write a complete packet as units of at most MRTE_CHUNK bytes: the first
 * starts with the header, the rest continue it (the player joins them). */
static void emit_packet(struct flow_table *t, struct flow *f, const uint8_t *pkt, uint32_t len)
{
	for (uint32_t off = 0; off < len; off += MRTE_CHUNK) {
		uint32_t n = len - off < MRTE_CHUNK ? len - off : MRTE_CHUNK;

		emit(t, f, pkt + off, n, NULL, 0);
	}
}

/* A packet starts here and goes on into later segments: buffer it if the
 * memory budget allows, else stream it. */
static void packet_begin_partial(struct flow_table *t, struct flow *f, const uint8_t *d,
				 uint32_t k, uint32_t rest)
{
	uint32_t whole = 4u + le24(f->hdr);

	f->pkt_left = rest - k;
	if (t->held_total + whole <= t->p.reorder_budget && (f->pkt_buf = malloc(whole))) {
		t->held_total += whole;
		memcpy(f->pkt_buf, f->hdr, f->hdr_len);
		memcpy(f->pkt_buf + f->hdr_len, d, k);
		f->pkt_len = f->hdr_len + k;
		f->streaming = false;
		return;
	}
	CTR_INC(t->p.stats->packets_streamed);
	f->streaming = true;
	emit(t, f, f->hdr, f->hdr_len, d, k);
}

/* More bytes of the current packet. */
static void packet_continue(struct flow_table *t, struct flow *f, const uint8_t *d, uint32_t k)
{
	f->pkt_left -= k;
	if (f->streaming) {
		emit(t, f, d, k, NULL, 0);
	} else {
		memcpy(f->pkt_buf + f->pkt_len, d, k);
		f->pkt_len += k;
		t->emitted = true; /* consumed into a packet: counts as published */
	}
	if (f->pkt_left)
		return;
	if (f->pkt_buf) {
		uint32_t whole = f->pkt_len;
		uint8_t *buf = f->pkt_buf;

		f->pkt_buf = NULL;
		f->pkt_len = 0;
		emit_packet(t, f, buf, whole);
		t->held_total -= whole;
		free(buf);
	}
	f->streaming = false;
}

/* Bytes that are next in the client's stream. */
static void flow_deliver(struct flow_table *t, struct flow *f, const uint8_t *d, uint32_t len)
{
	while (len > 0) {
		if (f->state == FS_TLS) {
			t->outcome = &t->p.stats->drop_tls;
			return;
		}
		if (f->state == FS_COMPRESSED) {
			t->outcome = &t->p.stats->drop_compressed;
			return;
		}
		if (f->state == FS_HUNT) {
			if (!looks_like_packet_start(d, len)) {
				if (!t->emitted)
					t->outcome = &t->p.stats->drop_desync;
				return;
			}
			f->state = FS_STREAM;
			abandon_packet(t, f);
		}
		if (f->pkt_left == 0) {
			while (len > 0 && f->hdr_len < hdr_want(f)) {
				f->hdr[f->hdr_len++] = *d++;
				len--;
			}
			if (f->hdr_len < hdr_want(f))
				return; /* the rest of the header is in the next segment */
			if (!packet_start(t, f)) {
				f->hdr_len = 0;
				continue;
			}
			uint32_t rest = le24(f->hdr) - (f->hdr_len - 4u);
			uint32_t k = len < rest ? len : rest;

			if (k == rest)
				emit(t, f, f->hdr, f->hdr_len, d, k); /* whole: no copy */
			else
				packet_begin_partial(t, f, d, k, rest);
			f->hdr_len = 0;
			d += k;
			len -= k;
		} else {
			uint32_t k = len < f->pkt_left ? len : f->pkt_left;

			packet_continue(t, f, d, k);
			d += k;
			len -= k;
		}
		if (at_boundary(f))
			boundary_reached(t, f);
	}
}

/* ---- sequence tracking ------------------------------------------------------ */

static void seq_input(struct flow_table *t, struct flow *f, uint32_t seq, const uint8_t *d,
		      uint32_t len, uint8_t flags, bool last, uint64_t now_ns);

/* Feed one held segment back in; count its segment once it has an outcome. */
static void replay_held(struct flow_table *t, struct flow *f, struct held *h, uint64_t now_ns)
{
	__u64 *saved = t->outcome;
	bool saved_emitted = t->emitted;

	t->outcome = NULL;
	t->emitted = false;
	seq_input(t, f, h->seq, h->data, h->len, h->flags, h->last, now_ns);
	if (h->len && h->last && t->outcome != &t->p.stats->reordered_segments) {
		if (t->emitted || !t->outcome)
			CTR_INC(t->p.stats->segments_published);
		else
			CTR_INC(*t->outcome);
	}
	t->outcome = saved;
	t->emitted = saved_emitted;
}

static void drain_held(struct flow_table *t, struct flow *f, uint64_t now_ns);

/* Give up on the bytes before `to`: they are lost.  The stream resumes at
 * the next MySQL packet start found; a packet cut by the hole is dropped
 * unseen (it was being assembled), and held segments from `to` on are
 * replayed in place, not copied again. */
static void skip_hole_to(struct flow_table *t, struct flow *f, uint32_t to, uint64_t now_ns)
{
	CTR_INC(t->p.stats->drop_gap);
	abandon_packet(t, f);
	if (f->state == FS_STREAM)
		f->state = FS_HUNT;
	f->nxt = to;
	drain_held(t, f, now_ns);
}

static void skip_hole(struct flow_table *t, struct flow *f, uint64_t now_ns)
{
	skip_hole_to(t, f, f->held->seq, now_ns);
}

/* What a held segment costs against the reorder budget: its bytes and its
 * bookkeeping, so that many tiny segments cannot pin far more memory than
 * --reorder_mb allows. */
static uint32_t held_cost(uint32_t len)
{
	return (uint32_t)sizeof(struct held) + len;
}

static void hold(struct flow_table *t, struct flow *f, uint32_t seq, const uint8_t *d,
		 uint32_t len, uint8_t flags, bool last, uint64_t now_ns)
{
	if (t->held_total + held_cost(len) > t->p.reorder_budget) {
		/* Out of memory to wait: the hole is lost.  Resume at this
		 * segment if it comes before what is held, so no byte that did
		 * arrive is thrown away. */
		if (f->held && (int32_t)(seq - f->held->seq) >= 0) {
			skip_hole(t, f, now_ns);
			if (f->state != FS_FREE)
				seq_input(t, f, seq, d, len, flags, last, now_ns);
			return;
		}
		CTR_INC(t->p.stats->drop_reorder_overflow);
		skip_hole_to(t, f, seq, now_ns);
		if (f->state != FS_FREE)
			seq_input(t, f, seq, d, len, flags, last, now_ns);
		return;
	}
	struct held *h = malloc(sizeof(*h) + len);

	if (!h) {
		t->outcome = &t->p.stats->drop_reorder_overflow;
		return;
	}
	h->seq = seq;
	h->len = len;
	h->flags = flags;
	h->last = last;
	if (len) /* a bare FIN held for its turn may come with no payload pointer */
		memcpy(h->data, d, len);

	struct held **pp = &f->held;

	if (!f->held) {
		hold_link(t, f);
		f->held_since = now_ns;
	}
	/* Behind a hole the rest of the stream mostly arrives in order:
	 * append at the tail instead of walking the whole list each time. */
	if (f->held_tail && (int32_t)(f->held_tail->seq - seq) <= 0)
		pp = &f->held_tail->next;
	while (*pp && (int32_t)((*pp)->seq - seq) <= 0)
		pp = &(*pp)->next;
	h->next = *pp;
	*pp = h;
	if (!h->next)
		f->held_tail = h;
	f->held_bytes += held_cost(len);
	t->held_total += held_cost(len);
	t->outcome = &t->p.stats->reordered_segments;
}

/* Replay held segments that the stream has caught up with.  A replayed
 * segment goes through seq_input, which calls back here; this loop already
 * takes every segment that has become due, so the nested call returns at
 * once and the stack stays flat however many segments were held. */
static void drain_held(struct flow_table *t, struct flow *f, uint64_t now_ns)
{
	if (t->draining)
		return;
	t->draining = true;
	while (f->state != FS_FREE && f->held && (int32_t)(f->held->seq - f->nxt) <= 0) {
		struct held *h = f->held;

		f->held = h->next;
		f->held_bytes -= held_cost(h->len);
		t->held_total -= held_cost(h->len);
		if (!f->held) {
			f->held_tail = NULL;
			hold_unlink(t, f);
		}
		replay_held(t, f, h, now_ns);
		free(h);
	}
	t->draining = false;
	if (f->state != FS_FREE && f->held)
		f->held_since = now_ns; /* a new hole starts waiting now */
}

static void seq_input(struct flow_table *t, struct flow *f, uint32_t seq, const uint8_t *d,
		      uint32_t len, uint8_t flags, bool last, uint64_t now_ns)
{
	if (!f->have_nxt) {
		f->nxt = seq;
		f->have_nxt = true;
	}
	int32_t ahead = (int32_t)(seq - f->nxt);

	if (ahead < 0) {
		uint32_t behind = (uint32_t)-ahead;

		if (behind >= len) {
			/* Every byte was seen already; a FIN here is a retransmission too. */
			if (len)
				t->outcome = &t->p.stats->retransmit_segments;
			return;
		}
		d += behind;
		len -= behind;
		seq = f->nxt;
		ahead = 0;
	}
	if (ahead > 0) {
		hold(t, f, seq, d, len, flags, last, now_ns);
		return;
	}
	flow_deliver(t, f, d, len);
	f->nxt += len;
	if (flags & MRTE_TCP_FIN) {
		flow_close(t, f);
		return;
	}
	if (f->held)
		drain_held(t, f, now_ns);
}

/* ---- public entry points ---------------------------------------------------- */

static bool is_excluded(const struct flow_table *t, uint32_t saddr, uint16_t sport)
{
	for (int i = 0; i < MAX_EXCLUDED; i++)
		if (t->excluded[i].on && t->excluded[i].saddr == saddr &&
		    t->excluded[i].sport == sport)
			return true;
	return false;
}

void flow_input(struct flow_table *t, const struct mrte_rec *rec, const uint8_t *payload,
		uint64_t now_ns)
{
	bool last = (uint32_t)rec->chunk * MRTE_CHUNK + rec->len >= rec->seg_len;
	struct flow *f;

	if (is_excluded(t, rec->saddr, rec->sport)) {
		if (rec->len && last)
			CTR_INC(t->p.stats->drop_self);
		return;
	}
	f = flow_lookup(t, rec->saddr, rec->sport);
	uint32_t seq = rec->seq;

	if (rec->flags & MRTE_TCP_SYN) {
		/* A new connection on this address and port.  A session we
		 * never saw end is over now. */
		if (f)
			flow_close(t, f);
		f = flow_create(t, rec->saddr, rec->sport, now_ns);
		f->state = FS_STREAM;
		f->have_nxt = true;
		f->nxt = rec->seq + 1;
		seq = rec->seq + 1; /* data on a SYN starts after it (TCP Fast Open) */
	}
	if (!f) {
		if (rec->len == 0)
			return; /* FIN/RST of a session we know nothing about */
		f = flow_create(t, rec->saddr, rec->sport, now_ns);
	}
	flow_touch(t, f);
	if (rec->flags & MRTE_TCP_RST) {
		flow_close(t, f);
		return;
	}
	if (rec->len == 0 && !(rec->flags & MRTE_TCP_FIN))
		return;

	t->outcome = NULL;
	t->emitted = false;
	seq_input(t, f, seq, payload, rec->len, rec->flags, last, now_ns);
	if (!rec->len || !last)
		return;
	if (t->emitted)
		CTR_INC(t->p.stats->segments_published);
	else if (t->outcome)
		CTR_INC(*t->outcome);
	else
		CTR_INC(t->p.stats->segments_published); /* bytes absorbed into a packet header */
}

void flow_tick(struct flow_table *t, uint64_t now_ns)
{
	uint32_t n = t->hold_head;

	while (n) {
		struct flow *f = &t->pool[n];

		n = f->hold_next;
		if (now_ns - f->held_since >= t->p.reorder_timeout_ns)
			skip_hole(t, f, now_ns);
	}
}

uint64_t flow_next_deadline(const struct flow_table *t)
{
	uint64_t best = UINT64_MAX;

	for (uint32_t n = t->hold_head; n; n = t->pool[n].hold_next) {
		uint64_t d = t->pool[n].held_since + t->p.reorder_timeout_ns;

		if (d < best)
			best = d;
	}
	return best;
}

void flow_flush(struct flow_table *t, uint64_t now_ns)
{
	while (t->hold_head)
		skip_hole(t, &t->pool[t->hold_head], now_ns);
}

void flow_sync_db(struct flow_table *t, uint32_t saddr, uint16_t sport, const char *db,
		  int force, uint64_t now_ns)
{
	if (is_excluded(t, saddr, sport))
		return;
	struct flow *f = flow_lookup(t, saddr, sport);

	if (!f)
		f = flow_create(t, saddr, sport, now_ns);
	if (f->state == FS_TLS || f->state == FS_COMPRESSED)
		return;
	if (f->db_synced && !force)
		return;
	if (at_boundary(f)) {
		emit_init_db(t, f, db);
		return;
	}
	free(f->pending_db);
	f->pending_db = strdup(db);
	f->db_synced = true; /* it will be, at the packet boundary */
}

void flow_session_gone(struct flow_table *t, uint32_t saddr, uint16_t sport, uint64_t seen_ns)
{
	struct flow *f = flow_lookup(t, saddr, sport);

	if (!f || f->created_ns > seen_ns)
		return; /* unknown, or a newer connection reusing the port */
	flow_close(t, f);
}

void flow_exclude(struct flow_table *t, uint32_t saddr, uint16_t sport, int on)
{
	int free_slot = -1;

	for (int i = 0; i < MAX_EXCLUDED; i++) {
		if (t->excluded[i].on && t->excluded[i].saddr == saddr &&
		    t->excluded[i].sport == sport) {
			t->excluded[i].on = on;
			return;
		}
		if (!t->excluded[i].on && free_slot < 0)
			free_slot = i;
	}
	if (!on)
		return;
	if (free_slot < 0) {
		/* All in use: replace the oldest, the least likely still open. */
		free_slot = t->excluded_next;
		t->excluded_next = (t->excluded_next + 1) % MAX_EXCLUDED;
	}
	t->excluded[free_slot].saddr = saddr;
	t->excluded[free_slot].sport = sport;
	t->excluded[free_slot].on = true;
	struct flow *f = flow_lookup(t, saddr, sport);

	/* Its handshake went out before its port was known: end that session
	 * in the player too. */
	if (f)
		flow_close(t, f);
}
