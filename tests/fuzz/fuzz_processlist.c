/* fuzz_processlist.c -- processlist rows (host, db, state) as the server
 * could send them: NUL-separated, any bytes, any length. */
#include <stdlib.h>
#include <string.h>

#include "session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 3);
	char *f[3];
	struct pl_session out;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = buf[size + 2] = '\0';
	f[0] = buf;
	f[1] = f[0] + strlen(f[0]) + 1;
	f[2] = f[1] <= buf + size ? f[1] + strlen(f[1]) + 1 : buf + size + 2;
	if (f[1] > buf + size + 1)
		f[1] = buf + size + 1;
	if (f[2] > buf + size + 2)
		f[2] = buf + size + 2;
	if (session_parse_row(f[0], (size & 1) ? f[1] : NULL, (size & 2) ? f[2] : NULL, &out) ==
		    PL_SESSION &&
	    (out.sport == 0 || strlen(out.db) >= sizeof(out.db)))
		abort();
	free(buf);
	return 0;
}
