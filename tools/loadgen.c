/*
 * loadgen.c - benchmark traffic tools for mrte-collector.
 *
 * One self-contained binary with three modes (see `loadgen MODE --help`):
 *
 *   sink     A TCP server standing in for mysqld. It accepts any number of
 *            connections and reads+discards everything; it never answers,
 *            so the only MySQL traffic on the wire is client->server, which
 *            is exactly what the collector captures. Single thread, epoll,
 *            non-blocking sockets, large SO_RCVBUF, and recv(MSG_TRUNC) so
 *            the kernel discards data without copying it to user space.
 *            On SIGINT/SIGTERM it drains what is still queued and prints
 *            {"connections":N,"bytes":B}.
 *
 *   client   Opens N TCP connections (TCP_NODELAY). Each connection sends
 *            one HandshakeResponse41 (sequence id 1), then COM_QUERY packets
 *            of exactly --size bytes on the wire (4-byte header included),
 *            then COM_QUIT, then closes. Every query carries a stamp
 *            (the backslashes only keep this C comment valid):
 *                SELECT /\*lg c=<conn> n=<stmt-no> t=<CLOCK_MONOTONIC ns>*\/ 'xxx...'
 *            c is the global connection index (0..N-1), n counts from 0 on
 *            each connection, t is taken when the packet is built (just
 *            before send()).
 *
 *   frames   Crafts Ethernet/IPv4/TCP frames carrying one COM_QUERY each
 *            (same stamp, c = flow index) over F flows and injects them with
 *            an AF_PACKET socket + sendmmsg + PACKET_QDISC_BYPASS. This
 *            measures per-frame capture cost independent of TCP coalescing.
 *            Refuses any interface whose driver is not veth or dummy.
 *
 * Client design
 *   - Connections are connected by the main thread (non-blocking connect,
 *     5 s timeout), then split into contiguous slices over T threads. Each
 *     thread sends its handshakes, then all threads start the statement
 *     phase together (barrier); it ends at start+duration. "seconds" covers
 *     the statement phase only (start .. last pending statement written).
 *   - Each connection owns an output buffer holding the packets of the
 *     current send() (handshake, K queries, or quit) and a list of packet end
 *     offsets. send() results advance a write offset; a packet is counted
 *     only when its last byte has been accepted by the kernel, so short
 *     writes and EAGAIN never distort the counts. A connection with unsent
 *     bytes gets no new packets until it is flushed; at the deadline pending
 *     packets are finished (bounded wait) before COM_QUIT is sent.
 *   - "bytes" is every byte send() accepted, so it must equal the sink's
 *     byte count: statements*size + handshakes*hs_size + quits*5.
 *   - Batching: --per-send K puts K whole packets in one send() (default 1,
 *     i.e. no batching). The summary always states the batching used.
 *   - Pacing (--rate): per-thread token bucket on CLOCK_MONOTONIC; the
 *     thread's share of the rate is proportional to its connection count.
 *     Tokens are spent K at a time, round-robin over the thread's
 *     connections. The bucket holds at most max(K, --burst-ms of tokens;
 *     default 10 ms), so a late wake-up is caught up with a short burst but
 *     a long stall is not "repaid" forever: the tokens that overflowed are
 *     reported as "missed_slots" and the measured rate shows the shortfall.
 *     Waiting is done by SLEEPING (ppoll with the thread's timer slack set
 *     to 1 ns): CPU-friendly, so the generator does not steal cores from the
 *     agent under test; wake-ups are ~10-60 us late, which the bucket
 *     absorbs. --spin busy-waits instead (precise spacing, burns a core per
 *     thread). --flat-out sends as fast as the sockets accept.
 *
 * Frames design
 *   - --size is the MySQL packet size (TCP payload); frame = 54 + size bytes
 *     and 40 + size must fit the interface MTU.
 *   - Frame i goes to flow i % F; flow f uses source port base+f, its own
 *     TCP sequence number (advanced by the payload size, flags PSH|ACK) and
 *     its own statement counter. IPv4 header checksum is always valid; the
 *     TCP checksum is COMPUTED by default (--no-tcp-csum leaves it 0).
 *   - Frames are built in batches of up to --batch and sent with sendmmsg;
 *     partial batches are resumed so per-flow sequence numbers stay in order.
 *     With --rate the same token bucket limits each batch, so low rates are
 *     smooth and high rates get full batches.
 *   - Note: a veth never reports a drop to the sender; frames the peer could
 *     not queue show up in the sending veth's tx_dropped, which is reported.
 *
 * Every loop ends: client on --duration (+ bounded drain), frames on --count
 * (+ a no-progress timeout), sink on a signal or --max-seconds.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -std=gnu11 -o loadgen tools/loadgen.c -lpthread
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, ppoll, sendmmsg */
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif

/* ---- common helpers ---- */

#define LG_NS_PER_SEC 1000000000ULL
#define LG_MAX_SIZE (16u * 1024u * 1024u)   /* payload stays < 0xffffff */
#define LG_MAX_STMT_NO 999999999999ULL      /* stamp n= has <= 12 digits */
#define LG_QUIT_SIZE 5
#define LG_PLUGIN "mysql_native_password"

static const char *lg_mode = "loadgen";

static void lg_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", lg_mode);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t lg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * LG_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static struct timespec lg_ts_from_ns(uint64_t ns)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ns / LG_NS_PER_SEC);
	ts.tv_nsec = (long)(ns % LG_NS_PER_SEC);
	return ts;
}

static uint64_t lg_parse_u64(const char *s, const char *what, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		lg_die("bad %s '%s' (expected an integer in %" PRIu64 "..%" PRIu64 ")",
		       what, s, min, max);
	return (uint64_t)v;
}

static double lg_parse_double(const char *s, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 1e12)
		lg_die("bad %s '%s' (expected a positive number)", what, s);
	return v;
}

static void lg_parse_ip(const char *s, struct in_addr *out, const char *what)
{
	if (inet_pton(AF_INET, s, out) != 1)
		lg_die("bad %s '%s' (expected a dotted IPv4 address)", what, s);
}

/* "IP:PORT" -> sockaddr_in */
static void lg_parse_hostport(const char *s, struct sockaddr_in *sa, const char *what)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	size_t hl = colon ? (size_t)(colon - s) : 0;

	if (hl == 0 || hl >= sizeof(host))
		lg_die("bad %s '%s' (expected IP:PORT)", what, s);
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	lg_parse_ip(host, &sa->sin_addr, what);
	sa->sin_port = htons((uint16_t)lg_parse_u64(colon + 1, "port", 1, 65535));
}

static void lg_parse_mac(const char *s, uint8_t mac[6], const char *what)
{
	unsigned int b[6];
	char tail;
	int i;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4],
		   &b[5], &tail) != 6)
		lg_die("bad %s '%s' (expected aa:bb:cc:dd:ee:ff)", what, s);
	for (i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
}

