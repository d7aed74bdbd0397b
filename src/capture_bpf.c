/* capture_bpf.c -- the eBPF capture backend: load, attach, rings, counters.
 *
 * Life: open the skeleton with only the program we are about to attach
 * marked for loading, write the port set and ring count into .rodata, size
 * the ring template, load, create one BPF ring buffer per publisher and put
 * it into the `rings` array of maps, then attach.
 *
 * Attachment is always by bpf_link where the kernel offers one (XDP links,
 * tcx links on 6.6+): a link dies with the process, so an agent killed with
 * SIGKILL leaves nothing attached.  On kernels without tcx the TC program
 * goes in as a classic clsact filter with a fixed handle and priority; a
 * filter left by a killed agent is found by that handle and replaced at the
 * next start.  The clsact qdisc is removed only if we created it.
 *
 * The kernel counters and the agent's counters are pinned under
 * <pin_dir>/<interface>/ so `bpftool map dump pinned` reads them; the pins
 * are removed on a clean exit and replaced if a killed run left them.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture_impl.h"
#include "log.h"
#include "mrte.skel.h"

#ifndef BPF_TCX_INGRESS_VAL
#define BPF_TCX_INGRESS_VAL 46 /* enum bpf_attach_type, kernel 6.6+; not in 6.1 headers */
#endif
#define TC_HANDLE 0x4d52 /* "MR" */
#define TC_PRIORITY 0xc0

struct bpf_capture {
	struct mrte_bpf *skel;
	const struct mrte_config *cfg;
	int ring_fd[MRTE_MAX_RINGS];
	unsigned nrings;
	int xdp_link_fd;
	int tcx_link_fd;
	bool tc_classic;
	bool tc_hook_created;
	struct bpf_tc_hook tc_hook;
	char pin_path[2][256];
	char pin_dir[256];
	int ncpus;
};

/* ---- probing ------------------------------------------------------------- */

static bool denied(const char *what)
{
	const char *deny = getenv("MRTE_PROBE_DENY");
	size_t n = strlen(what);

	for (const char *p = deny; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == n && strncmp(p, what, n) == 0)
			return true;
		p = end ? end + 1 : p + len;
	}
	return false;
}

const char *bpf_probe_refusal(const char *what)
{
	static __thread char why[160];

	if (denied("bpf") || denied(what)) {
		snprintf(why, sizeof(why), "refused by MRTE_PROBE_DENY=%s", getenv("MRTE_PROBE_DENY"));
		return why;
	}
	if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) != 1)
		return "kernel has no BPF ring buffer (needs 5.8+) or BPF is not permitted";
	if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_ARRAY_OF_MAPS, NULL) != 1)
		return "kernel has no BPF array-of-maps";
	if (strncmp(what, "xdp", 3) == 0) {
		if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_XDP, NULL) != 1)
			return "kernel cannot load XDP programs";
		if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_XDP, BPF_FUNC_xdp_load_bytes, NULL) != 1 ||
		    libbpf_probe_bpf_helper(BPF_PROG_TYPE_XDP, BPF_FUNC_xdp_get_buff_len, NULL) != 1)
			return "kernel lacks bpf_xdp_load_bytes (needs 5.18+)";
		if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_XDP, BPF_FUNC_ringbuf_output, NULL) != 1)
			return "XDP programs cannot use bpf_ringbuf_output";
	} else {
		if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SCHED_CLS, NULL) != 1)
			return "kernel cannot load TC (sched_cls) programs";
		if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_skb_load_bytes, NULL) != 1 ||
		    libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_ringbuf_output, NULL) != 1)
			return "TC programs lack bpf_skb_load_bytes or bpf_ringbuf_output";
	}
	return NULL;
}

/* ---- load ---------------------------------------------------------------- */

static uint32_t ring_bytes(const struct mrte_config *cfg)
{
	uint32_t mb = 1;

	while (mb < cfg->ring_mb)
		mb <<= 1;
	return mb << 20;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN && getenv("MRTE_LIBBPF_DEBUG"))
		return vfprintf(stderr, fmt, ap);
	if (level == LIBBPF_DEBUG && getenv("MRTE_LIBBPF_DEBUG"))
		return vfprintf(stderr, fmt, ap);
	return 0;
}

