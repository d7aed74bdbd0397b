/* wire.c -- encode and decode MRTE messages.
 *
 * Encoding writes straight into the batch buffer: length, address, port,
 * data, then the Adler-32 (zlib's) of the first bytes of the unit.  Decoding
 * applies exactly the checks MRTE-Player applies, in the same order, so the
 * decoder doubles as the player's judge in tests. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define WIRE_CHECKSUM_SPAN 22

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint32_t unit_checksum(const uint8_t *ip_port_data, size_t n)
{
	size_t span = n < WIRE_CHECKSUM_SPAN ? n : WIRE_CHECKSUM_SPAN;

	return (uint32_t)adler32(adler32(0L, Z_NULL, 0), ip_port_data, (uInt)span);
}

/* ---- encoding ------------------------------------------------------------ */

void wire_put_unit(uint8_t *dst, uint32_t saddr, uint16_t sport, const uint8_t *a, size_t alen,
		   const uint8_t *b, size_t blen)
{
	size_t n = alen + blen;
	uint8_t *p = dst + 4;

	put_le32(dst, (uint32_t)(4 + 2 + n + 4));
	memcpy(p, &saddr, 4);
	p[4] = (uint8_t)sport;
	p[5] = (uint8_t)(sport >> 8);
	if (alen)
		memcpy(p + 6, a, alen);
	if (blen)
		memcpy(p + 6 + alen, b, blen);
	put_le32(p + 6 + n, unit_checksum(p, 6 + n));
}

int wire_batch_init(struct wire_batch *b, size_t cap, uint32_t local_ip)
{
	memset(b, 0, sizeof(*b));
	if (cap < WIRE_LOCAL_IP_LEN + WIRE_UNIT_OVERHEAD + 1)
		return -1;
	b->buf = malloc(cap);
	if (!b->buf)
		return -1;
	b->cap = cap;
	memcpy(b->buf, &local_ip, 4);
	b->len = WIRE_LOCAL_IP_LEN;
	return 0;
}

void wire_batch_free(struct wire_batch *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

void wire_batch_reset(struct wire_batch *b)
{
	b->len = WIRE_LOCAL_IP_LEN;
	b->units = 0;
	b->first_ns = 0;
}

void wire_batch_add(struct wire_batch *b, uint32_t saddr, uint16_t sport, const uint8_t *a,
		    size_t alen, const uint8_t *b2, size_t blen, uint64_t now_ns)
{
	wire_put_unit(b->buf + b->len, saddr, sport, a, alen, b2, blen);
	b->len += wire_unit_size(alen + blen);
	if (b->units++ == 0)
		b->first_ns = now_ns;
}

/* ---- decoding ------------------------------------------------------------ */

enum wire_status wire_decode(const uint8_t *body, size_t len, uint32_t *local_ip,
			     wire_unit_fn cb, void *ctx, size_t *units)
{
	size_t pos = WIRE_LOCAL_IP_LEN, count = 0;
	enum wire_status st = WIRE_OK;

	if (units)
		*units = 0;
	if (len < 8)
		return WIRE_SHORT_BODY;
	if (local_ip)
		memcpy(local_ip, body, 4);
	while (pos < len) {
		if (len - pos < 4) {
			st = WIRE_OVERRUN;
			break;
		}
		uint32_t ulen = get_le32(body + pos);

		if (ulen <= 10) {
			st = WIRE_BAD_LENGTH;
			break;
		}
		if (ulen > len - pos - 4) {
			st = WIRE_OVERRUN;
			break;
		}
		const uint8_t *u = body + pos + 4;
		size_t n = ulen - 10;

		if (unit_checksum(u, 6 + n) != get_le32(u + 6 + n)) {
			st = WIRE_BAD_CHECKSUM;
			break;
		}
		struct wire_unit wu = {.sport = (uint16_t)(u[4] | (u[5] << 8)), .data = u + 6,
				       .len = n};

		memcpy(&wu.saddr, u, 4);
		count++;
		if (cb && cb(ctx, &wu)) {
			st = WIRE_STOPPED;
			break;
		}
		pos += 4 + ulen;
	}
	if (units)
		*units = count;
	return st;
}

const char *wire_status_str(enum wire_status s)
{
	switch (s) {
	case WIRE_OK:
		return "ok";
	case WIRE_SHORT_BODY:
		return "body shorter than 8 bytes";
	case WIRE_BAD_LENGTH:
		return "unit length <= 10";
	case WIRE_OVERRUN:
		return "unit runs past the end of the body";
	case WIRE_BAD_CHECKSUM:
		return "checksum mismatch";
	case WIRE_STOPPED:
		return "stopped";
	}
	return "?";
}