/* Decimal digits of v, written without a terminator; returns the length. */
static size_t lg_u64_dec(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

static size_t lg_digits(uint64_t v)
{
	char tmp[20];

	return lg_u64_dec(tmp, v);
}

static void lg_raise_nofile(uint64_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static volatile sig_atomic_t lg_stop;

static void lg_on_signal(int sig)
{
	(void)sig;
	lg_stop = 1;
}

static void lg_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = lg_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Token bucket shared by client threads and the frame sender. */
struct lg_bucket {
	double rate;     /* tokens per second, 0 = unlimited */
	double tokens;
	double cap;
	double missed;   /* tokens discarded because the bucket was full */
	uint64_t last_ns;
};

/* The bucket holds at most burst_ms worth of tokens (and at least min_cap). */
static void lg_bucket_init(struct lg_bucket *b, double rate, double burst_ms,
			   double min_cap, uint64_t now)
{
	b->rate = rate;
	b->cap = rate * burst_ms / 1000.0;
	if (b->cap < min_cap)
		b->cap = min_cap;
	b->tokens = min_cap;            /* first send goes out immediately */
	b->missed = 0;
	b->last_ns = now;
}

static void lg_bucket_refill(struct lg_bucket *b, uint64_t now)
{
	if (now > b->last_ns) {
		b->tokens += (double)(now - b->last_ns) * b->rate / 1e9;
		b->last_ns = now;
	}
	if (b->tokens > b->cap) {
		b->missed += b->tokens - b->cap;
		b->tokens = b->cap;
	}
}

/* Nanoseconds until the bucket holds `want` tokens. */
static uint64_t lg_bucket_wait_ns(const struct lg_bucket *b, double want)
{
	if (b->tokens >= want)
		return 0;
	return (uint64_t)((want - b->tokens) * 1e9 / b->rate) + 1;
}

/* ---- MySQL packets ---- */

static void lg_put_le24(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v & 0xff);
	p[1] = (unsigned char)((v >> 8) & 0xff);
	p[2] = (unsigned char)((v >> 16) & 0xff);
}

static void lg_put_le32(unsigned char *p, uint32_t v)
{
	lg_put_le24(p, v);
	p[3] = (unsigned char)((v >> 24) & 0xff);
}

/*
 * Smallest --size that fits the stamp for connection/flow ids < nids:
 * header(4) + 0x03 + "SELECT /\*lg c=" + c + " n=" + 12 digits + " t=" +
 * 20 digits + "*\/ '" + "'" (zero x's of padding).
 */
static size_t lg_query_min_size(uint64_t nids)
{
	return 5 + 14 + lg_digits(nids ? nids - 1 : 0) + 3 + 12 + 3 + 20 + 4 + 1;
}

/* Write one COM_QUERY packet of exactly `size` bytes (caller checked min). */
static void lg_put_query(unsigned char *p, size_t size, uint64_t c, uint64_t n, uint64_t t)
{
	char *q = (char *)p + 5;
	size_t used;

	lg_put_le24(p, (uint32_t)(size - 4));
	p[3] = 0;                       /* sequence id */
	p[4] = 0x03;                    /* COM_QUERY */
	memcpy(q, "SELECT /*lg c=", 14);
	q += 14;
	q += lg_u64_dec(q, c);
	memcpy(q, " n=", 3);
	q += 3;
	q += lg_u64_dec(q, n);
	memcpy(q, " t=", 3);
	q += 3;
	q += lg_u64_dec(q, t);
	memcpy(q, "*/ '", 4);
	q += 4;
	used = (size_t)((unsigned char *)q - p);
	memset(q, 'x', size - 1 - used);
	p[size - 1] = '\'';
}

static size_t lg_handshake_size(const char *user, const char *db)
{
	return 4 + 4 + 4 + 1 + 23 + strlen(user) + 1 + 1 + strlen(db) + 1 +
	       sizeof(LG_PLUGIN);
}

/* HandshakeResponse41, sequence id 1, empty auth response. */
static size_t lg_put_handshake(unsigned char *p, const char *user, const char *db)
{
	const uint32_t caps = 0x00000200u    /* CLIENT_PROTOCOL_41 */
			    | 0x00008000u    /* CLIENT_SECURE_CONNECTION */
			    | 0x00000008u    /* CLIENT_CONNECT_WITH_DB */
			    | 0x00080000u;   /* CLIENT_PLUGIN_AUTH */
	size_t size = lg_handshake_size(user, db), o = 4;

	lg_put_le24(p, (uint32_t)(size - 4));
	p[3] = 1;
	lg_put_le32(p + o, caps);
	o += 4;
	lg_put_le32(p + o, 16u * 1024u * 1024u);   /* max packet size */
	o += 4;
	p[o++] = 33;                               /* utf8_general_ci */
	memset(p + o, 0, 23);
	o += 23;
	memcpy(p + o, user, strlen(user) + 1);
	o += strlen(user) + 1;
	p[o++] = 0;                                /* auth response length */
	memcpy(p + o, db, strlen(db) + 1);
	o += strlen(db) + 1;
	memcpy(p + o, LG_PLUGIN, sizeof(LG_PLUGIN));
	o += sizeof(LG_PLUGIN);
	return o;
}

/* ---- sink ---- */

struct lg_sink {
	int lfd, ep;
	int quiet;
	uint64_t conns, bytes, open;
	unsigned char *open_map;        /* fd -> 1 if an accepted connection */
	size_t open_cap;
	unsigned char *buf;
	size_t bufsz;
};

static void lg_sink_usage(FILE *f)
{
	fprintf(f,
		"usage: loadgen sink --listen IP:PORT [--quiet] [--rcvbuf BYTES] [--max-seconds S]\n"
		"\n"
		"TCP server that accepts any number of connections and reads+discards\n"
		"everything (never answers). Single thread, epoll, non-blocking,\n"
		"recv(MSG_TRUNC) so data is discarded in the kernel.\n"
		"On SIGINT/SIGTERM (or after --max-seconds) it drains queued data and prints\n"
		"  {\"connections\":N,\"bytes\":B}\n"
		"on stdout, then exits 0.\n"
		"\n"
		"  --listen IP:PORT   address to listen on (required)\n"
		"  --quiet            no progress lines on stderr\n"
		"  --rcvbuf BYTES     SO_RCVBUF(FORCE) for accepted sockets (default 4194304)\n"
		"  --max-seconds S    also stop by itself after S seconds (default: never)\n");
}

static void lg_sink_close(struct lg_sink *s, int fd)
{
	close(fd);
	if ((size_t)fd < s->open_cap && s->open_map[fd]) {
		s->open_map[fd] = 0;
		s->open--;
	}
}

static void lg_sink_accept_all(struct lg_sink *s)
{
	struct epoll_event ev;
	int i, fd;

	for (i = 0; i < 4096; i++) {    /* bounded per wake-up; level-triggered */
		fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK && !s->quiet)
				fprintf(stderr, "sink: accept: %s\n", strerror(errno));
			return;
		}
		if ((size_t)fd >= s->open_cap) {
			fprintf(stderr, "sink: fd %d above limit, dropping connection\n", fd);
			close(fd);
			continue;
		}
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.fd = fd;
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			fprintf(stderr, "sink: epoll_ctl: %s\n", strerror(errno));
			close(fd);
			continue;
		}
		s->open_map[fd] = 1;
		s->open++;
		s->conns++;
	}
}

