/* test_unit_config.c -- the command line: defaults, spellings, every refusal.
 *
 * config_parse is run on real argv arrays (writable copies: it permutes
 * them and overwrites passwords in them).  The --help text is parsed back
 * and held against what the parser does, so help and parser cannot drift. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "log.h"

/* ---- helpers ------------------------------------------------------------------ */

#define MAX_ARGS 64

struct args {
	int argc;
	char *argv[MAX_ARGS + 1];
	char *own[MAX_ARGS]; /* getopt permutes argv: free what we allocated */
};

static void args_add(struct args *a, const char *s)
{
	assert_true(a->argc < MAX_ARGS);
	a->own[a->argc] = strdup(s);
	assert_non_null(a->own[a->argc]);
	a->argv[a->argc] = a->own[a->argc];
	a->argc++;
	a->argv[a->argc] = NULL;
}

static void args_init(struct args *a)
{
	memset(a, 0, sizeof(*a));
	args_add(a, "mrte-collector");
}

static void args_vadd(struct args *a, va_list ap)
{
	for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
		args_add(a, s);
}

static void args_free(struct args *a)
{
	for (int i = 0; i < a->argc; i++)
		free(a->own[i]);
	memset(a, 0, sizeof(*a));
}

static enum config_result run(struct args *a, struct mrte_config *cfg, char *err, size_t errlen)
{
	FILE *out = fopen("/dev/null", "w");
	enum config_result r;

	assert_non_null(out);
	err[0] = '\0';
	r = config_parse(cfg, a->argc, a->argv, out, err, errlen);
	fclose(out);
	return r;
}

/* Parse the NULL-terminated flags; cfg is left for the caller to free. */
static enum config_result parse(struct mrte_config *cfg, char *err, size_t errlen, ...)
{
	struct args a;
	enum config_result r;
	va_list ap;

	args_init(&a);
	va_start(ap, errlen);
	args_vadd(&a, ap);
	va_end(ap);
	r = run(&a, cfg, err, errlen);
	args_free(&a);
	return r;
}

/* The flags must be refused with one line that names `flag`. */
#define assert_refused(flag, ...)                                                                  \
	do {                                                                                       \
		struct mrte_config c_;                                                             \
		char e_[512];                                                                      \
		enum config_result r_ = parse(&c_, e_, sizeof(e_), __VA_ARGS__, NULL);             \
		config_free(&c_);                                                                  \
		if (r_ != CONFIG_ERROR || !strstr(e_, flag) || strchr(e_, '\n'))                   \
			fail_msg("expected a one-line error naming %s, got %d: '%s'", flag, r_,    \
				 e_);                                                              \
	} while (0)

#define assert_accepted(...)                                                                       \
	do {                                                                                       \
		struct mrte_config c_;                                                             \
		char e_[512];                                                                      \
		enum config_result r_ = parse(&c_, e_, sizeof(e_), __VA_ARGS__, NULL);             \
		config_free(&c_);                                                                  \
		if (r_ != CONFIG_OK)                                                               \
			fail_msg("expected acceptance, got %d: '%s'", r_, e_);                     \
	} while (0)

static uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	uint8_t bytes[4] = {a, b, c, d};
	uint32_t v;

	memcpy(&v, bytes, 4);
	return v;
}

