/* mrte-dump -- read MRTE messages the way MRTE-Player does and print what it
 * would replay.
 *
 * Messages come from a RabbitMQ queue (consumed until it has been idle for
 * --idle_ms) or from a file of 4-byte-length-prefixed bodies (the agent's
 * --sink=file).  Each body is checked with the player's rules (wire_decode);
 * units are grouped by client SRC_IP:SRC_PORT and MySQL packets rebuilt the
 * player's way: a unit starts a packet, and while that packet is shorter
 * than its header says, following units of the same client are joined to
 * it.  One line per rebuilt packet:
 *
 *   text:  10.0.0.5:40122  #0 QUERY    SELECT 1
 *   tsv:   10.0.0.5:40122<TAB>0<TAB>QUERY<TAB>53454c4543542031   (payload after the header, hex)
 *
 * A summary goes to stderr.  The exit status is 1 if any body was rejected
 * or any unit broke the packet structure, so tests can rely on it.
 *
 * It can also set up and tear down what a test needs on the broker:
 * --declare (a fanout exchange and a queue bound to it) and --delete.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire.h"

/* ---- options ----------------------------------------------------------------- */

struct opts {
	const char *host, *user, *password, *vhost, *exchange, *queue, *file, *format;
	int port;
	int idle_ms;
	long max_messages;
	bool declare, delete_, latency, quiet;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: mrte-dump --queue=NAME [broker options] [--idle_ms=MS] [--format=text|tsv]\n"
		"       mrte-dump --file=BODIES [--format=text|tsv]\n"
		"       mrte-dump --declare --queue=NAME [--exchange=mrte]   (fanout exchange + bound queue)\n"
		"       mrte-dump --delete --queue=NAME                      (delete the queue)\n\n"
		"Decode MRTE messages as MRTE-Player would and print one line per client MySQL packet.\n\n"
		"  --rabbitmq_host=HOST     [127.0.0.1]      --rabbitmq_port=PORT [5672]\n"
		"  --rabbitmq_user=USER     [guest]          --rabbitmq_password=PW [guest]\n"
		"  --rabbitmq_vhost=VHOST   [/]              --exchange=NAME [mrte]\n"
		"  --queue=NAME             queue to consume (messages are removed)\n"
		"  --file=PATH              read length-prefixed bodies from PATH instead ('-' = stdin)\n"
		"  --idle_ms=MS             stop after the queue has been empty this long [2000]\n"
		"  --max_messages=N         stop after N messages\n"
		"  --format=text|tsv        output format [text]\n"
		"  --latency                report capture-to-consumer latency of loadgen statements\n"
		"  --quiet                  print only the summary\n"
		"Exit status: 0 all messages valid, 1 rejected bodies or broken packets, 2 usage or "
		"connection error.\n");
}

/* ---- sessions and packet reassembly ------------------------------------------------ */

struct session {
	struct session *next;
	uint32_t saddr;
	uint16_t sport;
	uint64_t packets;
	uint8_t *buf; /* a packet being joined */
	size_t len, want, cap;
};

struct dump {
	struct opts o;
	struct session *tab[4096];
	uint64_t messages, units, packets, sessions, rejected, broken, trailing;
	uint64_t kinds[9];
	/* latency, from loadgen's t=<CLOCK_MONOTONIC ns> stamps */
	double *lat;
	size_t nlat, caplat;
	uint64_t now_ns;
};

enum kind { K_HANDSHAKE, K_AUTH, K_QUERY, K_INIT_DB, K_QUIT, K_PING, K_FIELD_LIST,
	    K_STMT_PREPARE, K_OTHER };
static const char *const kind_names[] = {"HANDSHAKE", "AUTH", "QUERY", "INIT_DB", "QUIT",
					 "PING", "FIELD_LIST", "STMT_PREPARE", "OTHER"};

static struct session *session_get(struct dump *d, uint32_t saddr, uint16_t sport)
{
	size_t h = ((saddr * 2654435761u) ^ sport) % 4096;
	struct session *s;

	for (s = d->tab[h]; s; s = s->next)
		if (s->saddr == saddr && s->sport == sport)
			return s;
	s = calloc(1, sizeof(*s));
	if (!s) {
		perror("mrte-dump");
		exit(2);
	}
	s->saddr = saddr;
	s->sport = sport;
	s->next = d->tab[h];
	d->tab[h] = s;
	d->sessions++;
	return s;
}

