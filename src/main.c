/* main.c -- the life of the agent.
 *
 * Parse flags, find LOCAL_IP, open the capture (attach), start one
 * publisher per ring, start session sync, then sit in the signal and stats
 * loop: a sample every 100 ms (also written to the pinned counters maps), a
 * status row every --stats_interval.  On SIGINT/SIGTERM (or the end of a
 * --read_file): stop session sync, detach the capture, let the publishers
 * drain and flush within the deadline, print the totals, unpin, exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "config.h"
#include "log.h"
#include "publish.h"
#include "session.h"
#include "stats.h"

#define NS_PER_SEC 1000000000ull
#define STOP_GRACE_NS (1300ull * 1000000ull)     /* SIGTERM: out within 2 s, with room */
#define EOF_GRACE_NS (60ull * NS_PER_SEC)         /* --read_file: publish it all */
#define PUBLISH_BLOCK_LIMIT_NS (10ull * NS_PER_SEC) /* watchdog on broker writes */
#define SAMPLE_NS (100ull * 1000000ull) /* pinned counters refresh */

static int interface_ipv4(const char *ifname, uint32_t *addr)
{
	struct ifaddrs *ifa, *i;
	int rc = -1;

	if (getifaddrs(&ifa))
		return -1;
	for (i = ifa; i; i = i->ifa_next) {
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !strcmp(i->ifa_name, ifname)) {
			*addr = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
			rc = 0;
			break;
		}
	}
	freeifaddrs(ifa);
	return rc;
}

static struct feed *capture_feed_for(void *arg, unsigned idx, feed_record_fn fn, void *ctx)
{
	return capture_feed(arg, idx, fn, ctx);
}

static void describe_start(const struct mrte_config *cfg, uint32_t local_ip)
{
	char ports[64] = "", ip[INET_ADDRSTRLEN];
	size_t n = 0;

	for (uint32_t i = 0; i < cfg->nports; i++)
		n += (size_t)snprintf(ports + n, sizeof(ports) - n, "%s%u", i ? "," : "", cfg->ports[i]);
	inet_ntop(AF_INET, &local_ip, ip, sizeof(ip));
	log_info("mrte-collector %s: %s %s, port %s, LOCAL_IP %s, %u publishers with %u MiB "
		 "rings and %u-message queues, sink %s%s, memory bound %llu of %u MiB",
		 MRTE_VERSION, cfg->read_file ? "file" : "interface",
		 cfg->read_file ? cfg->read_file : cfg->interface, ports, ip, cfg->thread_count,
		 cfg->ring_mb, cfg->queue_size, cfg->sink == SINK_AMQP ? "amqp " : cfg->sink == SINK_FILE ? "file " : "null",
		 cfg->sink == SINK_AMQP ? cfg->rabbitmq_host : cfg->sink == SINK_FILE ? cfg->output : "",
		 (unsigned long long)((config_memory_bound(cfg) + (1 << 20) - 1) >> 20), cfg->max_mem_mb);
}

int main(int argc, char **argv)
{
	struct mrte_config cfg;
	char err[512];
	uint32_t local_ip = 0;
	sigset_t sigs;
	int status = 1;

	switch (config_parse(&cfg, argc, argv, stdout, err, sizeof(err))) {
	case CONFIG_ERROR:
		fprintf(stderr, "mrte-collector: %s\n", err);
		config_free(&cfg);
		return 2;
	case CONFIG_EXIT_OK:
		config_free(&cfg);
		return 0;
	case CONFIG_OK:
		break;
	}
	if (cfg.verbose)
		log_set_level(LOG_DEBUG);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Signals are taken synchronously by this thread only. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!cfg.read_file && !if_nametoindex(cfg.interface)) {
		log_error("--interface: no interface named '%s'", cfg.interface);
		config_free(&cfg);
		return 1;
	}
	local_ip = cfg.local_ip;
	if (!local_ip && interface_ipv4(cfg.interface, &local_ip)) {
		log_error("--interface: %s has no IPv4 address for LOCAL_IP; give --local_ip",
			  cfg.interface);
		config_free(&cfg);
		return 1;
	}
	describe_start(&cfg, local_ip);

	struct capture *cap = capture_open(&cfg);
	struct publishers *ps = NULL;
	struct session_sync *sess = NULL;
	struct stats *st = NULL;

	if (!cap)
		goto out;
	struct feed_source src = {.feed = capture_feed_for, .arg = cap};

	ps = publishers_start(&cfg, &src, local_ip);
	if (!ps)
		goto out;
	st = stats_new(stdout, cap, ps, (uint64_t)cfg.max_mem_mb << 20);
	if (!st)
		goto out;
	sess = session_start(&cfg, ps);
	if (capture_start(cap)) {
		log_error("cannot start capturing");
		goto out;
	}

	uint64_t now = mono_ns(), started = now;
	uint64_t next_sample = now + SAMPLE_NS;
	uint64_t next_row = now + cfg.stats_interval * NS_PER_SEC;
	uint64_t grace = STOP_GRACE_NS;

	for (;;) {
		uint64_t wait = next_sample > now ? next_sample - now : 0;
		struct timespec ts;

		ts.tv_sec = (time_t)(wait / NS_PER_SEC);
		ts.tv_nsec = (long)(wait % NS_PER_SEC);
		int sig = sigtimedwait(&sigs, NULL, &ts);

		now = mono_ns();
		if (sig == SIGINT || sig == SIGTERM) {
			log_info("%s: stopping", strsignal(sig));
			break;
		}
		if (sig == SIGUSR1) {
			log_info("SIGUSR1: sending every session's default database again");
			session_resend(sess);
		}
		if (capture_done(cap)) {
			log_info("%s: end of file", cfg.read_file);
			grace = EOF_GRACE_NS;
			break;
		}
		if (now >= next_sample) {
			stats_sample(st);
			publishers_watchdog(ps, now, PUBLISH_BLOCK_LIMIT_NS);
			next_sample += SAMPLE_NS;
			if (next_sample <= now)
				next_sample = now + SAMPLE_NS;
		}
		if (now >= next_row) {
			stats_print_row(st);
			next_row += cfg.stats_interval * NS_PER_SEC;
		}
	}

	session_stop(sess);
	sess = NULL;
	capture_stop(cap);
	publishers_stop(ps, mono_ns() + grace);
	stats_sample(st);
	stats_print_row(st);
	stats_print_summary(st);
	log_info("stopped after %.1f s", (double)(mono_ns() - started) / 1e9);
	status = 0;
out:
	session_stop(sess);
	if (ps && status) {
		if (cap)
			capture_stop(cap);
		publishers_stop(ps, mono_ns() + STOP_GRACE_NS);
	}
	stats_free(st);
	publishers_free(ps);
	capture_close(cap);
	config_free(&cfg);
	return status;
}