static int str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Every field, so that "same configuration" means the same everywhere. */
static int cfg_equal(const struct mrte_config *x, const struct mrte_config *y)
{
	return str_eq(x->interface, y->interface) &&
	       memcmp(x->ports, y->ports, sizeof(x->ports)) == 0 && x->nports == y->nports &&
	       x->capture == y->capture && x->xdp_mode == y->xdp_mode &&
	       x->snapshot_len == y->snapshot_len && x->read_timeout_ms == y->read_timeout_ms &&
	       x->ring_mb == y->ring_mb && x->pcap_buffer_mb == y->pcap_buffer_mb &&
	       str_eq(x->read_file, y->read_file) && x->local_ip == y->local_ip &&
	       str_eq(x->pin_dir, y->pin_dir) && x->thread_count == y->thread_count &&
	       x->queue_size == y->queue_size && x->batch_packets == y->batch_packets &&
	       x->batch_bytes == y->batch_bytes && x->sink == y->sink &&
	       str_eq(x->output, y->output) && str_eq(x->rabbitmq_host, y->rabbitmq_host) &&
	       x->rabbitmq_port == y->rabbitmq_port && str_eq(x->rabbitmq_user, y->rabbitmq_user) &&
	       str_eq(x->rabbitmq_password, y->rabbitmq_password) &&
	       str_eq(x->rabbitmq_password_file, y->rabbitmq_password_file) &&
	       str_eq(x->rabbitmq_vhost, y->rabbitmq_vhost) &&
	       str_eq(x->rabbitmq_exchange_name, y->rabbitmq_exchange_name) &&
	       str_eq(x->rabbitmq_routing_key, y->rabbitmq_routing_key) &&
	       x->max_flows == y->max_flows && x->reorder_timeout_ms == y->reorder_timeout_ms &&
	       x->reorder_mb == y->reorder_mb && str_eq(x->mysql_host, y->mysql_host) &&
	       x->mysql_port == y->mysql_port && str_eq(x->mysql_user, y->mysql_user) &&
	       str_eq(x->mysql_password, y->mysql_password) &&
	       str_eq(x->mysql_password_file, y->mysql_password_file) &&
	       x->session_poll_interval == y->session_poll_interval &&
	       x->init_db_delay == y->init_db_delay && x->max_mem_mb == y->max_mem_mb &&
	       x->stats_interval == y->stats_interval && x->verbose == y->verbose;
}

static char *help_text(void)
{
	struct args a;
	struct mrte_config cfg;
	char err[256], *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	args_init(&a);
	args_add(&a, "--help");
	assert_int_equal(config_parse(&cfg, a.argc, a.argv, out, err, sizeof(err)), CONFIG_EXIT_OK);
	fclose(out);
	config_free(&cfg);
	args_free(&a);
	assert_non_null(buf);
	/* --help wraps long descriptions onto indented lines: join them back so
	 * each flag is one line again. */
	char *w = buf;

	for (char *r = buf; *r;) {
		if (*r == '\n' && strncmp(r + 1, "          ", 10) == 0) {
			r++;
			while (*r == ' ')
				r++;
			*w++ = ' ';
			continue;
		}
		*w++ = *r++;
	}
	*w = '\0';
	return buf;
}

static int setup(void **state)
{
	(void)state;
	log_set_level(LOG_ERROR); /* clamping warns; keep the output readable */
	unsetenv("MRTE_RABBITMQ_PASSWORD");
	unsetenv("MRTE_MYSQL_PASSWORD");
	return 0;
}

/* ---- defaults ----------------------------------------------------------------------- */

static void test_defaults_spec(void **state)
{
	struct mrte_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", NULL), CONFIG_OK);
	/* SPEC section 4, the original's defaults. */
	assert_string_equal(cfg.interface, "lo");
	assert_int_equal(cfg.nports, 1);
	assert_int_equal(cfg.ports[0], 3306);
	assert_int_equal(cfg.snapshot_len, 8192);
	assert_int_equal(cfg.read_timeout_ms, 100);
	assert_int_equal(cfg.queue_size, 100);
	assert_int_equal(cfg.thread_count, 4);
	assert_int_equal(cfg.rabbitmq_port, 5672);
	assert_string_equal(cfg.rabbitmq_exchange_name, "mrte");
	assert_string_equal(cfg.rabbitmq_routing_key, "");
	assert_int_equal(cfg.max_mem_mb, 64);
	/* Ours. */
	assert_string_equal(cfg.rabbitmq_host, "127.0.0.1");
	assert_string_equal(cfg.rabbitmq_user, "guest");
	assert_string_equal(cfg.rabbitmq_password, "guest");
	assert_string_equal(cfg.rabbitmq_vhost, "/");
	assert_string_equal(cfg.mysql_password, "");
	assert_null(cfg.mysql_host);
	assert_null(cfg.read_file);
	assert_null(cfg.output);
	assert_int_equal(cfg.local_ip, 0);
	assert_int_equal(cfg.capture, CAPTURE_AUTO);
	assert_int_equal(cfg.sink, SINK_AMQP);
	assert_int_equal(cfg.verbose, 0);
	/* --help says the defaults need about 50 MiB, under the 64 MiB budget. */
	uint64_t need = config_memory_bound(&cfg);

	assert_in_range(need, 45ull << 20, 55ull << 20);
	assert_true(need <= (uint64_t)cfg.max_mem_mb << 20);
	config_free(&cfg);
}

