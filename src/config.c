/* config.c -- command-line parsing, validation and --help.
 *
 * One table describes every flag: its name, type, default, range and help
 * text.  Parsing, defaults and --help are all generated from it, so the help
 * cannot drift from what the parser accepts.  The original collector's
 * flags (Go style, `--name=value` or `-name=value`) keep their names and
 * meaning; getopt_long_only accepts both spellings.
 *
 * Every rejected value yields one line naming the flag; main() prints it and
 * exits with status 2.  Passwords may come from a file or the environment
 * instead of argv, and a password that did come from argv is overwritten in
 * place so that `ps` does not show it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- the flag table ------------------------------------------------------ */

enum opt_type { T_STR, T_UINT, T_PORTS, T_ENUM, T_FLAG, T_IPV4, T_HELP, T_VERSION };

struct opt_def {
	const char *name;
	enum opt_type type;
	size_t off;      /* into struct mrte_config */
	const char *def; /* default, as it would be typed */
	uint64_t min, max;
	bool clamp;                /* out of range: clamp with a warning (original behaviour) */
	const char *const *choices; /* T_ENUM: index is the stored value */
	const char *unit;
	const char *help;
	const char *section; /* starts a new --help section */
};

static const char *const capture_names[] = {"auto", "xdp", "tc", "pcap", NULL};
static const char *const xdp_mode_names[] = {"auto", "native", "generic", NULL};
static const char *const sink_names[] = {"amqp", "file", "null", NULL};

#define OFF(f) offsetof(struct mrte_config, f)

