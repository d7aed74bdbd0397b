/* wire.h -- the MRTE message format (SPEC section 1): encode and decode.
 *
 *   body = LOCAL_IP(4) unit+
 *   unit = UNIT_LENGTH(4, LE) SRC_IP(4) SRC_PORT(2, LE) DATA(n) CHECKSUM(4, LE)
 *   UNIT_LENGTH = 10 + n; CHECKSUM = Adler-32 of the first min(22, 6 + n)
 *   bytes of SRC_IP|SRC_PORT|DATA.  Addresses stay in network byte order.
 */
#ifndef MRTE_WIRE_H
#define MRTE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_LOCAL_IP_LEN 4
#define WIRE_UNIT_OVERHEAD 14 /* length + ip + port + checksum */

/* Bytes a unit with n data bytes takes in a body. */
static inline size_t wire_unit_size(size_t n)
{
	return WIRE_UNIT_OVERHEAD + n;
}

/* Write one unit at dst (wire_unit_size(alen + blen) bytes).  The data is
 * given in two pieces so a caller can prepend a held packet header without
 * copying it next to the payload first. */
void wire_put_unit(uint8_t *dst, uint32_t saddr, uint16_t sport, const uint8_t *a, size_t alen,
		   const uint8_t *b, size_t blen);

/* A message being filled. */
struct wire_batch {
	uint8_t *buf;
	size_t len;       /* bytes used, LOCAL_IP included */
	size_t cap;
	uint32_t units;
	uint64_t first_ns; /* when the first unit went in (mono_ns) */
};

int wire_batch_init(struct wire_batch *b, size_t cap, uint32_t local_ip);
void wire_batch_free(struct wire_batch *b);
void wire_batch_reset(struct wire_batch *b); /* keeps LOCAL_IP */
/* Append a unit; the caller has checked there is room (wire_batch_room). */
void wire_batch_add(struct wire_batch *b, uint32_t saddr, uint16_t sport, const uint8_t *a,
		    size_t alen, const uint8_t *b2, size_t blen, uint64_t now_ns);
static inline size_t wire_batch_room(const struct wire_batch *b)
{
	return b->cap - b->len;
}

/* When a batch becomes a message: at max_units units, before it would
 * grow past max_bytes, or once its first unit has waited max_wait_ns. */
struct batch_policy {
	uint32_t max_units;
	uint32_t max_bytes;
	uint64_t max_wait_ns;
};

/* Close the batch before adding a unit of unit_size bytes? */
static inline int batch_close_before(const struct batch_policy *p, const struct wire_batch *b,
				     size_t unit_size)
{
	return b->units && b->len + unit_size > p->max_bytes;
}

/* Close the batch now that a unit went in? */
static inline int batch_close_after(const struct batch_policy *p, const struct wire_batch *b)
{
	return b->units >= p->max_units || b->len >= p->max_bytes;
}

/* When the batch must be closed by time (UINT64_MAX when empty). */
static inline uint64_t batch_deadline(const struct batch_policy *p, const struct wire_batch *b)
{
	return b->units ? b->first_ns + p->max_wait_ns : UINT64_MAX;
}

/* ---- decoding (what MRTE-Player accepts) -------------------------------- */

struct wire_unit {
	uint32_t saddr; /* network byte order */
	uint16_t sport; /* host byte order */
	const uint8_t *data;
	size_t len;
};

enum wire_status {
	WIRE_OK = 0,
	WIRE_SHORT_BODY,   /* body shorter than 8 bytes */
	WIRE_BAD_LENGTH,   /* UNIT_LENGTH <= 10 */
	WIRE_OVERRUN,      /* unit runs past the end of the body */
	WIRE_BAD_CHECKSUM, /* checksum does not match */
	WIRE_STOPPED,      /* the callback asked to stop */
};

typedef int (*wire_unit_fn)(void *ctx, const struct wire_unit *u);

/* Walk a body unit by unit, stopping at the first unit the player would
 * reject.  *units (if given) counts the units handed to cb. */
enum wire_status wire_decode(const uint8_t *body, size_t len, uint32_t *local_ip,
			     wire_unit_fn cb, void *ctx, size_t *units);
const char *wire_status_str(enum wire_status s);

#endif