/* Every "[default]" --help shows, typed back in, changes nothing. */
static void test_help_defaults_match_parser(void **state)
{
	struct mrte_config base, cfg;
	char err[512], *help = help_text(), *save = NULL;
	int checked = 0;

	(void)state;
	assert_int_equal(parse(&base, err, sizeof(err), "--interface=lo", NULL), CONFIG_OK);
	for (char *line = strtok_r(help, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[64], flag[256], *open, *close;
		size_t nl;

		if (strncmp(line, "  --", 4) != 0)
			continue;
		nl = strcspn(line + 4, "= ");
		assert_true(nl < sizeof(name));
		memcpy(name, line + 4, nl);
		name[nl] = '\0';
		open = strstr(line, " [");
		for (char *p = open; p; p = strstr(p + 1, " ["))
			open = p;
		if (!open)
			continue; /* no default shown */
		close = strchr(open, ']');
		assert_non_null(close);
		*close = '\0';
		open += 2;
		if (*open == '"') { /* a string default is quoted */
			open++;
			assert_int_equal(close[-1], '"');
			close[-1] = '\0';
		}
		snprintf(flag, sizeof(flag), "--%s=%s", name, open);
		assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", flag, NULL),
				 CONFIG_OK);
		if (!cfg_equal(&base, &cfg))
			fail_msg("--help shows %s but the parser's default differs", flag);
		config_free(&cfg);
		checked++;
	}
	assert_true(checked >= 25);
	config_free(&base);
	free(help);
}