/* Read+discard up to `rounds` times; closes the fd on EOF/error. */
static void lg_sink_read(struct lg_sink *s, int fd, int rounds)
{
	ssize_t n;
	int i;

	for (i = 0; i < rounds; i++) {
		n = recv(fd, s->buf, s->bufsz, MSG_TRUNC | MSG_DONTWAIT);
		if (n > 0) {
			s->bytes += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		lg_sink_close(s, fd);   /* EOF or hard error */
		return;
	}
}

static void lg_sink_listen(struct lg_sink *s, const struct sockaddr_in *sa, int rcvbuf)
{
	int one = 1;

	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		lg_die("socket: %s", strerror(errno));
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Set on the listener before listen() so accepted sockets inherit it
	 * and the window scale is negotiated for it. */
	if (setsockopt(s->lfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0)
		setsockopt(s->lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (bind(s->lfd, (const struct sockaddr *)sa, sizeof(*sa)) != 0)
		lg_die("bind %s:%u: %s", inet_ntoa(sa->sin_addr), ntohs(sa->sin_port),
		       strerror(errno));
	if (listen(s->lfd, 4096) != 0)
		lg_die("listen: %s", strerror(errno));
}

/* One epoll round; returns the number of events handled. */
static int lg_sink_poll(struct lg_sink *s, int timeout_ms)
{
	struct epoll_event evs[256];
	int n, i;

	n = epoll_wait(s->ep, evs, 256, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		lg_die("epoll_wait: %s", strerror(errno));
	}
	for (i = 0; i < n; i++) {
		if (evs[i].data.fd == s->lfd)
			lg_sink_accept_all(s);
		else
			lg_sink_read(s, evs[i].data.fd, 16);
	}
	return n;
}

static int lg_sink_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "rcvbuf", required_argument, NULL, 'r' },
		{ "max-seconds", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct lg_sink s;
	struct sockaddr_in sa;
	struct epoll_event ev;
	struct rlimit rl;
	const char *listen_at = NULL;
	int rcvbuf = 4 * 1024 * 1024, opt;
	double max_s = 0;
	uint64_t start, now, next_report, last_bytes = 0, end, i;

	memset(&s, 0, sizeof(s));
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen_at = optarg; break;
		case 'q': s.quiet = 1; break;
		case 'r': rcvbuf = (int)lg_parse_u64(optarg, "--rcvbuf", 4096, INT_MAX); break;
		case 'm': max_s = lg_parse_double(optarg, "--max-seconds"); break;
		case 'h': lg_sink_usage(stdout); return 0;
		default: lg_sink_usage(stderr); return 1;
		}
	}
	if (!listen_at || optind != argc) {
		lg_sink_usage(stderr);
		return 1;
	}
	lg_parse_hostport(listen_at, &sa, "--listen");
	lg_install_signals();
	lg_raise_nofile(1u << 20);
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		rl.rlim_cur = 1024;
	s.open_cap = rl.rlim_cur > (1u << 20) ? (1u << 20) : (size_t)rl.rlim_cur;
	s.open_map = calloc(s.open_cap, 1);
	s.bufsz = 1u << 20;
	s.buf = malloc(s.bufsz);
	if (!s.open_map || !s.buf)
		lg_die("out of memory");

	lg_sink_listen(&s, &sa, rcvbuf);
	s.ep = epoll_create1(EPOLL_CLOEXEC);
	if (s.ep < 0)
		lg_die("epoll_create1: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.fd = s.lfd;
	if (epoll_ctl(s.ep, EPOLL_CTL_ADD, s.lfd, &ev) != 0)
		lg_die("epoll_ctl: %s", strerror(errno));
	if (!s.quiet)
		fprintf(stderr, "sink: listening on %s (rcvbuf %d)\n", listen_at, rcvbuf);

	start = lg_now_ns();
	next_report = start + LG_NS_PER_SEC;
	while (!lg_stop) {              /* ends on signal or --max-seconds */
		lg_sink_poll(&s, 200);
		now = lg_now_ns();
		if (max_s > 0 && (double)(now - start) >= max_s * 1e9)
			break;
		if (!s.quiet && now >= next_report) {
			fprintf(stderr, "sink: t=%.0fs connections=%" PRIu64 " open=%" PRIu64
				" bytes=%" PRIu64 " (%.1f MB/s)\n",
				(double)(now - start) / 1e9, s.conns, s.open, s.bytes,
				(double)(s.bytes - last_bytes) / 1e6);
			last_bytes = s.bytes;
			next_report += LG_NS_PER_SEC;
			if (next_report < now)
				next_report = now + LG_NS_PER_SEC;
		}
	}

	/* Drain: keep going until 50 ms pass without events (at most 2 s),
	 * then read every open socket until EAGAIN. */
	end = lg_now_ns() + 2 * LG_NS_PER_SEC;
	while (lg_now_ns() < end && lg_sink_poll(&s, 50) > 0)
		;
	lg_sink_accept_all(&s);
	for (i = 0; i < s.open_cap; i++)
		if (s.open_map[i])
			lg_sink_read(&s, (int)i, 1 << 20);

	printf("{\"connections\":%" PRIu64 ",\"bytes\":%" PRIu64 "}\n", s.conns, s.bytes);
	fflush(stdout);
	return 0;
}

/* ---- client: connections ---- */

enum { LG_PK_HANDSHAKE, LG_PK_QUERY, LG_PK_QUIT };

struct lg_conn {
	int fd;
	uint32_t id;                    /* global index, stamp c= */
	int dead;                       /* send error: no more traffic */
	int incomplete;                 /* drain timed out: no COM_QUIT */
	uint64_t next_n;                /* next stamp n= */
	unsigned char *buf;             /* packets of the current send() */
	size_t len, off;
	uint32_t *pk_end;               /* end offset of each packet in buf */
	unsigned char *pk_kind;
	uint32_t npk, pk_done;
	uint64_t stmts, bytes, handshakes, quits;
};

struct lg_client_cfg {
	struct sockaddr_in addr;
	const char *connect_to;
	uint32_t nconn, threads, per_send;
	size_t size, hs_size;
	double rate;                    /* total target stmts/s, 0 with flat-out */
	double burst_ms;                /* token bucket depth */
	int flat_out, spin, json, per_conn;
	double duration;
	const char *user, *db;
};

struct lg_cthread {
	pthread_t tid;
	const struct lg_client_cfg *cfg;
	struct lg_conn *conns;
	uint32_t nconn;
	double rate;
	struct pollfd *pfds;
	uint64_t end_ns;
	uint64_t send_calls, eagains;
	double missed;                  /* pacing slots lost to bucket overflow */
};

static pthread_barrier_t lg_start_barrier;
static uint64_t lg_start_ns, lg_deadline_ns;

static int lg_conn_pending(const struct lg_conn *c)
{
	return c->off < c->len;
}

static void lg_conn_reset(struct lg_conn *c)
{
	c->len = c->off = 0;
	c->npk = c->pk_done = 0;
}

static void lg_conn_add_packet(struct lg_conn *c, size_t len, int kind)
{
	c->len += len;
	c->pk_end[c->npk] = (uint32_t)c->len;
	c->pk_kind[c->npk] = (unsigned char)kind;
	c->npk++;
}

/* Count every packet whose last byte has now been written. */
static void lg_conn_account(struct lg_conn *c)
{
	while (c->pk_done < c->npk && c->pk_end[c->pk_done] <= c->off) {
		switch (c->pk_kind[c->pk_done]) {
		case LG_PK_HANDSHAKE: c->handshakes++; break;
		case LG_PK_QUERY: c->stmts++; break;
		default: c->quits++; break;
		}
		c->pk_done++;
	}
}

/* Write what is pending: 1 = all written, 0 = would block, -1 = dead. */
static int lg_conn_flush(struct lg_cthread *th, struct lg_conn *c)
{
	ssize_t n;
	int i;

	for (i = 0; i < 64 && lg_conn_pending(c); i++) {
		n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		th->send_calls++;
		if (n > 0) {
			c->off += (size_t)n;
			c->bytes += (uint64_t)n;
			lg_conn_account(c);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			th->eagains++;
			return 0;
		}
		if (!c->dead)
			fprintf(stderr, "client: connection %u: send: %s\n", c->id,
				n < 0 ? strerror(errno) : "wrote 0 bytes");
		c->dead = 1;
		return -1;
	}
	if (lg_conn_pending(c))
		return 0;
	lg_conn_reset(c);
	return 1;
}

static void lg_conn_queue_handshake(struct lg_conn *c, const struct lg_client_cfg *cfg)
{
	lg_conn_reset(c);
	lg_conn_add_packet(c, lg_put_handshake(c->buf, cfg->user, cfg->db), LG_PK_HANDSHAKE);
}

/* Queue up to k stamped queries; returns how many (0 if n= is exhausted). */
static uint32_t lg_conn_queue_queries(struct lg_conn *c, uint32_t k, size_t size)
{
	uint64_t t = lg_now_ns();
	uint32_t i;

	lg_conn_reset(c);
	for (i = 0; i < k && c->next_n <= LG_MAX_STMT_NO; i++) {
		lg_put_query(c->buf + c->len, size, c->id, c->next_n++, t);
		lg_conn_add_packet(c, size, LG_PK_QUERY);
	}
	return i;
}

static void lg_conn_queue_quit(struct lg_conn *c)
{
	static const unsigned char quit[LG_QUIT_SIZE] = { 0x01, 0x00, 0x00, 0x00, 0x01 };

	lg_conn_reset(c);
	memcpy(c->buf, quit, sizeof(quit));
	lg_conn_add_packet(c, sizeof(quit), LG_PK_QUIT);
}

/* Non-blocking connect with a 5 s timeout; exits with a message on failure. */
static int lg_connect_one(const struct lg_client_cfg *cfg, uint32_t idx)
{
	struct pollfd pfd;
	int fd, one = 1, err = 0, r;
	socklen_t elen = sizeof(err);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		lg_die("socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	r = connect(fd, (const struct sockaddr *)&cfg->addr, sizeof(cfg->addr));
	if (r != 0 && errno != EINPROGRESS) {
		err = errno;
	} else if (r != 0) {
		pfd.fd = fd;
		pfd.events = POLLOUT;
		do {
			r = poll(&pfd, 1, 5000);
		} while (r < 0 && errno == EINTR);
		if (r == 0)
			err = ETIMEDOUT;
		else if (r < 0)
			err = errno;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
			err = errno;
	}
	if (err)
		lg_die("cannot connect to %s (connection %u of %u): %s", cfg->connect_to,
		       idx + 1, cfg->nconn, strerror(err));
	return fd;
}

/* ---- client: sending threads ---- */

static void lg_spin_until(uint64_t t)
{
	uint32_t i;

	/* bounded: at most ~50 ms of spinning per call (caller caps t) */
	for (i = 0; i < 100000000u && lg_now_ns() < t; i++)
		;
}

/* Sleep up to wait_ns, waking early if a blocked connection becomes writable. */
static void lg_wait_writable(struct lg_cthread *th, uint64_t wait_ns)
{
	struct timespec ts = lg_ts_from_ns(wait_ns);
	nfds_t n = 0;
	uint32_t i;

	for (i = 0; i < th->nconn; i++) {
		struct lg_conn *c = &th->conns[i];

		if (!c->dead && lg_conn_pending(c)) {
			th->pfds[n].fd = c->fd;
			th->pfds[n].events = POLLOUT;
			th->pfds[n].revents = 0;
			n++;
		}
	}
	ppoll(n ? th->pfds : NULL, n, &ts, NULL);
}

/* Flush everything pending; returns the number of connections still blocked. */
static uint32_t lg_thread_flush_all(struct lg_cthread *th, uint32_t *alive)
{
	uint32_t i, blocked = 0;

	*alive = 0;
	for (i = 0; i < th->nconn; i++) {
		struct lg_conn *c = &th->conns[i];

		if (c->dead)
			continue;
		if (lg_conn_pending(c) && lg_conn_flush(th, c) == 0)
			blocked++;
		if (!c->dead)
			(*alive)++;
	}
	return blocked;
}

/* Main send loop: runs until the deadline. */
static void lg_thread_run(struct lg_cthread *th)
{
	const struct lg_client_cfg *cfg = th->cfg;
	const uint32_t k = cfg->per_send;
	const uint32_t max_issue = cfg->flat_out ? th->nconn : 4 * th->nconn;
	struct lg_bucket b;
	uint32_t rr = 0, alive, blocked, issued, scanned;
	uint64_t now, wait_ns;

	lg_bucket_init(&b, th->rate, cfg->burst_ms, (double)k, lg_start_ns);
	for (;;) {                      /* ends at lg_deadline_ns */
		now = lg_now_ns();
		if (now >= lg_deadline_ns)
			break;
		blocked = lg_thread_flush_all(th, &alive);
		if (alive == 0)
			break;
		if (!cfg->flat_out)
			lg_bucket_refill(&b, now);

		issued = scanned = 0;
		while (scanned < th->nconn && issued < max_issue) {
			struct lg_conn *c = &th->conns[rr];

			if (!cfg->flat_out && b.tokens < (double)k)
				break;
			rr = (rr + 1) % th->nconn;
			scanned++;
			if (c->dead || lg_conn_pending(c))
				continue;
			if (lg_conn_queue_queries(c, k, cfg->size) == 0)
				continue;
			lg_conn_flush(th, c);
			issued++;
			if (!cfg->flat_out) {
				b.tokens -= (double)k;
				scanned = 0;
			}
		}
		if (issued)
			continue;

		/* Nothing could be sent: wait for tokens or writability. */
		now = lg_now_ns();
		if (now >= lg_deadline_ns)
			break;
		wait_ns = lg_deadline_ns - now;
		if (!cfg->flat_out && b.tokens < (double)k && lg_bucket_wait_ns(&b, k) < wait_ns)
			wait_ns = lg_bucket_wait_ns(&b, k);
		if (wait_ns > 50000000u)
			wait_ns = 50000000u;
		if (cfg->spin && !cfg->flat_out && blocked == 0)
			lg_spin_until(now + wait_ns);
		else
			lg_wait_writable(th, wait_ns);
	}
	if (!cfg->flat_out) {
		lg_bucket_refill(&b, lg_deadline_ns);
		th->missed = b.missed;
	}
}

/* After the deadline: finish partially written packets (bounded wait). */
static void lg_thread_drain(struct lg_cthread *th, uint64_t timeout_ns)
{
	uint64_t end = lg_now_ns() + timeout_ns;
	uint32_t alive;

	while (lg_thread_flush_all(th, &alive) > 0 && lg_now_ns() < end)
		lg_wait_writable(th, 10000000u);
}

static void lg_thread_quit(struct lg_cthread *th)
{
	uint32_t i;

	for (i = 0; i < th->nconn; i++) {
		struct lg_conn *c = &th->conns[i];

		if (!c->dead && lg_conn_pending(c))
			c->incomplete = 1;      /* drain timed out */
		else if (!c->dead)
			lg_conn_queue_quit(c);
	}
	lg_thread_drain(th, 5 * LG_NS_PER_SEC);
	for (i = 0; i < th->nconn; i++) {
		if (!th->conns[i].dead && lg_conn_pending(&th->conns[i]))
			th->conns[i].incomplete = 1;
		close(th->conns[i].fd);
		th->conns[i].fd = -1;
	}
}

static void *lg_client_thread(void *arg)
{
	struct lg_cthread *th = arg;
	uint32_t i;

	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);   /* precise sleeps */
	for (i = 0; i < th->nconn; i++) {
		lg_conn_queue_handshake(&th->conns[i], th->cfg);
		lg_conn_flush(th, &th->conns[i]);
	}
	/* Handshakes are out (or queued); main sets the clock between the two
	 * barriers so pacing does not count handshake time. */
	pthread_barrier_wait(&lg_start_barrier);
	pthread_barrier_wait(&lg_start_barrier);
	lg_thread_run(th);
	lg_thread_drain(th, 5 * LG_NS_PER_SEC);
	th->end_ns = lg_now_ns();
	lg_thread_quit(th);
	return NULL;
}

/* ---- client: main ---- */

static void lg_client_usage(FILE *f)
{
	fprintf(f,
		"usage: loadgen client --connect IP:PORT --connections N --size BYTES\n"
		"                      (--rate STMTS_PER_SEC | --flat-out) --duration SECONDS\n"
		"                      [--user NAME] [--db NAME] [--threads T] [--per-send K]\n"
		"                      [--burst-ms MS] [--spin] [--json] [--per-conn]\n"
		"\n"
		"Opens N TCP connections (TCP_NODELAY); each sends a HandshakeResponse41\n"
		"(seq 1), then COM_QUERY packets of exactly BYTES on the wire (header\n"
		"included) carrying the stamp\n"
		"  SELECT /*lg c=<conn> n=<stmt-no> t=<CLOCK_MONOTONIC ns>*/ 'xxx...'\n"
		"then COM_QUIT (01 00 00 00 01), then closes. Counts are exact: a packet is\n"
		"counted once its last byte was accepted by send().\n"
		"\n"
		"  --connect IP:PORT   server (e.g. loadgen sink) to connect to (required)\n"
		"  --connections N     TCP connections (required)\n"
		"  --size BYTES        COM_QUERY wire size incl. 4-byte header (required,\n"
		"                      minimum ~63 depending on N, max 16 MiB)\n"
		"  --rate R            total statements/s over all connections, token bucket\n"
		"                      per thread; waits by sleeping (ppoll, 1 ns timer slack)\n"
		"  --flat-out          send as fast as possible instead of --rate\n"
		"  --duration S        seconds to send statements (required, may be fractional)\n"
		"  --user NAME         handshake user (default \"loadgen\")\n"
		"  --db NAME           handshake database (default \"test\")\n"
		"  --threads T         sender threads (default min(N, online CPUs))\n"
		"  --per-send K        whole packets per send() (default 1 = no batching)\n"
		"  --burst-ms MS       token bucket depth in ms of --rate (default 10); tokens\n"
		"                      beyond it are dropped and reported as missed_slots\n"
		"  --spin              with --rate: busy-wait instead of sleeping\n"
		"  --json              print only a JSON summary line on stdout\n"
		"  --per-conn          also print one JSON line per connection on stderr\n"
		"\n"
		"Exit: 0 ok; 1 usage/connect failure; 2 a connection failed mid-run or could\n"
		"not be drained.\n");
}

static void lg_client_parse(int argc, char **argv, struct lg_client_cfg *cfg)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "connections", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "rate", required_argument, NULL, 'r' },
		{ "flat-out", no_argument, NULL, 'f' },
		{ "duration", required_argument, NULL, 'd' },
		{ "user", required_argument, NULL, 'u' },
		{ "db", required_argument, NULL, 'D' },
		{ "threads", required_argument, NULL, 't' },
		{ "per-send", required_argument, NULL, 'k' },
		{ "spin", no_argument, NULL, 'S' },
		{ "burst-ms", required_argument, NULL, 'B' },
		{ "json", no_argument, NULL, 'j' },
		{ "per-conn", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int opt;
	size_t min;

	memset(cfg, 0, sizeof(*cfg));
	cfg->user = "loadgen";
	cfg->db = "test";
	cfg->per_send = 1;
	cfg->burst_ms = 10;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': cfg->connect_to = optarg; break;
		case 'n': cfg->nconn = (uint32_t)lg_parse_u64(optarg, "--connections", 1, 1000000); break;
		case 's': cfg->size = (size_t)lg_parse_u64(optarg, "--size", 1, LG_MAX_SIZE); break;
		case 'r': cfg->rate = lg_parse_double(optarg, "--rate"); break;
		case 'f': cfg->flat_out = 1; break;
		case 'd': cfg->duration = lg_parse_double(optarg, "--duration"); break;
		case 'u': cfg->user = optarg; break;
		case 'D': cfg->db = optarg; break;
		case 't': cfg->threads = (uint32_t)lg_parse_u64(optarg, "--threads", 1, 1024); break;
		case 'k': cfg->per_send = (uint32_t)lg_parse_u64(optarg, "--per-send", 1, 65536); break;
		case 'S': cfg->spin = 1; break;
		case 'B': cfg->burst_ms = lg_parse_double(optarg, "--burst-ms"); break;
		case 'j': cfg->json = 1; break;
		case 'p': cfg->per_conn = 1; break;
		case 'h': lg_client_usage(stdout); exit(0);
		default: lg_client_usage(stderr); exit(1);
		}
	}
	if (optind != argc || !cfg->connect_to || !cfg->nconn || !cfg->size || !cfg->duration) {
		fprintf(stderr, "client: --connect, --connections, --size and --duration are required\n");
		lg_client_usage(stderr);
		exit(1);
	}
	if (!cfg->flat_out == !(cfg->rate > 0))
		lg_die("give exactly one of --rate R or --flat-out");
	if (cfg->duration > 86400 * 365)
		lg_die("--duration too large");
	min = lg_query_min_size(cfg->nconn);
	if (cfg->size < min)
		lg_die("--size %zu is too small: the stamped query needs at least %zu bytes",
		       cfg->size, min);
	if ((uint64_t)cfg->size * cfg->per_send > 64u * 1024u * 1024u)
		lg_die("--size * --per-send must stay below 64 MiB");
	if (strlen(cfg->user) > 255 || strlen(cfg->db) > 255)
		lg_die("--user/--db longer than 255 bytes");
	lg_parse_hostport(cfg->connect_to, &cfg->addr, "--connect");
	if (!cfg->threads)
		cfg->threads = ncpu > 0 ? (uint32_t)ncpu : 1;
	if (cfg->threads > cfg->nconn)
		cfg->threads = cfg->nconn;
	cfg->hs_size = lg_handshake_size(cfg->user, cfg->db);
}