static enum kind classify(const struct session *s, uint8_t seq, const uint8_t *payload, size_t n)
{
	if (seq != 0)
		return s->packets == 0 && seq <= 10 ? K_HANDSHAKE : K_AUTH;
	if (n == 0)
		return K_OTHER;
	switch (payload[0]) {
	case 0x01: return K_QUIT;
	case 0x02: return K_INIT_DB;
	case 0x03: return K_QUERY;
	case 0x04: return K_FIELD_LIST;
	case 0x0e: return K_PING;
	case 0x16: return K_STMT_PREPARE;
	default: return K_OTHER;
	}
}

static void note_latency(struct dump *d, const uint8_t *p, size_t n)
{
	const char *t = memmem(p, n, " t=", 3);

	if (!t)
		return;
	unsigned long long stamp = strtoull(t + 3, NULL, 10);

	if (!stamp || stamp > d->now_ns)
		return;
	if (d->nlat == d->caplat) {
		d->caplat = d->caplat ? d->caplat * 2 : 65536;
		d->lat = realloc(d->lat, d->caplat * sizeof(*d->lat));
		if (!d->lat) {
			perror("mrte-dump");
			exit(2);
		}
	}
	d->lat[d->nlat++] = (double)(d->now_ns - stamp) / 1e6;
}

static void print_packet(struct dump *d, struct session *s, const uint8_t *pkt, size_t len)
{
	uint8_t seq = pkt[3];
	const uint8_t *payload = pkt + 4;
	size_t n = len - 4;
	enum kind k = classify(s, seq, payload, n);
	char addr[INET_ADDRSTRLEN];

	d->packets++;
	d->kinds[k]++;
	s->packets++;
	if (d->o.latency && k == K_QUERY)
		note_latency(d, payload, n);
	if (!d->o.quiet) {
		inet_ntop(AF_INET, &s->saddr, addr, sizeof(addr));
		if (!strcmp(d->o.format, "tsv")) {
			printf("%s:%u\t%u\t%s\t", addr, s->sport, seq, kind_names[k]);
			for (size_t i = 0; i < n; i++)
				printf("%02x", payload[i]);
			putchar('\n');
		} else {
			size_t skip = (k == K_QUERY || k == K_INIT_DB) ? 1 : 0;

			printf("%s:%u  #%u %-12s ", addr, s->sport, seq, kind_names[k]);
			for (size_t i = skip; i < n && i < 400; i++)
				putchar(payload[i] >= 32 && payload[i] < 127 ? payload[i] : '.');
			if (n > 400)
				printf("... (%zu bytes)", n);
			putchar('\n');
		}
	}
	if (k == K_QUIT)
		s->packets = 0; /* the address may be reused by a new connection */
}

static uint32_t le24(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
}

/* The player's rule: a unit starts a packet unless one is still incomplete. */
static int on_unit(void *ctx, const struct wire_unit *u)
{
	struct dump *d = ctx;
	struct session *s = session_get(d, u->saddr, u->sport);

	d->units++;
	if (s->want) {
		if (s->len + u->len > s->cap) {
			s->cap = s->len + u->len;
			s->buf = realloc(s->buf, s->cap);
			if (!s->buf) {
				perror("mrte-dump");
				exit(2);
			}
		}
		memcpy(s->buf + s->len, u->data, u->len);
		s->len += u->len;
		if (s->len < s->want)
			return 0;
		if (s->len > s->want)
			d->trailing++; /* the next packet's bytes were glued on */
		print_packet(d, s, s->buf, s->want);
		s->want = 0;
		s->len = 0;
		return 0;
	}
	if (u->len < 4) {
		d->broken++; /* cannot even hold a header */
		return 0;
	}
	size_t whole = 4 + (size_t)le24(u->data);

	if (u->len >= whole) {
		if (u->len > whole)
			d->trailing++;
		print_packet(d, s, u->data, whole);
		return 0;
	}
	if (whole > s->cap) {
		s->cap = whole;
		s->buf = realloc(s->buf, s->cap);
		if (!s->buf) {
			perror("mrte-dump");
			exit(2);
		}
	}
	memcpy(s->buf, u->data, u->len);
	s->len = u->len;
	s->want = whole;
	return 0;
}

static void on_body(struct dump *d, const uint8_t *body, size_t len)
{
	struct timespec ts;
	size_t units;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	d->now_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	d->messages++;
	enum wire_status st = wire_decode(body, len, NULL, on_unit, d, &units);

	if (st != WIRE_OK) {
		d->rejected++;
		fprintf(stderr, "mrte-dump: message %llu rejected after %zu unit(s): %s\n",
			(unsigned long long)d->messages, units, wire_status_str(st));
	}
}