/* Every "(min..max)" --help shows is what the parser enforces. */
static void test_help_ranges_match_parser(void **state)
{
	char *help = help_text(), *save = NULL;
	int checked = 0;

	(void)state;
	for (char *line = strtok_r(help, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[64], flag[128];
		unsigned long long lo, hi;
		const char *r;
		size_t nl;

		if (strncmp(line, "  --", 4) != 0)
			continue;
		r = strrchr(line, '(');
		if (!r || sscanf(r, "(%llu..%llu)", &lo, &hi) != 2)
			continue;
		nl = strcspn(line + 4, "= ");
		memcpy(name, line + 4, nl);
		name[nl] = '\0';
		/* Small settings and a huge budget so the memory check stays out of
		 * the way; the flag under test comes last and wins. */
#define RANGE_BASE                                                                                 \
	"--interface=lo", "--max_mem_mb=1048576", "--ring_mb=1", "--queue_size=1", "--max_flows=64", \
		"--reorder_mb=1", "--thread_count=2"
		snprintf(flag, sizeof(flag), "--%s=%llu", name, lo);
		assert_accepted(RANGE_BASE, flag);
		snprintf(flag, sizeof(flag), "--%s=%llu", name, hi);
		assert_accepted(RANGE_BASE, flag);
		char want[80];

		snprintf(want, sizeof(want), "--%s", name);
		snprintf(flag, sizeof(flag), "--%s=%llu", name, hi + 1);
		assert_refused(want, RANGE_BASE, flag);
		if (lo > 0) {
			snprintf(flag, sizeof(flag), "--%s=%llu", name, lo - 1);
			assert_refused(want, RANGE_BASE, flag);
		}
		checked++;
	}
	assert_true(checked >= 15);
	free(help);
}

/* ---- spellings -------------------------------------------------------------------------- */

static void check_interface(const char *a, const char *b)
{
	struct mrte_config cfg;
	char err[256];

	assert_int_equal(parse(&cfg, err, sizeof(err), a, b, NULL), CONFIG_OK);
	assert_string_equal(cfg.interface, "lo");
	config_free(&cfg);
}

static void test_spellings(void **state)
{
	struct mrte_config cfg;
	char err[256];

	(void)state;
	check_interface("-interface=lo", NULL);
	check_interface("--interface=lo", NULL);
	check_interface("--interface", "lo");
	check_interface("-interface", "lo");

	/* The original's Go-style flags, single dash, together. */
	assert_int_equal(parse(&cfg, err, sizeof(err), "-interface=eth0", "-port=3307",
			       "-thread_count=3", "-queue_size=50", "-read_timeout=250",
			       "-snapshot_len=4096", "-rabbitmq_host=10.0.0.9", "-rabbitmq_port=5673",
			       "-rabbitmq_user=u", "-rabbitmq_exchange_name=ex",
			       "-rabbitmq_routing_key=rk", "-mysql_host=db", "-mysql_user=m",
			       "-max_mem_mb=128", NULL),
			 CONFIG_OK);
	assert_string_equal(cfg.interface, "eth0");
	assert_int_equal(cfg.ports[0], 3307);
	assert_int_equal(cfg.nports, 1);
	assert_int_equal(cfg.thread_count, 3);
	assert_int_equal(cfg.queue_size, 50);
	assert_int_equal(cfg.read_timeout_ms, 250);
	assert_int_equal(cfg.snapshot_len, 4096);
	assert_string_equal(cfg.rabbitmq_host, "10.0.0.9");
	assert_int_equal(cfg.rabbitmq_port, 5673);
	assert_string_equal(cfg.rabbitmq_user, "u");
	assert_string_equal(cfg.rabbitmq_exchange_name, "ex");
	assert_string_equal(cfg.rabbitmq_routing_key, "rk");
	assert_string_equal(cfg.mysql_host, "db");
	assert_string_equal(cfg.mysql_user, "m");
	assert_int_equal(cfg.max_mem_mb, 128);
	config_free(&cfg);

	/* Several ports; a later flag overrides an earlier one. */
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", "--port=1,2,3,4,5,6,7,8",
			       "--verbose", "--capture=pcap", "--sink=null", "--local_ip=10.1.2.3",
			       "--thread_count=5", "--thread_count=3", NULL),
			 CONFIG_OK);
	assert_int_equal(cfg.nports, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(cfg.ports[i], i + 1);
	assert_int_equal(cfg.verbose, 1);
	assert_int_equal(cfg.capture, CAPTURE_PCAP);
	assert_int_equal(cfg.sink, SINK_NULL);
	assert_int_equal(cfg.local_ip, ip4(10, 1, 2, 3));
	assert_int_equal(cfg.thread_count, 3);
	config_free(&cfg);

	/* A file: capture becomes pcap, no interface needed. */
	assert_int_equal(parse(&cfg, err, sizeof(err), "--read_file=x.pcap", "--local_ip=127.0.0.1",
			       "--sink=file", "--output=/tmp/out.mrte", NULL),
			 CONFIG_OK);
	assert_int_equal(cfg.capture, CAPTURE_PCAP);
	assert_string_equal(cfg.read_file, "x.pcap");
	assert_string_equal(cfg.output, "/tmp/out.mrte");
	assert_int_equal(cfg.local_ip, ip4(127, 0, 0, 1));
	config_free(&cfg);
}