static void lg_client_setup(const struct lg_client_cfg *cfg, struct lg_conn *conns)
{
	size_t cap = (size_t)cfg->size * cfg->per_send;
	uint32_t i;

	if (cap < cfg->hs_size)
		cap = cfg->hs_size;
	for (i = 0; i < cfg->nconn; i++) {
		struct lg_conn *c = &conns[i];

		c->id = i;
		c->buf = malloc(cap);
		c->pk_end = calloc(cfg->per_send, sizeof(*c->pk_end));
		c->pk_kind = calloc(cfg->per_send, 1);
		if (!c->buf || !c->pk_end || !c->pk_kind)
			lg_die("out of memory for %u connections", cfg->nconn);
		c->fd = lg_connect_one(cfg, i);
	}
}

static int lg_client_main(int argc, char **argv)
{
	struct lg_client_cfg cfg;
	struct lg_conn *conns;
	struct lg_cthread *ths;
	uint64_t stmts = 0, bytes = 0, hs = 0, quits = 0, calls = 0, eagains = 0, end = 0;
	uint64_t min_c = UINT64_MAX, max_c = 0, expect;
	uint32_t i, t, lo, dead = 0, incomplete = 0;
	double secs, rate, missed = 0;
	int rc;

	lg_client_parse(argc, argv, &cfg);
	signal(SIGPIPE, SIG_IGN);
	lg_raise_nofile((uint64_t)cfg.nconn + 64);
	conns = calloc(cfg.nconn, sizeof(*conns));
	ths = calloc(cfg.threads, sizeof(*ths));
	if (!conns || !ths)
		lg_die("out of memory");
	lg_client_setup(&cfg, conns);

	pthread_barrier_init(&lg_start_barrier, NULL, cfg.threads + 1);
	for (t = 0, lo = 0; t < cfg.threads; t++) {
		struct lg_cthread *th = &ths[t];
		uint32_t n = cfg.nconn / cfg.threads + (t < cfg.nconn % cfg.threads ? 1 : 0);

		th->cfg = &cfg;
		th->conns = conns + lo;
		th->nconn = n;
		th->rate = cfg.rate * n / cfg.nconn;
		th->pfds = calloc(n, sizeof(*th->pfds));
		if (!th->pfds)
			lg_die("out of memory");
		lo += n;
		rc = pthread_create(&th->tid, NULL, lg_client_thread, th);
		if (rc)
			lg_die("pthread_create: %s", strerror(rc));
	}
	pthread_barrier_wait(&lg_start_barrier);        /* handshakes sent */
	lg_start_ns = lg_now_ns();
	lg_deadline_ns = lg_start_ns + (uint64_t)(cfg.duration * 1e9);
	pthread_barrier_wait(&lg_start_barrier);        /* go */
	for (t = 0; t < cfg.threads; t++) {
		pthread_join(ths[t].tid, NULL);
		calls += ths[t].send_calls;
		eagains += ths[t].eagains;
		missed += ths[t].missed;
		if (ths[t].end_ns > end)
			end = ths[t].end_ns;
	}

	for (i = 0; i < cfg.nconn; i++) {
		struct lg_conn *c = &conns[i];

		stmts += c->stmts;
		bytes += c->bytes;
		hs += c->handshakes;
		quits += c->quits;
		dead += (uint32_t)c->dead;
		incomplete += (uint32_t)c->incomplete;
		if (c->stmts < min_c)
			min_c = c->stmts;
		if (c->stmts > max_c)
			max_c = c->stmts;
		if (cfg.per_conn)
			fprintf(stderr, "{\"conn\":%u,\"statements\":%" PRIu64 ",\"bytes\":%" PRIu64
				",\"handshakes\":%" PRIu64 ",\"quits\":%" PRIu64 ",\"failed\":%d}\n",
				c->id, c->stmts, c->bytes, c->handshakes, c->quits,
				c->dead || c->incomplete);
	}
	secs = (double)(end - lg_start_ns) / 1e9;
	rate = secs > 0 ? (double)stmts / secs : 0;
	expect = stmts * cfg.size + hs * cfg.hs_size + quits * LG_QUIT_SIZE;

	if (cfg.json) {
		printf("{\"connections\":%u,\"statements\":%" PRIu64 ",\"bytes\":%" PRIu64
		       ",\"seconds\":%.6f,\"rate\":%.1f,\"target_rate\":%.1f"
		       ",\"mode\":\"%s\",\"size\":%zu,\"handshakes\":%" PRIu64
		       ",\"handshake_size\":%zu,\"quits\":%" PRIu64 ",\"per_send\":%u"
		       ",\"batching\":%s,\"threads\":%u,\"pacing\":\"%s\",\"send_calls\":%" PRIu64
		       ",\"eagain\":%" PRIu64 ",\"min_conn_statements\":%" PRIu64
		       ",\"max_conn_statements\":%" PRIu64 ",\"failed_connections\":%u"
		       ",\"missed_slots\":%.0f,\"bytes_consistent\":%s}\n",
		       cfg.nconn, stmts, bytes, secs, rate, cfg.rate,
		       cfg.flat_out ? "flat-out" : "rate", cfg.size, hs, cfg.hs_size, quits,
		       cfg.per_send, cfg.per_send > 1 ? "true" : "false", cfg.threads,
		       cfg.flat_out ? "none" : cfg.spin ? "token-bucket/spin" : "token-bucket/sleep",
		       calls, eagains, min_c, max_c, dead + incomplete, missed,
		       expect == bytes ? "true" : "false");
	} else {
		printf("loadgen client: %u connections to %s, %u threads, size %zu B, %s\n",
		       cfg.nconn, cfg.connect_to, cfg.threads, cfg.size,
		       cfg.flat_out ? "flat-out" : cfg.spin ? "rate (token bucket, spin)"
							    : "rate (token bucket, sleep)");
		if (cfg.per_send > 1)
			printf("  batching: %u packets per send()\n", cfg.per_send);
		else
			printf("  batching: off (1 packet per send())\n");
		printf("  statements %" PRIu64 "  bytes %" PRIu64 "  seconds %.3f\n", stmts, bytes, secs);
		printf("  rate %.1f stmts/s", rate);
		if (cfg.flat_out)
			printf(" (flat out)\n");
		else
			printf(" (target %.1f, %.2f%%, missed slots %.0f)\n", cfg.rate,
			       100.0 * rate / cfg.rate, missed);
		printf("  handshakes %" PRIu64 " (%zu B)  quits %" PRIu64 "  per-connection statements %"
		       PRIu64 "..%" PRIu64 "\n", hs, cfg.hs_size, quits, min_c, max_c);
		printf("  send() calls %" PRIu64 "  EAGAIN %" PRIu64 "  failed connections %u\n",
		       calls, eagains, dead + incomplete);
		printf("  bytes check: statements*size + handshakes*%zu + quits*%d = %" PRIu64 " (%s)\n",
		       cfg.hs_size, LG_QUIT_SIZE, expect,
		       expect == bytes ? "matches" : "differs: a packet was cut short");
	}
	fflush(stdout);
	if (dead || incomplete) {
		fprintf(stderr, "client: %u connection(s) failed or could not be drained\n",
			dead + incomplete);
		return 2;
	}
	return 0;
}

