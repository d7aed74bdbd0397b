/* capture.c -- choose, open and wrap a capture backend.
 *
 * --capture=auto walks XDP native -> XDP generic -> TC -> libpcap and stops
 * at the first that both passes the kernel probe and attaches; every
 * refusal on the way is remembered and reported in one line, so an operator
 * can see why the agent runs on a slower path.  An explicit --capture=xdp or
 * --capture=tc that cannot be had is an error, not a silent fallback.
 */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture_impl.h"
#include "log.h"

struct capture {
	const struct mrte_config *cfg;
	enum capture_mode mode;
	char desc[160];
	struct bpf_capture *bpf;   /* attached programs, or maps only (pcap mode) */
	struct pcap_capture *pcap; /* pcap mode */
	int ifindex;
	uint64_t if_drops_base;
	char refused[768];
};

static void note_refusal(struct capture *c, const char *what, const char *why)
{
	size_t n = strlen(c->refused);

	snprintf(c->refused + n, sizeof(c->refused) - n, "%s%s: %s", n ? "; " : "", what, why);
}

/* ---- interface drop counters (BPF mode's PacketIfDropped) ---------------------- */

static uint64_t read_sys_counter(const char *ifname, const char *name)
{
	char path[128];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", ifname, name);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

static uint64_t iface_drops(const char *ifname)
{
	return read_sys_counter(ifname, "rx_dropped") + read_sys_counter(ifname, "rx_missed_errors") +
	       read_sys_counter(ifname, "rx_fifo_errors");
}

/* ---- the backends in order of preference ----------------------------------------- */

static bool try_xdp(struct capture *c)
{
	const struct mrte_config *cfg = c->cfg;
	bool want_native = cfg->xdp_mode != XDP_MODE_GENERIC;
	bool want_generic = cfg->xdp_mode != XDP_MODE_NATIVE;
	const char *why;
	char err[256];

	if (want_native && (why = bpf_probe_refusal("xdp_native"))) {
		note_refusal(c, "xdp native", why);
		want_native = false;
	}
	if (want_generic && (why = bpf_probe_refusal("xdp_generic"))) {
		note_refusal(c, "xdp generic", why);
		want_generic = false;
	}
	if (!want_native && !want_generic)
		return false;
	struct bpf_capture *b = bpf_capture_load(cfg, "xdp", err, sizeof(err));

	if (!b) {
		note_refusal(c, "xdp", err);
		return false;
	}
	if (want_native) {
		if (bpf_capture_attach_xdp(b, c->ifindex, true, err, sizeof(err)) == 0) {
			snprintf(c->desc, sizeof(c->desc), "xdp (native)");
			goto ok;
		}
		note_refusal(c, "xdp native", err);
	}
	if (want_generic) {
		if (bpf_capture_attach_xdp(b, c->ifindex, false, err, sizeof(err)) == 0) {
			snprintf(c->desc, sizeof(c->desc), "xdp (generic)");
			goto ok;
		}
		note_refusal(c, "xdp generic", err);
	}
	bpf_capture_free(b);
	return false;
ok:
	c->bpf = b;
	c->mode = CAPTURE_XDP;
	return true;
}

static bool try_tc(struct capture *c)
{
	const char *why = bpf_probe_refusal("tc"), *how = "";
	char err[256];

	if (why) {
		note_refusal(c, "tc", why);
		return false;
	}
	struct bpf_capture *b = bpf_capture_load(c->cfg, "tc", err, sizeof(err));

	if (!b) {
		note_refusal(c, "tc", err);
		return false;
	}
	if (bpf_capture_attach_tc(b, c->ifindex, &how, err, sizeof(err))) {
		note_refusal(c, "tc", err);
		bpf_capture_free(b);
		return false;
	}
	snprintf(c->desc, sizeof(c->desc), "tc ingress (%s)", how);
	c->bpf = b;
	c->mode = CAPTURE_TC;
	return true;
}

static bool try_pcap(struct capture *c)
{
	char err[256];
	uint32_t buffer_mb = c->cfg->pcap_buffer_mb;

	if (c->cfg->capture == CAPTURE_AUTO) {
		/* The memory was sized for the BPF path: fit the buffer in. */
		buffer_mb = config_pcap_buffer_fit(c->cfg);
		if (buffer_mb < c->cfg->pcap_buffer_mb)
			log_info("pcap buffer %u MiB (not %u) to stay within --max_mem_mb", buffer_mb,
				 c->cfg->pcap_buffer_mb);
	}
	c->pcap = pcap_capture_open(c->cfg, buffer_mb, err, sizeof(err));
	if (!c->pcap) {
		note_refusal(c, "pcap", err);
		return false;
	}
	snprintf(c->desc, sizeof(c->desc), "pcap");
	c->mode = CAPTURE_PCAP;
	/* The counters are still worth pinning if the kernel lets us make maps. */
	if (c->cfg->pin_dir && *c->cfg->pin_dir && !bpf_probe_refusal("maps"))
		c->bpf = bpf_capture_load(c->cfg, NULL, err, sizeof(err));
	return true;
}

/* ---- public ------------------------------------------------------------------------ */

struct capture *capture_open(const struct mrte_config *cfg)
{
	struct capture *c = calloc(1, sizeof(*c));
	bool ok = false;

	if (!c)
		return NULL;
	c->cfg = cfg;
	if (!cfg->read_file) {
		c->ifindex = (int)if_nametoindex(cfg->interface);
		if (!c->ifindex) {
			log_error("--interface: no interface named '%s' (%s)", cfg->interface,
				  strerror(errno));
			free(c);
			return NULL;
		}
		c->if_drops_base = iface_drops(cfg->interface);
	}
	switch ((enum capture_mode)cfg->capture) {
	case CAPTURE_AUTO:
		ok = try_xdp(c) || try_tc(c) || try_pcap(c);
		break;
	case CAPTURE_XDP:
		ok = try_xdp(c);
		break;
	case CAPTURE_TC:
		ok = try_tc(c);
		break;
	case CAPTURE_PCAP:
		ok = try_pcap(c);
		break;
	}
	if (!ok) {
		log_error("--capture=%s: no capture backend could start on %s: %s",
			  config_capture_name(cfg->capture),
			  cfg->read_file ? cfg->read_file : cfg->interface, c->refused);
		free(c);
		return NULL;
	}
	if (c->refused[0] && cfg->capture == CAPTURE_AUTO)
		log_info("capture: %s on %s; not chosen: %s", c->desc, cfg->interface, c->refused);
	else
		log_info("capture: %s on %s", c->desc,
			 cfg->read_file ? cfg->read_file : cfg->interface);

	if (c->bpf && cfg->pin_dir && *cfg->pin_dir) {
		char dir[256];

		snprintf(dir, sizeof(dir), "%s/%s", cfg->pin_dir,
			 cfg->read_file ? "offline" : cfg->interface);
		if (bpf_capture_pin(c->bpf, dir) == 0)
			log_info("counters pinned: bpftool map dump pinned %s/kstats (and agent_stats)",
				 dir);
	}
	return c;
}

struct feed *capture_feed(struct capture *c, unsigned idx, feed_record_fn fn, void *ctx)
{
	if (c->mode == CAPTURE_PCAP)
		return pcap_capture_feed(c->pcap, idx, fn, ctx);
	return bpf_capture_feed(c->bpf, idx, fn, ctx);
}

int capture_start(struct capture *c)
{
	return c->mode == CAPTURE_PCAP ? pcap_capture_start(c->pcap) : 0;
}

bool capture_done(const struct capture *c)
{
	return c->mode == CAPTURE_PCAP && pcap_capture_done(c->pcap);
}

void capture_kstats(struct capture *c, struct mrte_kstats *out)
{
	if (c->mode == CAPTURE_PCAP)
		pcap_capture_kstats(c->pcap, out);
	else
		bpf_capture_kstats(c->bpf, out);
}

uint64_t capture_if_drops(struct capture *c)
{
	if (c->mode == CAPTURE_PCAP)
		return pcap_capture_if_drops(c->pcap);
	uint64_t now = iface_drops(c->cfg->interface);

	return now > c->if_drops_base ? now - c->if_drops_base : 0;
}

void capture_agent_stats(struct capture *c, struct mrte_agent_stats *a)
{
	if (c->mode == CAPTURE_PCAP)
		pcap_capture_agent_stats(c->pcap, a);
}

void capture_publish_counters(struct capture *c, const struct mrte_kstats *k,
			      const struct mrte_agent_stats *a)
{
	if (c->bpf)
		bpf_capture_publish_counters(c->bpf, c->mode == CAPTURE_PCAP ? k : NULL, a);
}

void capture_stop(struct capture *c)
{
	if (c->mode == CAPTURE_PCAP)
		pcap_capture_stop(c->pcap);
	else
		bpf_capture_detach(c->bpf);
}

void capture_close(struct capture *c)
{
	if (!c)
		return;
	pcap_capture_free(c->pcap);
	bpf_capture_free(c->bpf);
	free(c);
}