static void test_snapshot_len_clamps(void **state)
{
	struct mrte_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", "--snapshot_len=100", NULL),
			 CONFIG_OK);
	assert_int_equal(cfg.snapshot_len, 4096);
	config_free(&cfg);
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", "--snapshot_len=0", NULL),
			 CONFIG_OK);
	assert_int_equal(cfg.snapshot_len, 4096);
	config_free(&cfg);
	assert_int_equal(
		parse(&cfg, err, sizeof(err), "--interface=lo", "--snapshot_len=1000000", NULL),
		CONFIG_OK);
	assert_int_equal(cfg.snapshot_len, 16384);
	config_free(&cfg);
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", "--snapshot_len=5000", NULL),
			 CONFIG_OK);
	assert_int_equal(cfg.snapshot_len, 5000);
	config_free(&cfg);
	/* Clamping is for numbers; garbage is still refused. */
	assert_refused("--snapshot_len", "--interface=lo", "--snapshot_len=big");
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void test_bad_numbers(void **state)
{
	(void)state;
	assert_refused("--thread_count", "--interface=lo", "--thread_count=1");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=11");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=0");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=abc");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=4x");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=-4");
	assert_refused("--thread_count", "--interface=lo", "--thread_count", "-4");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=+4");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=");
	assert_refused("--thread_count", "--interface=lo", "--thread_count= 4");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=4.0");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=99999999999999999999");
	assert_refused("--thread_count", "--interface=lo", "--thread_count=4294967300");
	assert_refused("--queue_size", "--interface=lo", "--queue_size=-1");
	assert_refused("--read_timeout", "--interface=lo", "--read_timeout=0");
	assert_refused("--rabbitmq_port", "--interface=lo", "--rabbitmq_port=65536");
	assert_refused("--batch_bytes", "--interface=lo", "--batch_bytes=1023");
	assert_refused("--local_ip", "--interface=lo", "--local_ip=300.1.1.1");
	assert_refused("--local_ip", "--interface=lo", "--local_ip=::1");
	assert_accepted("--interface=lo", "--thread_count=2");
	assert_accepted("--interface=lo", "--thread_count=10", "--max_mem_mb=1024");

	/* Decimal, not octal: 010 is ten. */
	struct mrte_config cfg;
	char err[256];

	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", "--thread_count=010",
			       "--max_mem_mb=1024", NULL),
			 CONFIG_OK);
	assert_int_equal(cfg.thread_count, 10);
	config_free(&cfg);
}

static void test_bad_ports(void **state)
{
	struct mrte_config cfg;
	char err[256];

	(void)state;
	assert_refused("--port", "--interface=lo", "--port=0");
	assert_refused("--port", "--interface=lo", "--port=65536");
	assert_refused("--port", "--interface=lo", "--port=-1");
	assert_refused("--port", "--interface=lo", "--port=abc");
	assert_refused("--port", "--interface=lo", "--port=3306,3306");
	assert_refused("--port", "--interface=lo", "--port=3306,3307,3306");
	assert_refused("--port", "--interface=lo", "--port=1,2,3,4,5,6,7,8,9");
	assert_refused("--port", "--interface=lo", "--port=");
	assert_refused("--port", "--interface=lo", "--port=,");
	assert_refused("--port", "--interface=lo", "--port=3306,x");
	/* The extremes are ports, in the order given. */
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", "--port=65535,1", NULL),
			 CONFIG_OK);
	assert_int_equal(cfg.nports, 2);
	assert_int_equal(cfg.ports[0], 65535);
	assert_int_equal(cfg.ports[1], 1);
	config_free(&cfg);
}

static void test_bad_choices_and_options(void **state)
{
	(void)state;
	assert_refused("--capture", "--interface=lo", "--capture=foo");
	assert_refused("--capture", "--interface=lo", "--capture=XDP"); /* case matters */
	assert_refused("--xdp_mode", "--interface=lo", "--xdp_mode=fast");
	assert_refused("--sink", "--interface=lo", "--sink=kafka");
	assert_refused("--bogus", "--interface=lo", "--bogus=1");
	assert_refused("--bogus", "--interface=lo", "--bogus");
	assert_refused("lo2", "--interface=lo", "lo2"); /* a stray argument */
	assert_refused("--interface", "--interface"); /* no value */
	assert_refused("--verbose", "--interface=lo", "--verbose=yes");
	assert_refused("--read_file", "--read_file=x.pcap", "--capture=xdp", "--local_ip=1.2.3.4");
}

static void test_bad_combinations(void **state)
{
	(void)state;
	assert_refused("--interface", "--port=3306");
	assert_refused("--interface", "--interface=");
	assert_refused("--interface", "--interface=averyveryverylongname0");
	assert_refused("--local_ip", "--read_file=x.pcap");
	assert_refused("--output", "--interface=lo", "--sink=file");
	assert_refused("--output", "--interface=lo", "--sink=file", "--output=");
	assert_refused("--output", "--interface=lo", "--output=/tmp/x"); /* sink is amqp */
	assert_refused("--max_mem_mb", "--interface=lo", "--max_mem_mb=16");
	assert_refused("--max_mem_mb", "--interface=lo", "--ring_mb=64");
	assert_refused("--max_mem_mb", "--interface=lo", "--queue_size=100000");
	assert_accepted("--interface=lo", "--ring_mb=64", "--max_mem_mb=1024");
}