/* ---- inputs ------------------------------------------------------------------------- */

static int read_file(struct dump *d)
{
	FILE *f = strcmp(d->o.file, "-") ? fopen(d->o.file, "rb") : stdin;
	uint8_t hdr[4];
	uint8_t *body = NULL;
	size_t cap = 0;

	if (!f) {
		fprintf(stderr, "mrte-dump: %s: %s\n", d->o.file, strerror(errno));
		return 2;
	}
	while (fread(hdr, 1, 4, f) == 4) {
		size_t len = (size_t)le24(hdr) | ((size_t)hdr[3] << 24);

		if (len > cap) {
			cap = len;
			body = realloc(body, cap);
			if (!body) {
				perror("mrte-dump");
				return 2;
			}
		}
		if (fread(body, 1, len, f) != len) {
			fprintf(stderr, "mrte-dump: %s: truncated record\n", d->o.file);
			d->rejected++;
			break;
		}
		on_body(d, body, len);
		if (d->o.max_messages && (long)d->messages >= d->o.max_messages)
			break;
	}
	free(body);
	if (f != stdin)
		fclose(f);
	return 0;
}

static bool rpc_ok(amqp_connection_state_t c, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(c);

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return true;
	if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
		amqp_channel_close_t *m = r.reply.decoded;

		fprintf(stderr, "mrte-dump: %s: %u %.*s\n", what, m->reply_code,
			(int)m->reply_text.len, (const char *)m->reply_text.bytes);
	} else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
		fprintf(stderr, "mrte-dump: %s: %s\n", what, amqp_error_string2(r.library_error));
	} else {
		fprintf(stderr, "mrte-dump: %s failed\n", what);
	}
	return false;
}

static amqp_connection_state_t connect_broker(const struct opts *o)
{
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	struct timeval tv = {.tv_sec = 5};

	if (!s || amqp_socket_open_noblock(s, o->host, o->port, &tv) != AMQP_STATUS_OK) {
		fprintf(stderr, "mrte-dump: cannot connect to RabbitMQ at %s:%d\n", o->host, o->port);
		amqp_destroy_connection(c);
		return NULL;
	}
	amqp_rpc_reply_t r = amqp_login(c, o->vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, o->user,
					o->password);

	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "mrte-dump: login to %s:%d as %s failed\n", o->host, o->port, o->user);
		amqp_destroy_connection(c);
		return NULL;
	}
	amqp_channel_open(c, 1);
	if (!rpc_ok(c, "channel.open")) {
		amqp_destroy_connection(c);
		return NULL;
	}
	return c;
}

static void disconnect(amqp_connection_state_t c)
{
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
}

static int setup_broker(const struct opts *o)
{
	amqp_connection_state_t c = connect_broker(o);
	bool ok = c != NULL;

	if (ok && o->declare) {
		amqp_exchange_declare(c, 1, amqp_cstring_bytes(o->exchange), amqp_cstring_bytes("fanout"),
				      0, 0, 0, 0, amqp_empty_table);
		ok = rpc_ok(c, "exchange.declare");
		if (ok) {
			amqp_queue_declare(c, 1, amqp_cstring_bytes(o->queue), 0, 0, 0, 0,
					   amqp_empty_table);
			ok = rpc_ok(c, "queue.declare");
		}
		if (ok) {
			amqp_queue_bind(c, 1, amqp_cstring_bytes(o->queue), amqp_cstring_bytes(o->exchange),
					amqp_empty_bytes, amqp_empty_table);
			ok = rpc_ok(c, "queue.bind");
		}
	}
	if (ok && o->delete_) {
		amqp_queue_delete(c, 1, amqp_cstring_bytes(o->queue), 0, 0);
		ok = rpc_ok(c, "queue.delete");
	}
	if (c)
		disconnect(c);
	return ok ? 0 : 2;
}