static const struct opt_def opts[] = {
	{"interface", T_STR, OFF(interface), NULL, 0, 0, false, NULL, "NAME",
	 "network interface to capture on (e.g. eth0, lo); required unless --read_file",
	 "Capture"},
	{"port", T_PORTS, OFF(ports), "3306", 1, 65535, false, NULL, "PORT[,PORT...]",
	 "MySQL server port(s) whose inbound segments are captured (up to 8)", NULL},
	{"capture", T_ENUM, OFF(capture), "auto", 0, 0, false, capture_names, "MODE",
	 "auto|xdp|tc|pcap; auto tries XDP native, XDP generic, TC, then libpcap", NULL},
	{"xdp_mode", T_ENUM, OFF(xdp_mode), "auto", 0, 0, false, xdp_mode_names, "MODE",
	 "auto|native|generic; auto = native where the driver has it, else generic", NULL},
	{"ring_mb", T_UINT, OFF(ring_mb), "0", 0, 1024, false, NULL, "MB",
	 "per-thread capture ring (BPF) or queue (pcap), rounded up to a power of two; 0 = "
	 "auto: up to 4, as --max_mem_mb allows",
	 NULL},
	{"snapshot_len", T_UINT, OFF(snapshot_len), "8192", 4096, 16384, true, NULL, "BYTES",
	 "pcap only: bytes kept per frame (clamped to 4096..16384); a cut payload is "
	 "counted (truncated), never published. BPF capture never cuts",
	 NULL},
	{"pcap_buffer_mb", T_UINT, OFF(pcap_buffer_mb), "8", 1, 2048, false, NULL, "MB",
	 "pcap only: kernel capture buffer", NULL},
	{"read_file", T_STR, OFF(read_file), NULL, 0, 0, false, NULL, "FILE.pcap",
	 "read a capture file instead of an interface; exit when it is done (needs --local_ip)",
	 NULL},
	{"local_ip", T_IPV4, OFF(local_ip), NULL, 0, 0, false, NULL, "IPV4",
	 "LOCAL_IP written in every message (default: the interface's IPv4 address)", NULL},
	{"pin_dir", T_STR, OFF(pin_dir), "/sys/fs/bpf/mrte", 0, 0, false, NULL, "DIR",
	 "counters are pinned under DIR/<interface>/ (empty string: do not pin)", NULL},

	{"thread_count", T_UINT, OFF(thread_count), "4", 2, 10, false, NULL, "N",
	 "publisher threads = capture rings = AMQP connections; a client always maps to one",
	 "Publishing"},
	{"queue_size", T_UINT, OFF(queue_size), "100", 1, 100000, false, NULL, "N",
	 "messages a publisher holds while the broker is slow or down; when full it stops "
	 "reading its ring (the kernel then counts ring_full drops)",
	 NULL},
	{"batch_packets", T_UINT, OFF(batch_packets), "20", 1, 100000, false, NULL, "N",
	 "publish a message once it holds N units", NULL},
	{"batch_bytes", T_UINT, OFF(batch_bytes), "32768", 1024, 16777216, false, NULL, "BYTES",
	 "... or once it would grow past this many bytes", NULL},
	{"read_timeout", T_UINT, OFF(read_timeout_ms), "100", 1, 60000, false, NULL, "MS",
	 "... or once its first unit has waited this long (also pcap's read timeout)", NULL},
	{"sink", T_ENUM, OFF(sink), "amqp", 0, 0, false, sink_names, "KIND",
	 "amqp|file|null: RabbitMQ, a file of length-prefixed bodies (--output), or discard",
	 NULL},
	{"output", T_STR, OFF(output), NULL, 0, 0, false, NULL, "FILE",
	 "--sink=file: append each message as a 4-byte little-endian length and the body", NULL},
	{"rabbitmq_host", T_STR, OFF(rabbitmq_host), "127.0.0.1", 0, 0, false, NULL, "HOST",
	 "RabbitMQ broker", NULL},
	{"rabbitmq_port", T_UINT, OFF(rabbitmq_port), "5672", 1, 65535, false, NULL, "PORT",
	 "RabbitMQ port", NULL},
	{"rabbitmq_user", T_STR, OFF(rabbitmq_user), "guest", 0, 0, false, NULL, "USER",
	 "RabbitMQ user", NULL},
	{"rabbitmq_password", T_STR, OFF(rabbitmq_password), NULL, 0, 0, false, NULL, "PW",
	 "RabbitMQ password (visible in ps: prefer MRTE_RABBITMQ_PASSWORD or the file; "
	 "default guest)",
	 NULL},
	{"rabbitmq_password_file", T_STR, OFF(rabbitmq_password_file), NULL, 0, 0, false, NULL,
	 "FILE", "read the RabbitMQ password from the first line of FILE", NULL},
	{"rabbitmq_vhost", T_STR, OFF(rabbitmq_vhost), "/", 0, 0, false, NULL, "VHOST",
	 "RabbitMQ virtual host", NULL},
	{"rabbitmq_exchange_name", T_STR, OFF(rabbitmq_exchange_name), "mrte", 0, 0, false, NULL,
	 "NAME", "exchange to publish to (declare it and bind queues yourself)", NULL},
	{"rabbitmq_routing_key", T_STR, OFF(rabbitmq_routing_key), "", 0, 0, false, NULL, "KEY",
	 "routing key", NULL},

	{"max_flows", T_UINT, OFF(max_flows), "32768", 64, 16777216, false, NULL, "N",
	 "client connections tracked at once; beyond, the least recently active is evicted "
	 "(counted)",
	 "Flow tracking"},
	{"reorder_timeout", T_UINT, OFF(reorder_timeout_ms), "500", 1, 60000, false, NULL, "MS",
	 "how long out-of-order bytes wait for a missing segment before it is declared lost",
	 NULL},
	{"reorder_mb", T_UINT, OFF(reorder_mb), "8", 1, 4096, false, NULL, "MB",
	 "memory for out-of-order segments and packets spanning segments, all threads", NULL},

	{"mysql_host", T_STR, OFF(mysql_host), NULL, 0, 0, false, NULL, "HOST",
	 "source MySQL server for session sync (default databases, closed sessions); unset: "
	 "no session sync",
	 "Session sync"},
	{"mysql_port", T_UINT, OFF(mysql_port), "3306", 1, 65535, false, NULL, "PORT",
	 "source MySQL server port", NULL},
	{"mysql_user", T_STR, OFF(mysql_user), "mrte", 0, 0, false, NULL, "USER",
	 "account with the PROCESS privilege", NULL},
	{"mysql_password", T_STR, OFF(mysql_password), NULL, 0, 0, false, NULL, "PW",
	 "its password (visible in ps: prefer MRTE_MYSQL_PASSWORD or the file)", NULL},
	{"mysql_password_file", T_STR, OFF(mysql_password_file), NULL, 0, 0, false, NULL, "FILE",
	 "read the MySQL password from the first line of FILE", NULL},
	{"session_poll_interval", T_UINT, OFF(session_poll_interval), "60", 1, 86400, false, NULL,
	 "SEC", "poll the processlist this often; vanished sessions get a COM_QUIT", NULL},
	{"init_db_resend", T_UINT, OFF(init_db_delay), "5", 1, 3600, false, NULL, "SEC",
	 "send default databases again this long after start (sessions opened meanwhile)", NULL},

	{"max_mem_mb", T_UINT, OFF(max_mem_mb), "64", 16, 1048576, false, NULL, "MB",
	 "memory budget: start-up fails if the settings above could need more (see below)",
	 "Operation"},
	{"stats_interval", T_UINT, OFF(stats_interval), "10", 1, 3600, false, NULL, "SEC",
	 "print a status row this often (values per second over the interval)", NULL},
	{"verbose", T_FLAG, OFF(verbose), NULL, 0, 0, false, NULL, NULL, "debug messages", NULL},
	{"help", T_HELP, 0, NULL, 0, 0, false, NULL, NULL, "this text", NULL},
	{"version", T_VERSION, 0, NULL, 0, 0, false, NULL, NULL, "print the version", NULL},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* ---- value parsing ------------------------------------------------------- */

static int errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	/* strtoull skips leading blanks and accepts a sign (negating the
	 * value): only a plain run of digits is a number here. */
	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int set_ports(struct mrte_config *cfg, const struct opt_def *o, const char *val,
		     char *err, size_t errlen)
{
	char *copy = strdup(val), *save = NULL;
	uint32_t n = 0;
	int rc = 0;

	if (!copy)
		return errf(err, errlen, "out of memory");
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (parse_u64(tok, &v) || v < o->min || v > o->max) {
			rc = errf(err, errlen, "--%s: '%s' is not a port (1..65535)", o->name, tok);
			break;
		}
		if (n == MRTE_MAX_PORTS) {
			rc = errf(err, errlen, "--%s: at most %d ports", o->name, MRTE_MAX_PORTS);
			break;
		}
		for (uint32_t i = 0; i < n; i++)
			if (cfg->ports[i] == v)
				rc = errf(err, errlen, "--%s: port %s given twice", o->name, tok);
		if (rc)
			break;
		cfg->ports[n++] = (uint16_t)v;
	}
	free(copy);
	if (!rc && n == 0)
		rc = errf(err, errlen, "--%s: no port given", o->name);
	if (!rc)
		cfg->nports = n;
	return rc;
}

