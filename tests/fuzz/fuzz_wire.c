/* fuzz_wire.c -- the MRTE message decoder on arbitrary bodies.
 *
 * Beyond not crashing: whatever it accepts must re-encode to the same
 * bytes, unit by unit (the encoder and decoder agree on every body the
 * player would accept). */
#include <stdlib.h>
#include <string.h>

#include "wire.h"

struct ctx {
	uint8_t *out;
	size_t len;
};

static int reencode(void *arg, const struct wire_unit *u)
{
	struct ctx *c = arg;

	wire_put_unit(c->out + c->len, u->saddr, u->sport, u->data, u->len, NULL, 0);
	c->len += wire_unit_size(u->len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctx c = {.out = malloc(size + 16), .len = 4};
	uint32_t local_ip;
	size_t units;

	if (!c.out)
		return 0;
	enum wire_status st = wire_decode(data, size, &local_ip, reencode, &c, &units);

	if (st == WIRE_OK) {
		memcpy(c.out, &local_ip, 4);
		if (c.len != size || memcmp(c.out, data, size))
			abort(); /* accepted, but not what the encoder would write */
	}
	free(c.out);
	return 0;
}
