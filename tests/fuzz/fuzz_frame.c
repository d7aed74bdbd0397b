/* fuzz_frame.c -- the frame parser (the one the BPF programs run too) and
 * the pcap path's record building, on arbitrary frames of every supported
 * link type.  The first byte picks the link type and whether the frame
 * counts as cut by the snapshot length. */
#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>

#include "pcap_parse.h"

static const int linktypes[] = {DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW, DLT_NULL,
				DLT_LOOP};

struct ctx {
	const uint8_t *frame;
	size_t size;
	uint64_t bytes;
};

static int check_record(void *arg, const struct mrte_rec *rec, const uint8_t *payload)
{
	struct ctx *c = arg;

	if (rec->len > MRTE_CHUNK || rec->chunk >= MRTE_MAX_CHUNKS)
		abort();
	if (rec->len && (payload < c->frame || payload + rec->len > c->frame + c->size))
		abort(); /* a payload must lie inside the captured frame */
	if ((uint32_t)rec->chunk * MRTE_CHUNK + rec->len > rec->seg_len && rec->len)
		abort();
	c->bytes += rec->len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct mrte_filter filter = {.ports = {3306, 3307}, .nports = 2};
	struct mrte_kstats ks = {0};
	struct mrte_agent_stats as = {0};

	if (size < 1)
		return 0;
	int lt = linktypes[data[0] % (sizeof(linktypes) / sizeof(*linktypes))];
	uint32_t wirelen = (uint32_t)(size - 1) + ((data[0] & 0x80) ? 100 : 0);
	/* A private copy, so ASan sees reads past the frame's end. */
	uint8_t *frame = malloc(size - 1 ? size - 1 : 1);
	struct ctx c = {.frame = frame, .size = size - 1};

	if (!frame)
		return 0;
	memcpy(frame, data + 1, size - 1);
	pcap_frame_records(lt, frame, (uint32_t)(size - 1), wirelen, 0, &filter, &ks, &as,
			   check_record, &c);
	/* Every frame lands in exactly one outcome. */
	if (ks.frames != 1 || ks.not_matched + ks.short_frame + ks.matched != 1)
		abort();
	if (c.bytes != ks.bytes)
		abort();
	free(frame);
	return 0;
}
