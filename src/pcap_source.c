/* pcap_source.c -- placeholder until the libpcap backend lands. */
#include <stdlib.h>
#include <stdio.h>

#include "capture_impl.h"

struct pcap_capture {
	int unused;
};

struct pcap_capture *pcap_capture_open(const struct mrte_config *cfg, char *err, size_t errlen)
{
	(void)cfg;
	snprintf(err, errlen, "the pcap backend is not built yet");
	return NULL;
}
struct feed *pcap_capture_feed(struct pcap_capture *p, unsigned idx, feed_record_fn fn, void *ctx)
{
	(void)p; (void)idx; (void)fn; (void)ctx;
	return NULL;
}
int pcap_capture_start(struct pcap_capture *p) { (void)p; return -1; }
bool pcap_capture_done(const struct pcap_capture *p) { (void)p; return true; }
void pcap_capture_kstats(struct pcap_capture *p, struct mrte_kstats *out) { (void)p; (void)out; }
uint64_t pcap_capture_if_drops(struct pcap_capture *p) { (void)p; return 0; }
void pcap_capture_stop(struct pcap_capture *p) { (void)p; }
void pcap_capture_free(struct pcap_capture *p) { (void)p; }