struct bpf_capture *bpf_capture_load(const struct mrte_config *cfg, const char *prog, char *err,
				     size_t errlen)
{
	struct bpf_capture *b = calloc(1, sizeof(*b));
	int rc;

	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	libbpf_set_print(libbpf_quiet);
	b->cfg = cfg;
	b->xdp_link_fd = b->tcx_link_fd = -1;
	for (int i = 0; i < MRTE_MAX_RINGS; i++)
		b->ring_fd[i] = -1;
	b->ncpus = libbpf_num_possible_cpus();
	b->nrings = cfg->thread_count;

	b->skel = mrte_bpf__open();
	if (!b->skel) {
		snprintf(err, errlen, "cannot open the BPF object: %s", strerror(errno));
		goto fail;
	}
	bpf_program__set_autoload(b->skel->progs.mrte_xdp, prog && !strcmp(prog, "xdp"));
	bpf_program__set_autoload(b->skel->progs.mrte_tc, prog && !strcmp(prog, "tc"));
	for (uint32_t i = 0; i < cfg->nports; i++)
		b->skel->rodata->cfg_filter.ports[i] = cfg->ports[i];
	b->skel->rodata->cfg_filter.nports = cfg->nports;
	b->skel->rodata->cfg_nrings = b->nrings;
	/* The rings are made here, at their configured size; the first also
	 * serves as the template the kernel checks the others against.
	 * (libbpf 1.1 cannot resize the declared inner map template.) */
	for (unsigned i = 0; prog && i < b->nrings; i++) {
		char name[16];

		snprintf(name, sizeof(name), "mrte_ring%u", i % MRTE_MAX_RINGS);
		b->ring_fd[i] = bpf_map_create(BPF_MAP_TYPE_RINGBUF, name, 0, 0, ring_bytes(cfg), NULL);
		if (b->ring_fd[i] < 0) {
			snprintf(err, errlen, "cannot create a %u MiB ring buffer: %s",
				 ring_bytes(cfg) >> 20, strerror(errno));
			goto fail;
		}
	}
	if (prog && bpf_map__set_inner_map_fd(b->skel->maps.rings, b->ring_fd[0])) {
		snprintf(err, errlen, "cannot use ring 0 as the ring template");
		goto fail;
	}

	rc = mrte_bpf__load(b->skel);
	if (rc) {
		snprintf(err, errlen, "the kernel refused the BPF %s program: %s "
			 "(MRTE_LIBBPF_DEBUG=1 shows the verifier log)",
			 prog ? prog : "maps", strerror(-rc));
		goto fail;
	}
	if (!prog)
		return b;

	int outer = bpf_map__fd(b->skel->maps.rings);

	for (unsigned i = 0; i < b->nrings; i++) {
		if (bpf_map_update_elem(outer, &i, &b->ring_fd[i], BPF_ANY)) {
			snprintf(err, errlen, "cannot install ring %u: %s", i, strerror(errno));
			goto fail;
		}
	}
	return b;
fail:
	bpf_capture_free(b);
	return NULL;
}

/* ---- attach / detach ------------------------------------------------------ */

int bpf_capture_attach_xdp(struct bpf_capture *b, int ifindex, bool native, char *err,
			   size_t errlen)
{
	LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = native ? XDP_FLAGS_DRV_MODE
								 : XDP_FLAGS_SKB_MODE);
	int fd = bpf_link_create(bpf_program__fd(b->skel->progs.mrte_xdp), ifindex, BPF_XDP, &opts);

	if (fd < 0) {
		int e = errno;

		if (e == EBUSY || e == EEXIST)
			snprintf(err, errlen, "another XDP program is attached to the interface");
		else if (native && (e == EOPNOTSUPP || e == EINVAL))
			snprintf(err, errlen, "the driver has no native XDP");
		else
			snprintf(err, errlen, "XDP attach failed: %s", strerror(e));
		return -1;
	}
	b->xdp_link_fd = fd;
	return 0;
}