/* --ring_mb=0 (the default) sizes the rings to the memory budget, so every
 * original --thread_count (2..10) works with the default --max_mem_mb. */
static void test_auto_ring_size(void **state)
{
	struct mrte_config c;
	char e[512], t[32];
	uint32_t last = 8;

	(void)state;
	for (unsigned n = 2; n <= 10; n++) {
		snprintf(t, sizeof(t), "--thread_count=%u", n);
		if (parse(&c, e, sizeof(e), "--interface=lo", t, NULL) != CONFIG_OK)
			fail_msg("--thread_count=%u refused: %s", n, e);
		assert_true(c.ring_mb >= 1 && c.ring_mb <= 4);
		assert_true(c.ring_mb <= last); /* more threads never get bigger rings */
		assert_true(config_memory_bound(&c) <= (uint64_t)c.max_mem_mb << 20);
		last = c.ring_mb;
		config_free(&c);
	}
	/* The defaults keep the original's queue_size (100) and get 2 MiB rings;
	 * two threads have room for 4 MiB. */
	assert_int_equal(parse(&c, e, sizeof(e), "--interface=lo", NULL), CONFIG_OK);
	assert_int_equal(c.ring_mb, 2);
	assert_int_equal(c.queue_size, 100);
	config_free(&c);
	assert_int_equal(parse(&c, e, sizeof(e), "--interface=lo", "--thread_count=2", NULL),
			 CONFIG_OK);
	assert_int_equal(c.ring_mb, 4);
	config_free(&c);
	/* Ten threads: 1 MiB rings and queues shortened to fit... */
	assert_int_equal(parse(&c, e, sizeof(e), "--interface=lo", "--thread_count=10", NULL),
			 CONFIG_OK);
	assert_int_equal(c.ring_mb, 1);
	assert_true(c.queue_size >= 8 && c.queue_size < 100);
	config_free(&c);
	/* ...unless the queue length was given: then it is kept, or refused. */
	assert_int_equal(parse(&c, e, sizeof(e), "--interface=lo", "--thread_count=10",
			       "--queue_size=100", NULL),
			 CONFIG_ERROR);
	assert_non_null(strstr(e, "--max_mem_mb"));
	config_free(&c);
	assert_int_equal(parse(&c, e, sizeof(e), "--interface=lo", "--thread_count=10",
			       "--queue_size=100", "--max_mem_mb=128", NULL),
			 CONFIG_OK);
	assert_int_equal(c.queue_size, 100);
	config_free(&c);
	/* pcap counts its buffer: still fits with every thread count. */
	for (unsigned n = 2; n <= 10; n++) {
		snprintf(t, sizeof(t), "--thread_count=%u", n);
		if (parse(&c, e, sizeof(e), "--interface=lo", "--capture=pcap", t, NULL) != CONFIG_OK)
			fail_msg("--capture=pcap %s refused: %s", t, e);
		assert_true(config_memory_bound(&c) <= (uint64_t)c.max_mem_mb << 20);
		config_free(&c);
	}
	/* An explicit size is kept as given (and checked). */
	assert_int_equal(parse(&c, e, sizeof(e), "--interface=lo", "--ring_mb=2", NULL), CONFIG_OK);
	assert_int_equal(c.ring_mb, 2);
	config_free(&c);
}

static void test_missing_value_message(void **state)
{
	struct mrte_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", "--thread_count", NULL),
			 CONFIG_ERROR);
	assert_non_null(strstr(err, "--thread_count"));
	assert_non_null(strstr(err, "value"));
	config_free(&cfg);
	/* A flag that takes no value must not be reported as needing one. */
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", "--verbose=1", NULL),
			 CONFIG_ERROR);
	assert_non_null(strstr(err, "--verbose"));
	assert_null(strstr(err, "needs a value"));
	config_free(&cfg);
}

/* ---- passwords ---------------------------------------------------------------------------- */