/* ---- frames: packet crafting ---- */

#define LG_ETH_LEN 14
#define LG_IP_LEN 20
#define LG_TCP_LEN 20
#define LG_HDRS_LEN (LG_ETH_LEN + LG_IP_LEN + LG_TCP_LEN)

struct lg_frames_cfg {
	const char *ifname;
	uint8_t src_mac[6], dst_mac[6];
	struct in_addr src, dst;
	uint16_t dport, sport_base;
	uint32_t flows, batch;
	size_t size;                    /* MySQL packet (TCP payload) size */
	uint64_t count;
	double rate, burst_ms;
	int json, tcp_csum;
};

struct lg_flow {
	uint32_t seq;
	uint64_t n;
};

static uint32_t lg_csum_add(uint32_t sum, const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)(p[len - 1] << 8);
	return sum;
}

static uint16_t lg_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void lg_put_be16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static void lg_put_be32(unsigned char *p, uint32_t v)
{
	lg_put_be16(p, (uint16_t)(v >> 16));
	lg_put_be16(p + 2, (uint16_t)v);
}

/* Build one frame for flow f; advances the flow's seq and statement number. */
static void lg_frame_build(unsigned char *fr, const struct lg_frames_cfg *cfg, uint32_t f,
			   struct lg_flow *fl, uint16_t ipid, uint64_t t)
{
	unsigned char *ip = fr + LG_ETH_LEN, *tcp = ip + LG_IP_LEN, *pl = tcp + LG_TCP_LEN;
	size_t tcp_len = LG_TCP_LEN + cfg->size;
	unsigned char pseudo[12];
	uint32_t sum;

