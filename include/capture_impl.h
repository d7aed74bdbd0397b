/* capture_impl.h -- what the capture dispatcher needs from its backends. */
#ifndef MRTE_CAPTURE_IMPL_H
#define MRTE_CAPTURE_IMPL_H

#include <stddef.h>

#include "capture.h"

/* ---- BPF (capture_bpf.c) ---- */
struct bpf_capture;

/* Load the object with the one program `prog` ("xdp", "tc" or NULL for
 * maps only), create the rings and fill the ring array. */
struct bpf_capture *bpf_capture_load(const struct mrte_config *cfg, const char *prog, char *err,
				     size_t errlen);
int bpf_capture_attach_xdp(struct bpf_capture *b, int ifindex, bool native, char *err,
			   size_t errlen);
/* TC ingress: a tcx link where the kernel has it (6.6+), else a classic
 * clsact filter.  *how says which. */
int bpf_capture_attach_tc(struct bpf_capture *b, int ifindex, const char **how, char *err,
			  size_t errlen);
struct feed *bpf_capture_feed(struct bpf_capture *b, unsigned idx, feed_record_fn fn, void *ctx);
/* The loaded program's fd (for bpf_prog_test_run in tests), or -1. */
int bpf_capture_prog_fd(struct bpf_capture *b, const char *prog);
void bpf_capture_kstats(struct bpf_capture *b, struct mrte_kstats *out);
/* Write a into agent_stats and, if given, k into CPU 0's kstats slot. */
void bpf_capture_publish_counters(struct bpf_capture *b, const struct mrte_kstats *k,
				  const struct mrte_agent_stats *a);
int bpf_capture_pin(struct bpf_capture *b, const char *dir);
void bpf_capture_detach(struct bpf_capture *b);
void bpf_capture_free(struct bpf_capture *b);

/* Why the kernel cannot run a backend, or NULL if it can.  Honors
 * MRTE_PROBE_DENY (comma list of xdp_native, xdp_generic, tc, bpf) so tests
 * can force each refusal. */
const char *bpf_probe_refusal(const char *what);

/* ---- libpcap (pcap_source.c) ---- */
struct pcap_capture;

/* buffer_mb: the kernel capture buffer (--pcap_buffer_mb, or less after an
 * automatic fallback, to stay within --max_mem_mb). */
struct pcap_capture *pcap_capture_open(const struct mrte_config *cfg, uint32_t buffer_mb,
				       char *err, size_t errlen);
struct feed *pcap_capture_feed(struct pcap_capture *p, unsigned idx, feed_record_fn fn, void *ctx);
int pcap_capture_start(struct pcap_capture *p);
bool pcap_capture_done(const struct pcap_capture *p);
void pcap_capture_kstats(struct pcap_capture *p, struct mrte_kstats *out);
uint64_t pcap_capture_if_drops(struct pcap_capture *p);
void pcap_capture_agent_stats(struct pcap_capture *p, struct mrte_agent_stats *a);
void pcap_capture_stop(struct pcap_capture *p);
void pcap_capture_free(struct pcap_capture *p);

#endif