static int set_value(struct mrte_config *cfg, const struct opt_def *o, const char *val,
		     bool is_default, char *err, size_t errlen)
{
	char *base = (char *)cfg;

	switch (o->type) {
	case T_STR: {
		char **slot = (char **)(base + o->off);
		char *copy = strdup(val);

		if (!copy)
			return errf(err, errlen, "out of memory");
		free(*slot);
		*slot = copy;
		return 0;
	}
	case T_UINT: {
		uint32_t *slot = (uint32_t *)(base + o->off);
		uint64_t v;

		if (parse_u64(val, &v))
			return errf(err, errlen, "--%s: '%s' is not a whole number", o->name, val);
		if (v < o->min || v > o->max) {
			if (!o->clamp)
				return errf(err, errlen, "--%s: %s is out of range (%llu..%llu)",
					    o->name, val, (unsigned long long)o->min,
					    (unsigned long long)o->max);
			uint64_t c = v < o->min ? o->min : o->max;

			if (!is_default)
				log_warn("--%s: %s clamped to %llu", o->name, val,
					 (unsigned long long)c);
			v = c;
		}
		*slot = (uint32_t)v;
		return 0;
	}
	case T_PORTS:
		return set_ports(cfg, o, val, err, errlen);
	case T_ENUM: {
		uint32_t *slot = (uint32_t *)(base + o->off);

		for (uint32_t i = 0; o->choices[i]; i++) {
			if (strcmp(o->choices[i], val) == 0) {
				*slot = i;
				return 0;
			}
		}
		char list[128] = "";

		for (uint32_t i = 0; o->choices[i]; i++) {
			strncat(list, i ? "|" : "", sizeof(list) - strlen(list) - 1);
			strncat(list, o->choices[i], sizeof(list) - strlen(list) - 1);
		}
		return errf(err, errlen, "--%s: '%s' is not one of %s", o->name, val, list);
	}
	case T_IPV4: {
		struct in_addr a;

		if (inet_pton(AF_INET, val, &a) != 1)
			return errf(err, errlen, "--%s: '%s' is not an IPv4 address", o->name, val);
		*(uint32_t *)(base + o->off) = a.s_addr;
		return 0;
	}
	case T_FLAG:
		*(uint32_t *)(base + o->off) = 1;
		return 0;
	case T_HELP:
	case T_VERSION:
		return 0;
	}
	return 0;
}