int bpf_capture_attach_tc(struct bpf_capture *b, int ifindex, const char **how, char *err,
			  size_t errlen)
{
	int prog_fd = bpf_program__fd(b->skel->progs.mrte_tc);
	/* MRTE_PROBE_DENY=tcx takes the pre-6.6 path on a newer kernel. */
	int fd = denied("tcx") ? -1
			       : bpf_link_create(prog_fd, ifindex,
						 (enum bpf_attach_type)BPF_TCX_INGRESS_VAL, NULL);

	if (fd >= 0) {
		b->tcx_link_fd = fd;
		*how = "tcx link";
		return 0;
	}
	/* No tcx: a classic clsact filter. */
	memset(&b->tc_hook, 0, sizeof(b->tc_hook));
	b->tc_hook.sz = sizeof(b->tc_hook);
	b->tc_hook.ifindex = ifindex;
	b->tc_hook.attach_point = BPF_TC_INGRESS;
	int rc = bpf_tc_hook_create(&b->tc_hook);

	if (rc && rc != -EEXIST) {
		snprintf(err, errlen, "cannot create the clsact qdisc: %s", strerror(-rc));
		return -1;
	}
	b->tc_hook_created = rc == 0;
	LIBBPF_OPTS(bpf_tc_opts, query, .handle = TC_HANDLE, .priority = TC_PRIORITY);
	if (!b->tc_hook_created && bpf_tc_query(&b->tc_hook, &query) == 0)
		log_info("replacing the TC filter left by an agent that did not exit cleanly");
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_HANDLE, .priority = TC_PRIORITY,
		    .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
	rc = bpf_tc_attach(&b->tc_hook, &opts);
	if (rc) {
		snprintf(err, errlen, "TC attach failed: %s", strerror(-rc));
		if (b->tc_hook_created)
			bpf_tc_hook_destroy(&b->tc_hook);
		b->tc_hook_created = false;
		return -1;
	}
	b->tc_classic = true;
	*how = "classic clsact filter (no tcx: a SIGKILL leaves it until the next start)";
	return 0;
}

void bpf_capture_detach(struct bpf_capture *b)
{
	if (!b)
		return;
	if (b->xdp_link_fd >= 0)
		close(b->xdp_link_fd);
	b->xdp_link_fd = -1;
	if (b->tcx_link_fd >= 0)
		close(b->tcx_link_fd);
	b->tcx_link_fd = -1;
	if (b->tc_classic) {
		LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_HANDLE, .priority = TC_PRIORITY);

		bpf_tc_detach(&b->tc_hook, &opts);
		if (b->tc_hook_created) {
			b->tc_hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
			bpf_tc_hook_destroy(&b->tc_hook);
		}
		b->tc_classic = false;
	}
}

/* ---- feeds: one ring buffer per publisher ---------------------------------- */

struct bpf_feed {
	struct feed base;
	struct ring_buffer *rb;
	volatile __u32 *waiting; /* this ring's flag in the program's .bss */
	feed_record_fn fn;
	void *ctx;
};

static int bpf_feed_sample(void *ctx, void *data, size_t size)
{
	struct bpf_feed *f = ctx;
	const struct mrte_rec *rec = data;

	if (size < sizeof(*rec) || sizeof(*rec) + rec->len > size)
		return 0; /* cannot happen: the program writes whole records */
	return f->fn(f->ctx, rec, (const uint8_t *)data + sizeof(*rec));
}

static int bpf_feed_fd(struct feed *f)
{
	return ring_buffer__epoll_fd(((struct bpf_feed *)f)->rb);
}

static int bpf_feed_consume(struct feed *f)
{
	return ring_buffer__consume(((struct bpf_feed *)f)->rb);
}

static void bpf_feed_idle(struct feed *f)
{
	/* A full barrier: the publisher's next look at the ring comes after. */
	__atomic_store_n(((struct bpf_feed *)f)->waiting, 1, __ATOMIC_SEQ_CST);
}

static void bpf_feed_awake(struct feed *f)
{
	__atomic_store_n(((struct bpf_feed *)f)->waiting, 0, __ATOMIC_RELAXED);
}

static void bpf_feed_destroy(struct feed *f)
{
	struct bpf_feed *bf = (struct bpf_feed *)f;

	ring_buffer__free(bf->rb);
	free(bf);
}

struct feed *bpf_capture_feed(struct bpf_capture *b, unsigned idx, feed_record_fn fn, void *ctx)
{
	struct bpf_feed *f = calloc(1, sizeof(*f));