static int consume_queue(struct dump *d)
{
	amqp_connection_state_t c = connect_broker(&d->o);

	if (!c)
		return 2;
	amqp_basic_qos(c, 1, 0, 1000, 0);
	amqp_basic_consume(c, 1, amqp_cstring_bytes(d->o.queue), amqp_empty_bytes, 0, 1, 0,
			   amqp_empty_table);
	if (!rpc_ok(c, "basic.consume")) {
		amqp_destroy_connection(c);
		return 2;
	}
	for (;;) {
		struct timeval tv = {.tv_sec = d->o.idle_ms / 1000, .tv_usec = (d->o.idle_ms % 1000) * 1000};
		amqp_envelope_t env;

		amqp_maybe_release_buffers(c);
		amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);

		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			break;
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			fprintf(stderr, "mrte-dump: consuming from %s failed\n", d->o.queue);
			amqp_destroy_connection(c);
			return 2;
		}
		on_body(d, env.message.body.bytes, env.message.body.len);
		amqp_destroy_envelope(&env);
		if (d->o.max_messages && (long)d->messages >= d->o.max_messages)
			break;
	}
	disconnect(c);
	return 0;
}

/* ---- summary ------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void summary(struct dump *d)
{
	uint64_t incomplete = 0;

	for (size_t i = 0; i < 4096; i++)
		for (struct session *s = d->tab[i]; s; s = s->next)
			incomplete += s->want != 0;
	fprintf(stderr,
		"# mrte-dump: messages=%llu units=%llu packets=%llu sessions=%llu rejected=%llu "
		"broken=%llu trailing=%llu incomplete=%llu",
		(unsigned long long)d->messages, (unsigned long long)d->units,
		(unsigned long long)d->packets, (unsigned long long)d->sessions,
		(unsigned long long)d->rejected, (unsigned long long)d->broken,
		(unsigned long long)d->trailing, (unsigned long long)incomplete);
	for (int k = 0; k < 9; k++)
		fprintf(stderr, " %s=%llu", kind_names[k], (unsigned long long)d->kinds[k]);
	fputc('\n', stderr);
	if (d->o.latency && d->nlat) {
		qsort(d->lat, d->nlat, sizeof(*d->lat), cmp_double);
		fprintf(stderr, "# latency_ms: n=%zu p50=%.3f p90=%.3f p99=%.3f max=%.3f\n", d->nlat,
			d->lat[d->nlat / 2], d->lat[d->nlat * 9 / 10], d->lat[d->nlat * 99 / 100],
			d->lat[d->nlat - 1]);
	}
}

int main(int argc, char **argv)
{
	static struct dump d;
	static const struct option lo[] = {
		{"rabbitmq_host", required_argument, NULL, 'H'},
		{"rabbitmq_port", required_argument, NULL, 'P'},
		{"rabbitmq_user", required_argument, NULL, 'u'},
		{"rabbitmq_password", required_argument, NULL, 'p'},
		{"rabbitmq_vhost", required_argument, NULL, 'v'},
		{"exchange", required_argument, NULL, 'e'},
		{"queue", required_argument, NULL, 'q'},
		{"file", required_argument, NULL, 'f'},
		{"idle_ms", required_argument, NULL, 'i'},
		{"max_messages", required_argument, NULL, 'm'},
		{"format", required_argument, NULL, 'F'},
		{"declare", no_argument, NULL, 'D'},
		{"delete", no_argument, NULL, 'X'},
		{"latency", no_argument, NULL, 'L'},
		{"quiet", no_argument, NULL, 'Q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct opts *o = &d.o;
	int c, rc;

	*o = (struct opts){.host = "127.0.0.1", .port = 5672, .user = "guest", .password = "guest",
			   .vhost = "/", .exchange = "mrte", .format = "text", .idle_ms = 2000};
	while ((c = getopt_long_only(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'H': o->host = optarg; break;
		case 'P': o->port = atoi(optarg); break;
		case 'u': o->user = optarg; break;
		case 'p': o->password = optarg; break;
		case 'v': o->vhost = optarg; break;
		case 'e': o->exchange = optarg; break;
		case 'q': o->queue = optarg; break;
		case 'f': o->file = optarg; break;
		case 'i': o->idle_ms = atoi(optarg); break;
		case 'm': o->max_messages = atol(optarg); break;
		case 'F': o->format = optarg; break;
		case 'D': o->declare = true; break;
		case 'X': o->delete_ = true; break;
		case 'L': o->latency = true; break;
		case 'Q': o->quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || (strcmp(o->format, "text") && strcmp(o->format, "tsv")) ||
	    (!o->queue && !o->file) || o->idle_ms < 0) {
		usage(stderr);
		return 2;
	}
	if (o->declare || o->delete_)
		return o->queue ? setup_broker(o) : 2;
	rc = o->file ? read_file(&d) : consume_queue(&d);
	fflush(stdout);
	summary(&d);
	if (rc)
		return rc;
	return d.rejected || d.broken || d.trailing ? 1 : 0;
}