	memcpy(fr, cfg->dst_mac, 6);
	memcpy(fr + 6, cfg->src_mac, 6);
	lg_put_be16(fr + 12, ETHERTYPE_IP);

	ip[0] = 0x45;
	ip[1] = 0;
	lg_put_be16(ip + 2, (uint16_t)(LG_IP_LEN + tcp_len));
	lg_put_be16(ip + 4, ipid);
	lg_put_be16(ip + 6, 0x4000);    /* DF */
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	lg_put_be16(ip + 10, 0);
	memcpy(ip + 12, &cfg->src, 4);
	memcpy(ip + 16, &cfg->dst, 4);
	lg_put_be16(ip + 10, lg_csum_fold(lg_csum_add(0, ip, LG_IP_LEN)));

	lg_put_be16(tcp, (uint16_t)(cfg->sport_base + f));
	lg_put_be16(tcp + 2, cfg->dport);
	lg_put_be32(tcp + 4, fl->seq);
	lg_put_be32(tcp + 8, 1);        /* ack: the silent server never sends */
	tcp[12] = (LG_TCP_LEN / 4) << 4;
	tcp[13] = 0x18;                 /* PSH|ACK */
	lg_put_be16(tcp + 14, 65535);
	lg_put_be16(tcp + 16, 0);
	lg_put_be16(tcp + 18, 0);

