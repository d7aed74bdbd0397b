/* test_unit_wire.c -- the MRTE body format, byte for byte (SPEC section 1).
 *
 * The expected bodies are written out literally; their checksums were
 * computed independently and are cross-checked against a local Adler-32
 * written from its definition, so neither zlib nor wire.c is its own
 * judge.  The decoder is checked against the player's rejection rules, and
 * the batch policy against its three limits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "wire.h"

/* ---- an independent Adler-32 (RFC 1950, section 8.2) ----------------------- */

static uint32_t ref_adler32(const uint8_t *p, size_t n)
{
	uint32_t a = 1, b = 0;

	for (size_t i = 0; i < n; i++) {
		a = (a + p[i]) % 65521;
		b = (b + a) % 65521;
	}
	return b << 16 | a;
}

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* 192.168.1.20 as it sits in memory in network byte order. */
static uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	uint8_t bytes[4] = {a, b, c, d};
	uint32_t v;

	memcpy(&v, bytes, 4);
	return v;
}

/* COM_QUERY "SELECT 1": 13 data bytes, checksum over 6 + 13 = 19 bytes. */
static const uint8_t q_short[] = {0x09, 0x00, 0x00, 0x00, 0x03, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1'};
static const uint8_t unit_short[] = {
	0x17, 0x00, 0x00, 0x00,                          /* UNIT_LENGTH = 10 + 13, LE */
	0xc0, 0xa8, 0x01, 0x14,                          /* SRC_IP 192.168.1.20, network order */
	0x31, 0xd4,                                      /* SRC_PORT 54321 = 0xd431, LE */
	0x09, 0x00, 0x00, 0x00, 0x03, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1',
	0xa0, 0x04, 0x90, 0x34, /* Adler-32 0x349004a0 of the 19 bytes above, LE */
};

/* COM_QUERY "SELECT id FROM t1 WHERE a=7": 32 data bytes, checksum over 22. */
static const uint8_t q_long[] = {0x1c, 0x00, 0x00, 0x00, 0x03, 'S', 'E', 'L', 'E', 'C', 'T',
				 ' ',  'i',  'd',  ' ',  'F',  'R', 'O', 'M', ' ', 't', '1',
				 ' ',  'W',  'H',  'E',  'R',  'E', ' ', 'a', '=', '7'};
static const uint8_t unit_long[] = {
	0x2a, 0x00, 0x00, 0x00, /* 10 + 32 = 42 */
	0x0a, 0x01, 0x02, 0x03, /* 10.1.2.3 */
	0xeb, 0x0c,             /* 3307 = 0x0ceb */
	0x1c, 0x00, 0x00, 0x00, 0x03, 'S', 'E', 'L', 'E', 'C', 'T', ' ', 'i', 'd', ' ', 'F', 'R',
	'O', 'M', ' ', 't', '1', ' ', 'W', 'H', 'E', 'R', 'E', ' ', 'a', '=', '7',
	0x3a, 0x04, 0x78, 0x27, /* Adler-32 0x2778043a of the first 22 bytes only */
};

/* Exactly 16 data bytes: 6 + 16 = 22, the two rules meet. */
static const uint8_t d16[16] = {'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H',
				'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P'};
static const uint8_t unit_16[] = {
	0x1a, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x01, 0x00, 'A', 'B', 'C', 'D', 'E',
	'F',  'G',  'H',  'I',  'J',  'K',  'L',  'M',  'N',  'O',  'P', 0x0a, 0x05, 0x55, 0x30,
};

static void test_reference_adler32(void **state)
{
	(void)state;
	/* The textbook example, then the literal checksums above. */
	assert_int_equal(ref_adler32((const uint8_t *)"Wikipedia", 9), 0x11e60398);
	assert_int_equal(ref_adler32(unit_short + 4, 19), 0x349004a0);
	assert_int_equal(ref_adler32(unit_long + 4, 22), 0x2778043a);
	assert_int_equal(ref_adler32(unit_16 + 4, 22), 0x3055050a);
	assert_int_equal(le32_at(unit_short + sizeof(unit_short) - 4), 0x349004a0);
	assert_int_equal(le32_at(unit_long + sizeof(unit_long) - 4), 0x2778043a);
}

static void test_unit_short_data(void **state)
{
	uint8_t out[64];

	(void)state;
	assert_int_equal(wire_unit_size(sizeof(q_short)), sizeof(unit_short));
	memset(out, 0xee, sizeof(out));
	wire_put_unit(out, ip4(192, 168, 1, 20), 54321, q_short, sizeof(q_short), NULL, 0);
	assert_memory_equal(out, unit_short, sizeof(unit_short));
	assert_int_equal(out[sizeof(unit_short)], 0xee); /* nothing written past the unit */
}

static void test_unit_long_data(void **state)
{
	uint8_t out[64], data[sizeof(q_long)];

	(void)state;
	wire_put_unit(out, ip4(10, 1, 2, 3), 3307, q_long, sizeof(q_long), NULL, 0);
	assert_memory_equal(out, unit_long, sizeof(unit_long));

	/* Bytes past the 22nd are outside the checksum: changing them keeps it. */
	memcpy(data, q_long, sizeof(data));
	for (size_t i = 16; i < sizeof(data); i++)
		data[i] ^= 0x5a;
	wire_put_unit(out, ip4(10, 1, 2, 3), 3307, data, sizeof(data), NULL, 0);
	assert_memory_equal(out + 4 + 6 + sizeof(data), unit_long + sizeof(unit_long) - 4, 4);
	/* ... and a byte inside it changes it. */
	data[15] ^= 1;
	wire_put_unit(out, ip4(10, 1, 2, 3), 3307, data, sizeof(data), NULL, 0);
	assert_memory_not_equal(out + 4 + 6 + sizeof(data), unit_long + sizeof(unit_long) - 4, 4);
}

static void test_unit_sixteen_bytes(void **state)
{
	uint8_t out[64];

	(void)state;
	wire_put_unit(out, ip4(127, 0, 0, 1), 1, d16, sizeof(d16), NULL, 0);
	assert_memory_equal(out, unit_16, sizeof(unit_16));
}

static void test_unit_one_byte_and_port_bytes(void **state)
{
	/* UNIT_LENGTH 11, port 0x0102 written 02 01, checksum over 7 bytes. */
	const uint8_t data[1] = {0x01};
	uint8_t out[16], expect[15] = {0x0b, 0, 0, 0, 1, 2, 3, 4, 0x02, 0x01, 0x01};
	uint32_t ck = ref_adler32(expect + 4, 7);

	(void)state;
	expect[11] = (uint8_t)ck;
	expect[12] = (uint8_t)(ck >> 8);
	expect[13] = (uint8_t)(ck >> 16);
	expect[14] = (uint8_t)(ck >> 24);
	wire_put_unit(out, ip4(1, 2, 3, 4), 0x0102, data, 1, NULL, 0);
	assert_memory_equal(out, expect, 15);
}

static void test_unit_split_pieces(void **state)
{
	uint8_t whole[64], split[64];

	(void)state;
	wire_put_unit(whole, ip4(10, 1, 2, 3), 3307, q_long, sizeof(q_long), NULL, 0);
	for (size_t cut = 0; cut <= sizeof(q_long); cut++) {
		memset(split, 0, sizeof(split));
		wire_put_unit(split, ip4(10, 1, 2, 3), 3307, q_long, cut, q_long + cut,
			      sizeof(q_long) - cut);
		assert_memory_equal(split, whole, sizeof(unit_long));
	}
	/* All in the second piece, the first one absent. */
	wire_put_unit(split, ip4(10, 1, 2, 3), 3307, NULL, 0, q_long, sizeof(q_long));
	assert_memory_equal(split, unit_long, sizeof(unit_long));
	/* Short data split too (the header held back, the rest in b). */
	wire_put_unit(split, ip4(192, 168, 1, 20), 54321, q_short, 5, q_short + 5, 8);
	assert_memory_equal(split, unit_short, sizeof(unit_short));
}

static const uint8_t lo_bytes[4] = {127, 0, 0, 1};

static void test_batch_body(void **state)
{
	struct wire_batch b;
	uint8_t expect[4 + sizeof(unit_short) + sizeof(unit_long)];

	(void)state;
	memcpy(expect, lo_bytes, 4);
	memcpy(expect + 4, unit_short, sizeof(unit_short));
	memcpy(expect + 4 + sizeof(unit_short), unit_long, sizeof(unit_long));

	assert_int_equal(wire_batch_init(&b, 4096, ip4(127, 0, 0, 1)), 0);
	assert_int_equal(b.len, 4);
	assert_int_equal(b.units, 0);
	assert_int_equal(wire_batch_room(&b), 4092);
	wire_batch_add(&b, ip4(192, 168, 1, 20), 54321, q_short, 5, q_short + 5,
		       sizeof(q_short) - 5, 1000);
	wire_batch_add(&b, ip4(10, 1, 2, 3), 3307, q_long, sizeof(q_long), NULL, 0, 2000);
	assert_int_equal(b.units, 2);
	assert_int_equal(b.first_ns, 1000); /* the first unit's time, not the last */
	assert_int_equal(b.len, sizeof(expect));
	assert_memory_equal(b.buf, expect, sizeof(expect));

	wire_batch_reset(&b);
	assert_int_equal(b.len, 4);
	assert_int_equal(b.units, 0);
	wire_batch_add(&b, ip4(127, 0, 0, 1), 1, d16, sizeof(d16), NULL, 0, 3000);
	assert_int_equal(b.first_ns, 3000);
	assert_memory_equal(b.buf, lo_bytes, 4); /* LOCAL_IP kept */
	assert_memory_equal(b.buf + 4, unit_16, sizeof(unit_16));
	wire_batch_free(&b);
	assert_null(b.buf);

	/* Too small to hold LOCAL_IP and one unit with data: refused. */
	assert_int_equal(wire_batch_init(&b, 4 + 14, 0), -1);
	assert_int_equal(wire_batch_init(&b, 4 + 15, 0), 0);
	wire_batch_free(&b);
}

/* ---- decoding --------------------------------------------------------------- */

struct seen {
	size_t n;
	struct wire_unit u[16];
	size_t stop_after; /* 0 = never */
};

static int collect(void *ctx, const struct wire_unit *u)
{
	struct seen *s = ctx;

	if (s->n < 16)
		s->u[s->n] = *u;
	s->n++;
	return s->stop_after && s->n >= s->stop_after;
}

/* LOCAL_IP 10.0.0.1, then unit_short, unit_long, unit_16. */
static size_t three_units(uint8_t *body)
{
	size_t n = 0;

	memcpy(body, (const uint8_t[]){10, 0, 0, 1}, 4);
	n = 4;
	memcpy(body + n, unit_short, sizeof(unit_short));
	n += sizeof(unit_short);
	memcpy(body + n, unit_long, sizeof(unit_long));
	n += sizeof(unit_long);
	memcpy(body + n, unit_16, sizeof(unit_16));
	return n + sizeof(unit_16);
}

static void test_decode_accepts_encoded(void **state)
{
	uint8_t body[256];
	size_t len = three_units(body), units = 99;
	struct seen s = {0};
	uint32_t local = 0;

	(void)state;
	assert_int_equal(wire_decode(body, len, &local, collect, &s, &units), WIRE_OK);
	assert_int_equal(units, 3);
	assert_int_equal(s.n, 3);
	assert_int_equal(local, ip4(10, 0, 0, 1));
	assert_int_equal(s.u[0].saddr, ip4(192, 168, 1, 20));
	assert_int_equal(s.u[0].sport, 54321);
	assert_int_equal(s.u[0].len, sizeof(q_short));
	assert_memory_equal(s.u[0].data, q_short, sizeof(q_short));
	assert_int_equal(s.u[1].saddr, ip4(10, 1, 2, 3));
	assert_int_equal(s.u[1].sport, 3307);
	assert_int_equal(s.u[1].len, sizeof(q_long));
	assert_memory_equal(s.u[1].data, q_long, sizeof(q_long));
	assert_int_equal(s.u[2].sport, 1);
	assert_memory_equal(s.u[2].data, d16, 16);

	/* What the batch encoder writes decodes to what went in. */
	struct wire_batch b;
	uint8_t big[3000];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	assert_int_equal(wire_batch_init(&b, 8192, ip4(127, 0, 0, 1)), 0);
	wire_batch_add(&b, ip4(1, 1, 1, 1), 100, big, 1, NULL, 0, 1);
	wire_batch_add(&b, ip4(2, 2, 2, 2), 200, big, 1000, big + 1000, 2000, 2);
	memset(&s, 0, sizeof(s));
	assert_int_equal(wire_decode(b.buf, b.len, &local, collect, &s, &units), WIRE_OK);
	assert_int_equal(units, 2);
	assert_int_equal(local, ip4(127, 0, 0, 1));
	assert_int_equal(s.u[0].len, 1);
	assert_int_equal(s.u[1].len, 3000);
	assert_int_equal(s.u[1].saddr, ip4(2, 2, 2, 2));
	assert_int_equal(s.u[1].sport, 200);
	assert_memory_equal(s.u[1].data, big, 3000);
	wire_batch_free(&b);

	/* No callback, no counters: still a verdict. */
	assert_int_equal(wire_decode(body, len, NULL, NULL, NULL, NULL), WIRE_OK);
}

static void test_decode_short_body(void **state)
{
	uint8_t body[256];
	size_t units = 99;

	(void)state;
	three_units(body);
	for (size_t len = 0; len < 8; len++) {
		assert_int_equal(wire_decode(body, len, NULL, NULL, NULL, &units), WIRE_SHORT_BODY);
		assert_int_equal(units, 0);
	}
}

static void test_decode_bad_length(void **state)
{
	uint8_t body[256];
	size_t len = three_units(body), units;
	struct seen s = {0};

	(void)state;
	/* UNIT_LENGTH <= 10 in the first unit: 10, 1, 0. */
	for (uint8_t bad = 0; bad <= 10; bad++) {
		body[4] = bad;
		assert_int_equal(wire_decode(body, len, NULL, NULL, NULL, &units), WIRE_BAD_LENGTH);
		assert_int_equal(units, 0);
	}
	/* ... in the second unit: the first one was still handed over. */
	len = three_units(body);
	body[4 + sizeof(unit_short)] = 10;
	assert_int_equal(wire_decode(body, len, NULL, collect, &s, &units), WIRE_BAD_LENGTH);
	assert_int_equal(units, 1);
	assert_int_equal(s.n, 1);
	/* An 8-byte body with length 10 is rejected as a bad length. */
	uint8_t tiny[8] = {127, 0, 0, 1, 10, 0, 0, 0};

	assert_int_equal(wire_decode(tiny, 8, NULL, NULL, NULL, NULL), WIRE_BAD_LENGTH);
}

static void test_decode_overrun(void **state)
{
	uint8_t body[256];
	size_t len = three_units(body), units;

	(void)state;
	/* The last unit cut short by one byte. */
	assert_int_equal(wire_decode(body, len - 1, NULL, NULL, NULL, &units), WIRE_OVERRUN);
	assert_int_equal(units, 2);
	/* A length one past the body in the first unit. */
	body[4] = (uint8_t)(len - 4 - 4 + 1);
	assert_int_equal(wire_decode(body, len, NULL, NULL, NULL, &units), WIRE_OVERRUN);
	assert_int_equal(units, 0);
	/* A huge length (would wrap a 32-bit sum). */
	len = three_units(body);
	memcpy(body + 4, (const uint8_t[]){0xff, 0xff, 0xff, 0xff}, 4);
	assert_int_equal(wire_decode(body, len, NULL, NULL, NULL, &units), WIRE_OVERRUN);
	/* A body ending with a partial length field after good units. */
	len = three_units(body);
	body[len] = 0x20;
	assert_int_not_equal(wire_decode(body, len + 2, NULL, NULL, NULL, &units), WIRE_OK);
	assert_int_equal(units, 3);
}

static void test_decode_checksum(void **state)
{
	uint8_t body[256];
	size_t len, units;
	const size_t first = 4 + sizeof(unit_short); /* unit_long starts here */

	(void)state;
	/* Any flipped byte of the 22 checked bytes of the long unit (IP, port,
	 * first 16 data bytes) is caught. */
	for (size_t i = 0; i < 22; i++) {
		len = three_units(body);
		body[first + 4 + i] ^= 0x01;
		assert_int_equal(wire_decode(body, len, NULL, NULL, NULL, &units),
				 WIRE_BAD_CHECKSUM);
		assert_int_equal(units, 1);
	}
	/* A flipped byte past the 22nd is not: the player accepts it too. */
	for (size_t i = 22; i < 6 + sizeof(q_long); i++) {
		struct seen s = {0};

		len = three_units(body);
		body[first + 4 + i] ^= 0x80;
		assert_int_equal(wire_decode(body, len, NULL, collect, &s, &units), WIRE_OK);
		assert_int_equal(units, 3);
		assert_int_equal(s.u[1].data[i - 6], q_long[i - 6] ^ 0x80);
	}
	/* A flipped checksum byte is caught. */
	for (size_t i = 0; i < 4; i++) {
		len = three_units(body);
		body[first + sizeof(unit_long) - 4 + i] ^= 0x10;
		assert_int_equal(wire_decode(body, len, NULL, NULL, NULL, &units),
				 WIRE_BAD_CHECKSUM);
	}
	/* Short data: every byte is checked. */
	for (size_t i = 0; i < 6 + sizeof(q_short); i++) {
		len = three_units(body);
		body[4 + 4 + i] ^= 0x40;
		assert_int_equal(wire_decode(body, len, NULL, NULL, NULL, &units),
				 WIRE_BAD_CHECKSUM);
		assert_int_equal(units, 0);
	}
}

static void test_decode_stop(void **state)
{
	uint8_t body[256];
	size_t len = three_units(body), units;
	struct seen s = {.stop_after = 2};

	(void)state;
	assert_int_equal(wire_decode(body, len, NULL, collect, &s, &units), WIRE_STOPPED);
	assert_int_equal(units, 2);
	assert_int_equal(s.n, 2);
	for (int st = WIRE_OK; st <= WIRE_STOPPED; st++)
		assert_non_null(wire_status_str((enum wire_status)st));
	assert_string_not_equal(wire_status_str(WIRE_OK), wire_status_str(WIRE_BAD_CHECKSUM));
}

/* ---- batch policy -------------------------------------------------------------- */

static void test_policy_units(void **state)
{
	struct batch_policy p = {.max_units = 3, .max_bytes = 100000, .max_wait_ns = 5000};
	struct wire_batch b;

	(void)state;
	assert_int_equal(wire_batch_init(&b, 4096, 0), 0);
	for (int i = 1; i <= 3; i++) {
		assert_false(batch_close_before(&p, &b, wire_unit_size(5)));
		wire_batch_add(&b, 1, 1, q_short, 5, NULL, 0, 100u + (uint64_t)i);
		if (i < 3)
			assert_false(batch_close_after(&p, &b));
	}
	assert_true(batch_close_after(&p, &b)); /* at max_units */
	wire_batch_free(&b);
}

static void test_policy_bytes(void **state)
{
	/* 4 (LOCAL_IP) + 3 units of 14 + 10 = 76 bytes; a fourth would be 100. */
	struct batch_policy p = {.max_units = 1000, .max_bytes = 99, .max_wait_ns = 5000};
	uint8_t d[200] = {0};
	struct wire_batch b;

	(void)state;
	assert_int_equal(wire_batch_init(&b, 4096, 0), 0);
	for (int i = 0; i < 3; i++) {
		wire_batch_add(&b, 1, 1, d, 10, NULL, 0, 1);
		assert_false(batch_close_after(&p, &b));
	}
	assert_int_equal(b.len, 76);
	/* 76 + 24 = 100 > 99: close first.  76 + 23 = 99: still fits. */
	assert_true(batch_close_before(&p, &b, wire_unit_size(10)));
	assert_false(batch_close_before(&p, &b, wire_unit_size(9)));
	wire_batch_add(&b, 1, 1, d, 9, NULL, 0, 1);
	assert_int_equal(b.len, 99);
	assert_true(batch_close_after(&p, &b)); /* full to the byte */

	/* A unit larger than max_bytes on its own goes into an empty batch. */
	wire_batch_reset(&b);
	assert_false(batch_close_before(&p, &b, wire_unit_size(150)));
	wire_batch_add(&b, 1, 1, d, 150, NULL, 0, 1);
	assert_true(batch_close_after(&p, &b));
	/* ... but not into one that holds something. */
	wire_batch_reset(&b);
	wire_batch_add(&b, 1, 1, d, 1, NULL, 0, 1);
	assert_true(batch_close_before(&p, &b, wire_unit_size(150)));
	wire_batch_free(&b);
}

static void test_policy_deadline(void **state)
{
	struct batch_policy p = {.max_units = 10, .max_bytes = 100000, .max_wait_ns = 5000000};
	struct wire_batch b;

	(void)state;
	assert_int_equal(wire_batch_init(&b, 4096, 0), 0);
	assert_int_equal(batch_deadline(&p, &b), UINT64_MAX); /* empty: none */
	wire_batch_add(&b, 1, 1, q_short, 5, NULL, 0, 123456789);
	assert_int_equal(batch_deadline(&p, &b), 123456789 + 5000000);
	wire_batch_add(&b, 1, 1, q_short, 5, NULL, 0, 999999999);
	assert_int_equal(batch_deadline(&p, &b), 123456789 + 5000000);
	wire_batch_reset(&b);
	assert_int_equal(batch_deadline(&p, &b), UINT64_MAX);
	wire_batch_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_adler32),
		cmocka_unit_test(test_unit_short_data),
		cmocka_unit_test(test_unit_long_data),
		cmocka_unit_test(test_unit_sixteen_bytes),
		cmocka_unit_test(test_unit_one_byte_and_port_bytes),
		cmocka_unit_test(test_unit_split_pieces),
		cmocka_unit_test(test_batch_body),
		cmocka_unit_test(test_decode_accepts_encoded),
		cmocka_unit_test(test_decode_short_body),
		cmocka_unit_test(test_decode_bad_length),
		cmocka_unit_test(test_decode_overrun),
		cmocka_unit_test(test_decode_checksum),
		cmocka_unit_test(test_decode_stop),
		cmocka_unit_test(test_policy_units),
		cmocka_unit_test(test_policy_bytes),
		cmocka_unit_test(test_policy_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