	if (!f || idx >= b->nrings)
		goto fail;
	f->fn = fn;
	f->ctx = ctx;
	f->rb = ring_buffer__new(b->ring_fd[idx], bpf_feed_sample, f, NULL);
	if (!f->rb)
		goto fail;
	f->base.fd = bpf_feed_fd;
	f->base.consume = bpf_feed_consume;
	f->base.idle = bpf_feed_idle;
	f->base.awake = bpf_feed_awake;
	f->waiting = &b->skel->bss->ring_waiting[idx];
	f->base.destroy = bpf_feed_destroy;
	return &f->base;
fail:
	free(f);
	return NULL;
}

int bpf_capture_prog_fd(struct bpf_capture *b, const char *prog)
{
	if (!strcmp(prog, "xdp"))
		return bpf_program__fd(b->skel->progs.mrte_xdp);
	if (!strcmp(prog, "tc"))
		return bpf_program__fd(b->skel->progs.mrte_tc);
	return -1;
}

/* ---- counters --------------------------------------------------------------- */

void bpf_capture_kstats(struct bpf_capture *b, struct mrte_kstats *out)
{
	struct mrte_kstats per[b->ncpus > 0 ? b->ncpus : 1];
	__u32 key = 0;

	memset(out, 0, sizeof(*out));
	if (bpf_map_lookup_elem(bpf_map__fd(b->skel->maps.kstats), &key, per))
		return;
	for (int c = 0; c < b->ncpus; c++) {
		__u64 *dst = (__u64 *)out;
		const __u64 *src = (const __u64 *)&per[c];

		for (size_t i = 0; i < sizeof(*out) / sizeof(__u64); i++)
			dst[i] += src[i];
	}
}

void bpf_capture_publish_counters(struct bpf_capture *b, const struct mrte_kstats *k,
				  const struct mrte_agent_stats *a)
{
	__u32 key = 0;

	bpf_map_update_elem(bpf_map__fd(b->skel->maps.agent_stats), &key, a, BPF_ANY);
	if (k) {
		struct mrte_kstats per[b->ncpus > 0 ? b->ncpus : 1];

		memset(per, 0, sizeof(per));
		per[0] = *k;
		bpf_map_update_elem(bpf_map__fd(b->skel->maps.kstats), &key, per, BPF_ANY);
	}
}

/* ---- pinning ------------------------------------------------------------------ */

static int mkdir_p(const char *path)
{
	char tmp[256];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(tmp, 0700) && errno != EEXIST ? -1 : 0;
}

int bpf_capture_pin(struct bpf_capture *b, const char *dir)
{
	struct bpf_map *maps[2] = {b->skel->maps.kstats, b->skel->maps.agent_stats};
	const char *names[2] = {"kstats", "agent_stats"};

	if (mkdir_p(dir)) {
		log_warn("cannot create pin directory %s: %s (is bpffs mounted on /sys/fs/bpf?)", dir,
			 strerror(errno));
		return -1;
	}
	snprintf(b->pin_dir, sizeof(b->pin_dir), "%s", dir);
	for (int i = 0; i < 2; i++) {
		snprintf(b->pin_path[i], sizeof(b->pin_path[i]), "%s/%s", dir, names[i]);
		if (unlink(b->pin_path[i]) == 0)
			log_info("replaced stale pin %s (left by an agent that did not exit cleanly)",
				 b->pin_path[i]);
		if (bpf_map__pin(maps[i], b->pin_path[i])) {
			log_warn("cannot pin %s: %s", b->pin_path[i], strerror(errno));
			b->pin_path[i][0] = '\0';
			return -1;
		}
	}
	return 0;
}

static void bpf_capture_unpin(struct bpf_capture *b)
{
	for (int i = 0; i < 2; i++)
		if (b->pin_path[i][0])
			unlink(b->pin_path[i]);
	if (b->pin_dir[0] && rmdir(b->pin_dir) == 0) {
		/* And the parent, if no other interface's agent uses it. */
		char *slash = strrchr(b->pin_dir, '/');

		if (slash && slash != b->pin_dir) {
			*slash = '\0';
			rmdir(b->pin_dir);
		}
	}
}

void bpf_capture_free(struct bpf_capture *b)
{
	if (!b)
		return;
	bpf_capture_detach(b);
	bpf_capture_unpin(b);
	for (int i = 0; i < MRTE_MAX_RINGS; i++)
		if (b->ring_fd[i] >= 0)
			close(b->ring_fd[i]);
	mrte_bpf__destroy(b->skel);
	free(b);
}