static char *secret_file(const char *content)
{
	char *path = strdup("/tmp/mrte-unit-pw-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
	return path;
}

static void test_password_precedence(void **state)
{
	struct mrte_config cfg;
	char err[512], rflag[128], mflag[128];
	char *rfile = secret_file("from-rfile\nsecond line ignored\n");
	char *mfile = secret_file("from-mfile\r\n");

	(void)state;
	snprintf(rflag, sizeof(rflag), "--rabbitmq_password_file=%s", rfile);
	snprintf(mflag, sizeof(mflag), "--mysql_password_file=%s", mfile);

	/* Default. */
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", NULL), CONFIG_OK);
	assert_string_equal(cfg.rabbitmq_password, "guest");
	assert_string_equal(cfg.mysql_password, "");
	config_free(&cfg);

	/* Environment beats the default. */
	setenv("MRTE_RABBITMQ_PASSWORD", "from-renv", 1);
	setenv("MRTE_MYSQL_PASSWORD", "from-menv", 1);
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", NULL), CONFIG_OK);
	assert_string_equal(cfg.rabbitmq_password, "from-renv");
	assert_string_equal(cfg.mysql_password, "from-menv");
	config_free(&cfg);

	/* A file beats the environment (first line, no line end). */
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", rflag, mflag, NULL),
			 CONFIG_OK);
	assert_string_equal(cfg.rabbitmq_password, "from-rfile");
	assert_string_equal(cfg.mysql_password, "from-mfile");
	config_free(&cfg);

	/* The flag beats the file. */
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", rflag, mflag,
			       "--rabbitmq_password=from-rflag", "--mysql_password=from-mflag", NULL),
			 CONFIG_OK);
	assert_string_equal(cfg.rabbitmq_password, "from-rflag");
	assert_string_equal(cfg.mysql_password, "from-mflag");
	config_free(&cfg);

	/* An unreadable file is an error naming its flag, whatever the env says. */
	assert_refused("--rabbitmq_password_file", "--interface=lo",
		       "--rabbitmq_password_file=/nonexistent/pw");
	assert_refused("--mysql_password_file", "--interface=lo",
		       "--mysql_password_file=/nonexistent/pw");

	unsetenv("MRTE_RABBITMQ_PASSWORD");
	unsetenv("MRTE_MYSQL_PASSWORD");
	/* An empty file is an empty password, not the default. */
	char *empty = secret_file("");

	snprintf(rflag, sizeof(rflag), "--rabbitmq_password_file=%s", empty);
	assert_int_equal(parse(&cfg, err, sizeof(err), "--interface=lo", rflag, NULL), CONFIG_OK);
	assert_string_equal(cfg.rabbitmq_password, "");
	config_free(&cfg);

	unlink(rfile);
	unlink(mfile);
	unlink(empty);
	free(rfile);
	free(mfile);
	free(empty);
}

static void test_password_hidden_in_argv(void **state)
{
	struct mrte_config cfg;
	struct args a;
	char err[256];

	(void)state;
	args_init(&a);
	args_add(&a, "--interface=lo");
	args_add(&a, "--rabbitmq_password=hunter2");
	args_add(&a, "--mysql_password");
	args_add(&a, "s3cr3t!");
	args_add(&a, "--rabbitmq_user=bob");
	assert_int_equal(run(&a, &cfg, err, sizeof(err)), CONFIG_OK);
	assert_string_equal(cfg.rabbitmq_password, "hunter2");
	assert_string_equal(cfg.mysql_password, "s3cr3t!");
	/* argv may have been permuted: look at the strings themselves. */
	assert_string_equal(a.own[2], "--rabbitmq_password=xxxxxxx");
	assert_string_equal(a.own[3], "--mysql_password");
	assert_string_equal(a.own[4], "xxxxxxx");
	assert_string_equal(a.own[1], "--interface=lo");
	assert_string_equal(a.own[5], "--rabbitmq_user=bob");
	config_free(&cfg);
	args_free(&a);

	/* The original single-dash spelling is hidden too. */
	args_init(&a);
	args_add(&a, "-interface=lo");
	args_add(&a, "-rabbitmq_password=pw");
	args_add(&a, "-mysql_password=other");
	assert_int_equal(run(&a, &cfg, err, sizeof(err)), CONFIG_OK);
	assert_string_equal(cfg.rabbitmq_password, "pw");
	assert_string_equal(cfg.mysql_password, "other");
	assert_string_equal(a.own[2], "-rabbitmq_password=xx");
	assert_string_equal(a.own[3], "-mysql_password=xxxxx");
	config_free(&cfg);
	args_free(&a);

	/* A password from the environment leaves argv alone. */
	setenv("MRTE_RABBITMQ_PASSWORD", "envpw", 1);
	args_init(&a);
	args_add(&a, "--interface=lo");
	args_add(&a, "--rabbitmq_user=rabbitmq_password");
	assert_int_equal(run(&a, &cfg, err, sizeof(err)), CONFIG_OK);
	assert_string_equal(cfg.rabbitmq_password, "envpw");
	assert_string_equal(a.own[2], "--rabbitmq_user=rabbitmq_password");
	config_free(&cfg);
	args_free(&a);
	unsetenv("MRTE_RABBITMQ_PASSWORD");
}