	lg_put_query(pl, cfg->size, f, fl->n, t);
	if (cfg->tcp_csum) {
		memcpy(pseudo, &cfg->src, 4);
		memcpy(pseudo + 4, &cfg->dst, 4);
		pseudo[8] = 0;
		pseudo[9] = IPPROTO_TCP;
		lg_put_be16(pseudo + 10, (uint16_t)tcp_len);
		sum = lg_csum_add(0, pseudo, sizeof(pseudo));
		sum = lg_csum_add(sum, tcp, tcp_len);
		lg_put_be16(tcp + 16, lg_csum_fold(sum));
	}
	fl->seq += (uint32_t)cfg->size;
	fl->n++;
}

/* ---- frames: interface and socket ---- */

/* Refuse anything but veth/dummy so raw frames can never reach a real NIC. */
static void lg_frames_check_if(int fd, const char *ifname, int *mtu)
{
	struct ethtool_drvinfo di;
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	memset(&di, 0, sizeof(di));
	di.cmd = ETHTOOL_GDRVINFO;
	ifr.ifr_data = (char *)&di;
	if (ioctl(fd, SIOCETHTOOL, &ifr) != 0)
		lg_die("cannot query driver of %s: %s", ifname, strerror(errno));
	if (strcmp(di.driver, "veth") != 0 && strcmp(di.driver, "dummy") != 0)
		lg_die("refusing to inject frames on %s (driver \"%s\"): only veth/dummy "
		       "interfaces inside a test namespace are allowed", ifname, di.driver);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFMTU, &ifr) != 0)
		lg_die("SIOCGIFMTU %s: %s", ifname, strerror(errno));
	*mtu = ifr.ifr_mtu;
}

/* tx_dropped of the interface (-1 if unreadable). */
static int64_t lg_if_tx_dropped(const char *ifname)
{
	char path[128];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/tx_dropped", ifname);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%lld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static int lg_frames_socket(const struct lg_frames_cfg *cfg, struct sockaddr_ll *sll,
			    int *bypass)
{
	int fd, one = 1, sndbuf = 4 * 1024 * 1024, mtu = 0;

	/* protocol 0: this socket only sends, it never receives copies */
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		lg_die("AF_PACKET socket: %s (needs root / CAP_NET_RAW)", strerror(errno));
	lg_frames_check_if(fd, cfg->ifname, &mtu);
	if ((size_t)mtu < LG_IP_LEN + LG_TCP_LEN + cfg->size)
		lg_die("--size %zu does not fit MTU %d of %s (max %d)", cfg->size, mtu,
		       cfg->ifname, mtu - LG_IP_LEN - LG_TCP_LEN);
	memset(sll, 0, sizeof(*sll));
	sll->sll_family = AF_PACKET;
	sll->sll_ifindex = (int)if_nametoindex(cfg->ifname);
	if (sll->sll_ifindex == 0)
		lg_die("unknown interface %s", cfg->ifname);
	if (bind(fd, (struct sockaddr *)sll, sizeof(*sll)) != 0)
		lg_die("bind to %s: %s", cfg->ifname, strerror(errno));
	sll->sll_protocol = htons(ETH_P_IP);
	sll->sll_halen = 6;
	memcpy(sll->sll_addr, cfg->dst_mac, 6);
	*bypass = setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) == 0;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) != 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	return fd;
}

/* sendmmsg all k messages; returns 0, or -1 after 5 s without progress. */
static int lg_frames_send(int fd, struct mmsghdr *msgs, uint32_t k, uint64_t *retries)
{
	uint64_t stuck_since = 0;
	uint32_t off = 0;
	struct timespec pause = { 0, 20000 };
	int r;

	while (off < k) {               /* bounded by the 5 s no-progress limit */
		r = sendmmsg(fd, msgs + off, k - off, 0);
		if (r > 0) {
			off += (uint32_t)r;
			stuck_since = 0;
			continue;
		}
		if (r < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR)
			lg_die("sendmmsg: %s", strerror(errno));
		(*retries)++;
		if (!stuck_since)
			stuck_since = lg_now_ns();
		else if (lg_now_ns() - stuck_since > 5 * LG_NS_PER_SEC)
			return -1;
		nanosleep(&pause, NULL);
	}
	return 0;
}

/* ---- frames: main ---- */

static void lg_frames_usage(FILE *f)
{
	fprintf(f,
		"usage: loadgen frames --ifname IF --src-mac MAC --dst-mac MAC --src IP --dst IP\n"
		"                      --dport PORT --flows F --size BYTES --count C\n"
		"                      [--rate FRAMES_PER_SEC] [--sport-base P] [--batch B]\n"
		"                      [--burst-ms MS] [--no-tcp-csum] [--json]\n"
		"\n"
		"Injects C Ethernet/IPv4/TCP frames (PSH|ACK), each carrying one COM_QUERY\n"
		"packet of BYTES (stamp c=<flow> n=<stmt-no> t=<ns>), round-robin over F flows\n"
		"(source port P+f, per-flow increasing sequence numbers) through an AF_PACKET\n"
		"socket bound to IF, with PACKET_QDISC_BYPASS and sendmmsg batches.\n"
		"IF must be a veth/dummy interface (run inside `ip netns exec`); others are refused.\n"
		"IPv4 checksum is valid; the TCP checksum is computed unless --no-tcp-csum.\n"
		"\n"
		"  --ifname IF         veth to send on (required)\n"
		"  --src-mac/--dst-mac Ethernet addresses (required)\n"
		"  --src/--dst IP      IPv4 addresses (required)\n"
		"  --dport PORT        destination (MySQL server) port (required)\n"
		"  --flows F           number of TCP flows (required)\n"
		"  --size BYTES        MySQL packet size = TCP payload (required; frame = 54+BYTES,\n"
		"                      40+BYTES must fit the MTU)\n"
		"  --count C           frames to send in total (required)\n"
		"  --rate R            frames/s (token bucket, sleeps); default: flat out\n"
		"  --sport-base P      first source port (default 40000)\n"
		"  --batch B           frames per sendmmsg() (default 64; with --rate a batch\n"
		"                      never exceeds the tokens available)\n"
		"  --burst-ms MS       token bucket depth in ms of --rate (default 10)\n"
		"  --no-tcp-csum       leave the TCP checksum 0\n"
		"  --json              print only a JSON summary line on stdout\n");
}