/* ---- passwords ------------------------------------------------------------ */

static int read_secret_file(const char *flag, const char *path, char **out, char *err,
			    size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[1024];

	if (!f)
		return errf(err, errlen, "--%s: cannot read %s: %s", flag, path, strerror(errno));
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	free(*out);
	*out = strdup(line);
	return *out ? 0 : errf(err, errlen, "out of memory");
}

/* Flag, else file, else environment, else the default. */
static int resolve_password(char **pw, const char *file, const char *file_flag,
			    const char *env, const char *def, char *err, size_t errlen)
{
	if (*pw)
		return 0;
	if (file)
		return read_secret_file(file_flag, file, pw, err, errlen);
	const char *e = getenv(env);

	if (e || def) {
		*pw = strdup(e ? e : def);
		if (!*pw)
			return errf(err, errlen, "out of memory");
	}
	return 0;
}

/* Overwrite a password given on the command line so ps shows xxxx. */
static void hide_arg_value(int argc, char **argv, const char *name)
{
	size_t nl = strlen(name);

	for (int i = 1; i < argc; i++) {
		char *a = argv[i];

		while (*a == '-')
			a++;
		if (strncmp(a, name, nl) != 0)
			continue;
		if (a[nl] == '=')
			memset(a + nl + 1, 'x', strlen(a + nl + 1));
		else if (a[nl] == '\0' && i + 1 < argc)
			memset(argv[i + 1], 'x', strlen(argv[i + 1]));
	}
}

/* ---- help ----------------------------------------------------------------- */

const char *config_capture_name(uint32_t mode)
{
	return mode < 4 ? capture_names[mode] : "?";
}