/* ---- --help and --version ------------------------------------------------------------------ */

static void test_help_and_version(void **state)
{
	struct mrte_config cfg;
	struct args a;
	char err[256], *buf = NULL;
	size_t len = 0;
	FILE *out;

	(void)state;
	/* --help needs no --interface and exits 0. */
	char *help = help_text();

	assert_non_null(strstr(help, "--interface"));
	assert_non_null(strstr(help, "--thread_count"));
	assert_non_null(strstr(help, "MRTE_RABBITMQ_PASSWORD"));
	free(help);

	out = open_memstream(&buf, &len);
	args_init(&a);
	args_add(&a, "--version");
	assert_int_equal(config_parse(&cfg, a.argc, a.argv, out, err, sizeof(err)), CONFIG_EXIT_OK);
	fclose(out);
	assert_string_equal(buf, "mrte-collector " MRTE_VERSION "\n");
	free(buf);
	config_free(&cfg);
	args_free(&a);

	/* The original's short spelling. */
	buf = NULL;
	out = open_memstream(&buf, &len);
	args_init(&a);
	args_add(&a, "-help");
	assert_int_equal(config_parse(&cfg, a.argc, a.argv, out, err, sizeof(err)), CONFIG_EXIT_OK);
	fclose(out);
	assert_non_null(strstr(buf, "Usage:"));
	free(buf);
	config_free(&cfg);
	args_free(&a);

	/* config_print_help directly is the same text, and wraps within 100
	 * columns. */
	buf = NULL;
	out = open_memstream(&buf, &len);
	config_print_help(out, "mrte-collector");
	fclose(out);
	for (char *line = buf, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		if (nl - line > 100)
			fail_msg("--help line longer than 100 columns: %.*s", (int)(nl - line), line);
	}
	assert_non_null(strstr(buf, "Usage:"));
	free(buf);
}

static void test_capture_names(void **state)
{
	(void)state;
	assert_string_equal(config_capture_name(CAPTURE_AUTO), "auto");
	assert_string_equal(config_capture_name(CAPTURE_XDP), "xdp");
	assert_string_equal(config_capture_name(CAPTURE_TC), "tc");
	assert_string_equal(config_capture_name(CAPTURE_PCAP), "pcap");
	assert_string_equal(config_capture_name(99), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults_spec, setup),
		cmocka_unit_test_setup(test_help_defaults_match_parser, setup),
		cmocka_unit_test_setup(test_help_ranges_match_parser, setup),
		cmocka_unit_test_setup(test_spellings, setup),
		cmocka_unit_test_setup(test_snapshot_len_clamps, setup),
		cmocka_unit_test_setup(test_bad_numbers, setup),
		cmocka_unit_test_setup(test_bad_ports, setup),
		cmocka_unit_test_setup(test_bad_choices_and_options, setup),
		cmocka_unit_test_setup(test_bad_combinations, setup),
		cmocka_unit_test_setup(test_auto_ring_size, setup),
		cmocka_unit_test_setup(test_missing_value_message, setup),
		cmocka_unit_test_setup(test_password_precedence, setup),
		cmocka_unit_test_setup(test_password_hidden_in_argv, setup),
		cmocka_unit_test_setup(test_help_and_version, setup),
		cmocka_unit_test_setup(test_capture_names, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