static void lg_frames_parse(int argc, char **argv, struct lg_frames_cfg *cfg)
{
	static const struct option opts[] = {
		{ "ifname", required_argument, NULL, 'i' },
		{ "src-mac", required_argument, NULL, 'M' },
		{ "dst-mac", required_argument, NULL, 'm' },
		{ "src", required_argument, NULL, 'S' },
		{ "dst", required_argument, NULL, 'D' },
		{ "dport", required_argument, NULL, 'p' },
		{ "flows", required_argument, NULL, 'f' },
		{ "size", required_argument, NULL, 's' },
		{ "count", required_argument, NULL, 'c' },
		{ "rate", required_argument, NULL, 'r' },
		{ "sport-base", required_argument, NULL, 'b' },
		{ "batch", required_argument, NULL, 'B' },
		{ "burst-ms", required_argument, NULL, 'u' },
		{ "no-tcp-csum", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, have = 0;
	size_t min;

	memset(cfg, 0, sizeof(*cfg));
	cfg->sport_base = 40000;
	cfg->batch = 64;
	cfg->burst_ms = 10;
	cfg->tcp_csum = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'i': cfg->ifname = optarg; have |= 1; break;
		case 'M': lg_parse_mac(optarg, cfg->src_mac, "--src-mac"); have |= 2; break;
		case 'm': lg_parse_mac(optarg, cfg->dst_mac, "--dst-mac"); have |= 4; break;
		case 'S': lg_parse_ip(optarg, &cfg->src, "--src"); have |= 8; break;
		case 'D': lg_parse_ip(optarg, &cfg->dst, "--dst"); have |= 16; break;
		case 'p': cfg->dport = (uint16_t)lg_parse_u64(optarg, "--dport", 1, 65535); have |= 32; break;
		case 'f': cfg->flows = (uint32_t)lg_parse_u64(optarg, "--flows", 1, 65535); have |= 64; break;
		case 's': cfg->size = (size_t)lg_parse_u64(optarg, "--size", 1, 65535); have |= 128; break;
		case 'c': cfg->count = lg_parse_u64(optarg, "--count", 1, UINT64_MAX); have |= 256; break;
		case 'r': cfg->rate = lg_parse_double(optarg, "--rate"); break;
		case 'b': cfg->sport_base = (uint16_t)lg_parse_u64(optarg, "--sport-base", 1, 65535); break;
		case 'B': cfg->batch = (uint32_t)lg_parse_u64(optarg, "--batch", 1, 1024); break;
		case 'u': cfg->burst_ms = lg_parse_double(optarg, "--burst-ms"); break;
		case 'n': cfg->tcp_csum = 0; break;
		case 'j': cfg->json = 1; break;
		case 'h': lg_frames_usage(stdout); exit(0);
		default: lg_frames_usage(stderr); exit(1);
		}
	}
	if (optind != argc || have != 511) {
		fprintf(stderr, "frames: --ifname --src-mac --dst-mac --src --dst --dport --flows"
			" --size --count are all required\n");
		lg_frames_usage(stderr);
		exit(1);
	}
	if ((uint32_t)cfg->sport_base + cfg->flows - 1 > 65535)
		lg_die("--sport-base + --flows exceeds port 65535");
	min = lg_query_min_size(cfg->flows);
	if (cfg->size < min)
		lg_die("--size %zu is too small: the stamped query needs at least %zu bytes",
		       cfg->size, min);
}

static int lg_frames_main(int argc, char **argv)
{
	struct lg_frames_cfg cfg;
	struct sockaddr_ll sll;
	struct lg_flow *flows;
	struct mmsghdr *msgs;
	struct iovec *iov;
	struct lg_bucket b;
	unsigned char *frames;
	size_t flen;
	uint64_t sent = 0, retries = 0, start, end, now, wait_ns, next_flow = 0;
	int64_t drop0, drop1;
	uint16_t ipid = 0;
	uint32_t i, k;
	int fd, bypass;
	double secs, rate;

	lg_frames_parse(argc, argv, &cfg);
	fd = lg_frames_socket(&cfg, &sll, &bypass);
	if (!bypass)
		fprintf(stderr, "frames: PACKET_QDISC_BYPASS unavailable, using the qdisc path\n");
	flen = LG_HDRS_LEN + cfg.size;
	flows = calloc(cfg.flows, sizeof(*flows));
	msgs = calloc(cfg.batch, sizeof(*msgs));
	iov = calloc(cfg.batch, sizeof(*iov));
	frames = malloc(flen * cfg.batch);
	if (!flows || !msgs || !iov || !frames)
		lg_die("out of memory");
	for (i = 0; i < cfg.flows; i++)
		flows[i].seq = 0x10000000u + i * 0x01000000u;   /* distinct ISNs */
	for (i = 0; i < cfg.batch; i++) {
		iov[i].iov_base = frames + (size_t)i * flen;
		iov[i].iov_len = flen;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &sll;
		msgs[i].msg_hdr.msg_namelen = sizeof(sll);
	}
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	drop0 = lg_if_tx_dropped(cfg.ifname);

	start = lg_now_ns();
	lg_bucket_init(&b, cfg.rate, cfg.burst_ms, 1.0, start);
	while (sent < cfg.count) {      /* each pass sends >= 1 frame, or sleeps */
		k = cfg.batch;
		if (cfg.count - sent < k)
			k = (uint32_t)(cfg.count - sent);
		if (cfg.rate > 0) {
			now = lg_now_ns();
			lg_bucket_refill(&b, now);
			wait_ns = lg_bucket_wait_ns(&b, 1.0);
			if (wait_ns) {
				struct timespec ts = lg_ts_from_ns(wait_ns);

				nanosleep(&ts, NULL);
				continue;
			}
			if ((double)k > b.tokens)
				k = (uint32_t)b.tokens;
			b.tokens -= k;
		}
		now = lg_now_ns();
		for (i = 0; i < k; i++) {
			uint32_t f = (uint32_t)(next_flow++ % cfg.flows);

			lg_frame_build(frames + (size_t)i * flen, &cfg, f, &flows[f], ipid++, now);
		}
		if (lg_frames_send(fd, msgs, k, &retries) != 0)
			lg_die("%s accepted no frame for 5 s (after %" PRIu64 " frames)",
			       cfg.ifname, sent);
		sent += k;
	}
	end = lg_now_ns();
	drop1 = lg_if_tx_dropped(cfg.ifname);
	close(fd);

	secs = (double)(end - start) / 1e9;
	rate = secs > 0 ? (double)sent / secs : 0;
	if (cfg.json) {
		printf("{\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"seconds\":%.6f,\"rate\":%.1f"
		       ",\"target_rate\":%.1f,\"flows\":%u,\"size\":%zu,\"frame_size\":%zu"
		       ",\"payload_bytes\":%" PRIu64 ",\"tcp_checksum\":\"%s\",\"batch\":%u"
		       ",\"qdisc_bypass\":%s,\"send_retries\":%" PRIu64 ",\"missed_slots\":%.0f"
		       ",\"if_tx_dropped\":%" PRId64 "}\n",
		       sent, sent * flen, secs, rate, cfg.rate, cfg.flows, cfg.size, flen,
		       sent * cfg.size, cfg.tcp_csum ? "computed" : "zero", cfg.batch,
		       bypass ? "true" : "false", retries, b.missed,
		       drop0 >= 0 && drop1 >= 0 ? drop1 - drop0 : (int64_t)-1);
	} else {
		printf("loadgen frames: %s, %u flows, frame %zu B (MySQL packet %zu B), "
		       "sendmmsg batch %u, qdisc bypass %s, TCP checksum %s\n",
		       cfg.ifname, cfg.flows, flen, cfg.size, cfg.batch, bypass ? "on" : "off",
		       cfg.tcp_csum ? "computed" : "zero");
		printf("  frames %" PRIu64 "  bytes %" PRIu64 "  seconds %.3f\n", sent, sent * flen, secs);
		printf("  rate %.1f frames/s", rate);
		if (cfg.rate > 0)
			printf(" (target %.1f)\n", cfg.rate);
		else
			printf(" (flat out)\n");
		printf("  send retries %" PRIu64 "  interface tx_dropped during run %" PRId64 "\n",
		       retries, drop0 >= 0 && drop1 >= 0 ? drop1 - drop0 : (int64_t)-1);
	}
	fflush(stdout);
	return 0;
}

/* ---- entry point ---- */

static void lg_usage(FILE *f)
{
	fprintf(f,
		"usage: loadgen MODE [options]    (loadgen MODE --help for details)\n"
		"\n"
		"  sink     TCP server that accepts connections and discards all data\n"
		"  client   MySQL-protocol client: handshake, stamped COM_QUERYs, COM_QUIT\n"
		"  frames   raw Ethernet/IPv4/TCP frames with one COM_QUERY each (veth only)\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		lg_usage(stderr);
		return 1;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		lg_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "sink")) {
		lg_mode = "sink";
		return lg_sink_main(argc - 1, argv + 1);
	}
	if (!strcmp(argv[1], "client")) {
		lg_mode = "client";
		return lg_client_main(argc - 1, argv + 1);
	}
	if (!strcmp(argv[1], "frames")) {
		lg_mode = "frames";
		return lg_frames_main(argc - 1, argv + 1);
	}
	fprintf(stderr, "loadgen: unknown mode '%s'\n", argv[1]);
	lg_usage(stderr);
	return 1;
}