/* Print text from column `indent` on, wrapped at `width` columns. */
static void print_wrapped(FILE *out, const char *text, int indent, int width)
{
	int col = indent;

	while (*text) {
		int word = (int)strcspn(text, " ");

		if (col > indent && col + 1 + word > width) {
			fprintf(out, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', out);
			col++;
		}
		fprintf(out, "%.*s", word, text);
		col += word;
		text += word;
		while (*text == ' ')
			text++;
	}
	fputc('\n', out);
}

void config_print_help(FILE *out, const char *prog)
{
	fprintf(out,
		"Usage: %s --interface=IF [options]\n"
		"       %s --read_file=FILE.pcap --local_ip=IP [options]\n\n"
		"Capture every inbound TCP segment with data to the MySQL port(s) and publish it\n"
		"to RabbitMQ in the MRTE format for MRTE-Player.  Flags take --name=value,\n"
		"--name value or the original -name=value.\n",
		prog, prog);
	for (size_t i = 0; i < N_OPTS; i++) {
		const struct opt_def *o = &opts[i];
		char lhs[64];

		if (o->section)
			fprintf(out, "\n%s:\n", o->section);
		char text[512];
		size_t n;

		snprintf(lhs, sizeof(lhs), "--%s%s%s", o->name, o->unit ? "=" : "",
			 o->unit ? o->unit : "");
		n = (size_t)snprintf(text, sizeof(text), "%s", o->help);
		if (o->def && o->type != T_STR)
			n += (size_t)snprintf(text + n, sizeof(text) - n, " [%s]", o->def);
		else if (o->def)
			n += (size_t)snprintf(text + n, sizeof(text) - n, " [\"%s\"]", o->def);
		if (o->type == T_UINT && !o->clamp && n < sizeof(text))
			snprintf(text + n, sizeof(text) - n, " (%llu..%llu)",
				 (unsigned long long)o->min, (unsigned long long)o->max);
		fprintf(out, "  %-30s ", lhs);
		print_wrapped(out, text, 33, 100);
	}
	fprintf(out,
		"\nMemory, as resident memory shows it (BPF rings and the pcap buffer count twice: the\n"
		"  kernel maps them twice), is at most about\n"
		"    8 MiB + reorder_mb + max_flows x 136 B\n"
		"    + thread_count x (2 x ring_mb + (queue_size + 6) x max(batch_bytes, 16.3 KiB))\n"
		"  (pcap: ring_mb in place of 2 x ring_mb, plus 2 x pcap_buffer_mb).  What is not given\n"
		"  is sized to fit --max_mem_mb: the largest ring up to 4 MiB that leaves the queues\n"
		"  their full length, else the longest queues that fit (8 at least); an automatic\n"
		"  fallback to pcap shrinks its buffer to what is left.  Start-up fails, naming the\n"
		"  flags to lower, if the settings given cannot fit.\n"
		"\nPasswords: MRTE_RABBITMQ_PASSWORD and MRTE_MYSQL_PASSWORD are read from the\n"
		"environment when neither the flag nor the _file flag is given.\n"
		"\nSignals: SIGINT/SIGTERM flush and exit 0; SIGUSR1 re-sends default databases.\n"
		"Exit status: 0 clean stop, 1 runtime failure, 2 bad command line.\n");
}

/* ---- parse ---------------------------------------------------------------- */

/* The largest message a publisher builds: --batch_bytes, or LOCAL_IP and one
 * unit of the largest record (a chunk plus a held 8-byte header, or a
 * COM_INIT_DB with a 256-byte database name). */
uint64_t config_message_max(const struct mrte_config *cfg)
{
	uint64_t unit = 4 + 14 + MRTE_CHUNK + 8 + 256;

	return cfg->batch_bytes > unit ? cfg->batch_bytes : unit;
}

static uint64_t ring_bytes_of(uint32_t ring_mb)
{
	uint64_t mb = 1;

	while (mb < ring_mb)
		mb <<= 1;
	return mb << 20;
}

/* Worst case, as resident memory shows it: every ring and queue full,
 * every flow tracked, the reorder budget spent, plus what the process needs
 * to exist at all.  The kernel maps a BPF ring's pages twice (so a record
 * never wraps) and RSS counts both; libpcap's capture buffer also shows
 * twice its size.  The pcap path has queues of the ring size instead of
 * rings, plus the capture buffer (`pcap_mb`: 0 for the BPF path). */
static uint64_t fixed_bytes(const struct mrte_config *cfg, uint32_t pcap_mb)
{
	return MEM_BASE_BYTES + ((uint64_t)cfg->reorder_mb << 20) +
	       (uint64_t)cfg->max_flows * MEM_PER_FLOW_BYTES + 2 * ((uint64_t)pcap_mb << 20);
}

static uint64_t thread_bytes(const struct mrte_config *cfg, uint64_t ring, uint32_t queue,
			     bool pcap)
{
	return (pcap ? ring : 2 * ring) + ((uint64_t)queue + 6) * config_message_max(cfg);
}

static bool pcap_layout(const struct mrte_config *cfg)
{
	return cfg->capture == CAPTURE_PCAP;
}

uint64_t config_memory_bound(const struct mrte_config *cfg)
{
	bool pcap = pcap_layout(cfg);

	return fixed_bytes(cfg, pcap ? cfg->pcap_buffer_mb : 0) +
	       cfg->thread_count *
		       thread_bytes(cfg, ring_bytes_of(cfg->ring_mb ? cfg->ring_mb : 1), cfg->queue_size,
				    pcap);
}

uint32_t config_pcap_buffer_fit(const struct mrte_config *cfg)
{
	uint64_t budget = (uint64_t)cfg->max_mem_mb << 20;
	uint64_t used = fixed_bytes(cfg, 0) +
			cfg->thread_count * thread_bytes(cfg, ring_bytes_of(cfg->ring_mb),
							 cfg->queue_size, true);
	uint64_t room_mb = budget > used ? ((budget - used) / 2) >> 20 : 0;

	if (room_mb < 1)
		room_mb = 1;
	return room_mb < cfg->pcap_buffer_mb ? (uint32_t)room_mb : cfg->pcap_buffer_mb;
}

/* Size what was not given to fit --max_mem_mb: the largest ring (4, 2 or
 * 1 MiB) that leaves the publisher queues their full length, else the ring
 * that leaves the longest queue (at least 8 messages). */
static int fit_memory(struct mrte_config *cfg, char *err, size_t errlen)
{
	uint64_t budget = (uint64_t)cfg->max_mem_mb << 20, msg = config_message_max(cfg);
	bool pcap = pcap_layout(cfg);
	uint64_t fixed = fixed_bytes(cfg, pcap ? cfg->pcap_buffer_mb : 0);
	uint32_t want = cfg->queue_size, chosen_ring = 0, chosen_queue = 0;

	for (uint32_t mb = 4; mb >= 1; mb /= 2) {
		uint32_t ring_mb = cfg->ring_mb ? cfg->ring_mb : mb;
		uint64_t ring = ring_bytes_of(ring_mb);
		uint64_t per_thread_room = budget > fixed ? (budget - fixed) / cfg->thread_count : 0;
		uint64_t ring_cost = pcap ? ring : 2 * ring;
		uint64_t qfit = per_thread_room > ring_cost ? (per_thread_room - ring_cost) / msg : 0;

		qfit = qfit > 6 ? qfit - 6 : 0;
		uint32_t q = cfg->queue_size_given ? want : (uint32_t)(qfit < want ? qfit : want);

		if (q <= qfit && q >= (cfg->queue_size_given ? 1 : 8) &&
		    (!chosen_ring || q > chosen_queue)) {
			chosen_ring = ring_mb;
			chosen_queue = q;
		}
		/* The queue at its full length: the largest such ring wins. */
		if (chosen_ring && chosen_queue >= want)
			break;
		if (cfg->ring_mb)
			break; /* only the given size to try */
	}
	if (!chosen_ring) {
		cfg->ring_mb = cfg->ring_mb ? cfg->ring_mb : 1;
		uint64_t need = config_memory_bound(cfg);

		return errf(err, errlen,
			    "--max_mem_mb: these settings may need %llu MiB, more than %u MiB; lower "
			    "--ring_mb/--queue_size/--batch_bytes/--max_flows/--reorder_mb%s or raise "
			    "--max_mem_mb",
			    (unsigned long long)((need + (1 << 20) - 1) >> 20), cfg->max_mem_mb,
			    pcap ? "/--pcap_buffer_mb" : "");
	}
	cfg->ring_mb = chosen_ring;
	cfg->queue_size = chosen_queue;
	return 0;
}

static int config_validate(struct mrte_config *cfg, char *err, size_t errlen)
{
	if (cfg->read_file) {
		if (!cfg->local_ip)
			return errf(err, errlen, "--read_file: --local_ip is required with a file");
		if (cfg->capture == CAPTURE_XDP || cfg->capture == CAPTURE_TC)
			return errf(err, errlen, "--read_file: a file is read with --capture=pcap");
		cfg->capture = CAPTURE_PCAP;
	} else if (!cfg->interface || !*cfg->interface) {
		return errf(err, errlen, "--interface: required (or --read_file)");
	}
	if (cfg->interface && strlen(cfg->interface) >= 16)
		return errf(err, errlen, "--interface: '%s' is too long for an interface name",
			    cfg->interface);
	if (cfg->sink == SINK_FILE && (!cfg->output || !*cfg->output))
		return errf(err, errlen, "--sink: file needs --output=FILE");
	if (cfg->output && cfg->sink != SINK_FILE)
		return errf(err, errlen, "--output: only with --sink=file");
	if (!*cfg->rabbitmq_exchange_name && cfg->sink == SINK_AMQP)
		log_warn("--rabbitmq_exchange_name is empty: publishing to the default exchange");
	return fit_memory(cfg, err, errlen);
}

enum config_result config_parse(struct mrte_config *cfg, int argc, char **argv, FILE *out,
				char *err, size_t errlen)
{
	struct option lopts[N_OPTS + 1];
	bool want_help = false, want_version = false;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_OPTS; i++) {
		if (opts[i].def && set_value(cfg, &opts[i], opts[i].def, true, err, errlen))
			return CONFIG_ERROR;
		lopts[i] = (struct option){opts[i].name,
					   opts[i].unit ? required_argument : no_argument, NULL,
					   (int)(i + 256)};
	}
	memset(&lopts[N_OPTS], 0, sizeof(lopts[N_OPTS]));

	optind = 1;
	opterr = 0;
	for (;;) {
		int longidx = -1;
		int c = getopt_long_only(argc, argv, "h", lopts, &longidx);

		if (c == -1)
			break;
		if (c == 'h') {
			want_help = true;
			continue;
		}
		if (c == '?' || c == ':') {
			const char *bad = argv[optind - 1];

			/* getopt reports a known option both when its value is
			 * missing and when one was given to a flag that takes none. */
			if (optopt >= 256 && optopt < (int)(N_OPTS + 256))
				errf(err, errlen, "--%s: %s", opts[optopt - 256].name,
				     opts[optopt - 256].unit ? "needs a value" : "takes no value");
			else
				errf(err, errlen, "unknown option '%s' (see --help)", bad);
			return CONFIG_ERROR;
		}
		const struct opt_def *o = &opts[c - 256];

		if (o->type == T_HELP)
			want_help = true;
		else if (o->type == T_VERSION)
			want_version = true;
		else if (set_value(cfg, o, optarg, false, err, errlen))
			return CONFIG_ERROR;
		if (o->off == OFF(queue_size) && o->type == T_UINT)
			cfg->queue_size_given = 1;
	}
	if (optind < argc) {
		errf(err, errlen, "unexpected argument '%s' (flags look like --name=value)",
		     argv[optind]);
		return CONFIG_ERROR;
	}
	if (want_help) {
		config_print_help(out, "mrte-collector");
		return CONFIG_EXIT_OK;
	}
	if (want_version) {
		fprintf(out, "mrte-collector %s\n", MRTE_VERSION);
		return CONFIG_EXIT_OK;
	}

	if (cfg->rabbitmq_password)
		hide_arg_value(argc, argv, "rabbitmq_password");
	if (cfg->mysql_password)
		hide_arg_value(argc, argv, "mysql_password");
	if (resolve_password(&cfg->rabbitmq_password, cfg->rabbitmq_password_file,
			     "rabbitmq_password_file", "MRTE_RABBITMQ_PASSWORD", "guest", err,
			     errlen) ||
	    resolve_password(&cfg->mysql_password, cfg->mysql_password_file,
			     "mysql_password_file", "MRTE_MYSQL_PASSWORD", "", err, errlen))
		return CONFIG_ERROR;
	return config_validate(cfg, err, errlen) ? CONFIG_ERROR : CONFIG_OK;
}

void config_free(struct mrte_config *cfg)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].type == T_STR)
			free(*(char **)((char *)cfg + opts[i].off));
	memset(cfg, 0, sizeof(*cfg));
}
