/* session.c -- session sync with the source server (libmysqlclient).
 *
 * MRTE-Player needs each replayed session's default database and needs to
 * know when a session ends.  The capture alone cannot tell the database of
 * a session that was already open when the agent started, so this thread
 * reads information_schema.processlist (SPEC 3) and asks the publisher that
 * owns each client to inject a COM_INIT_DB -- at a MySQL packet boundary,
 * ordered with that client's captured units, and only if the player does
 * not know the database yet (the flow tracker decides).  It polls:
 *
 *   round 1   right after capture starts (or once MySQL first answers)
 *   round 2   --init_db_resend seconds later: sessions opened meanwhile
 *   then      every --session_poll_interval seconds: sessions gone since the
 *             previous poll get a COM_QUIT unless the kernel path already
 *             saw them end (FIN/RST); new sessions get their database
 *   SIGUSR1   every session's database again, even if already sent
 *
 * Its own connection to MySQL must never reach the player: once connected
 * it tells the owning publisher to drop that client address (and waits
 * until the publisher has), before it sends a single query.
 *
 * MySQL down or unreachable is not fatal: capture and publishing go on,
 * the thread warns once and retries with backoff (1 s up to 60 s).
 */
#include "session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define NS_PER_SEC 1000000000ull
#define RETRY_MIN_NS (1ull * NS_PER_SEC)
#define RETRY_MAX_NS (60ull * NS_PER_SEC)
#define TABLE_SIZE 4096 /* buckets; sessions are chained */

/* ---- processlist rows -------------------------------------------------------- */

/* States of replication threads, which are no client session (the
 * original's list, plus the 8.0 "source/replica" wording). */
static const char *const replication_states[] = {
	"Waiting for master", "Has read all relay log", "Waiting on empty queue",
	"Master has sent all binlog", "Waiting for source", "Source has sent all binlog",
	"Replica has read all relay log",
};

enum pl_verdict session_parse_row(const char *host, const char *db, const char *state,
				  struct pl_session *out)
{
	char buf[128];

	memset(out, 0, sizeof(*out));
	if (state) {
		for (size_t i = 0; i < sizeof(replication_states) / sizeof(*replication_states); i++)
			if (!strncmp(state, replication_states[i], strlen(replication_states[i])))
				return PL_REPLICATION;
	}
	if (!host || !*host || strlen(host) >= sizeof(buf))
		return PL_NO_PORT;
	/* "ip:port"; IPv6 hosts have colons of their own, so split at the last.
	 * An IPv6 address alone ("::1") would split too: catch it first. */
	struct in6_addr whole;

	if (inet_pton(AF_INET6, host, &whole) == 1 && !IN6_IS_ADDR_V4MAPPED(&whole))
		return PL_IPV6;
	snprintf(buf, sizeof(buf), "%s", host);
	char *colon = strrchr(buf, ':');

	if (!colon)
		return PL_NO_PORT; /* "localhost" (a socket), "" (a system thread) */
	*colon = '\0';
	char *port_s = colon + 1, *end;
	unsigned long port = strtoul(port_s, &end, 10);

	if (!*port_s || *end || port == 0 || port > 65535)
		return PL_NO_PORT; /* "::1" without a port */
	char *addr = buf;
	size_t alen = strlen(addr);

	if (alen >= 2 && addr[0] == '[' && addr[alen - 1] == ']') {
		addr[alen - 1] = '\0';
		addr++;
	}
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, addr, &a4) == 1) {
		out->saddr = a4.s_addr;
	} else if (inet_pton(AF_INET6, addr, &a6) == 1) {
		if (!IN6_IS_ADDR_V4MAPPED(&a6))
			return PL_IPV6; /* an MRTE unit carries an IPv4 address only */
		memcpy(&out->saddr, &a6.s6_addr[12], 4);
	} else {
		return PL_BAD_HOST; /* a host name: skip-name-resolve is off */
	}
	out->sport = (uint16_t)port;
	if (db && strlen(db) < sizeof(out->db))
		snprintf(out->db, sizeof(out->db), "%s", db);
	return PL_SESSION;
}

/* ---- the sessions seen in the last poll ---------------------------------------- */

struct known {
	struct known *next;
	uint32_t saddr;
	uint16_t sport;
	uint64_t seen_ns;
	uint32_t seen_poll;
};

struct session_sync {
	const struct mrte_config *cfg;
	struct publishers *ps;
	pthread_t thread;
	int efd;
	bool stop;   /* atomic */
	bool resend; /* atomic: SIGUSR1 */
	MYSQL *my;
	uint32_t self_saddr;
	uint16_t self_sport;
	bool self_excluded;
	uint32_t poll_no;
	uint64_t poll_ns; /* when the current poll's query was sent */
	unsigned rounds;
	uint64_t next_poll, next_connect, retry_ns;
	bool warned_down;
	struct known *tab[TABLE_SIZE];
};

static struct known **known_slot(struct session_sync *s, uint32_t saddr, uint16_t sport)
{
	struct known **k = &s->tab[((saddr * 2654435761u) ^ sport) % TABLE_SIZE];

	while (*k && !((*k)->saddr == saddr && (*k)->sport == sport))
		k = &(*k)->next;
	return k;
}

static void known_seen(struct session_sync *s, uint32_t saddr, uint16_t sport, uint64_t now)
{
	struct known **k = known_slot(s, saddr, sport);

	if (!*k) {
		*k = calloc(1, sizeof(**k));
		if (!*k)
			return;
		(*k)->saddr = saddr;
		(*k)->sport = sport;
	}
	(*k)->seen_ns = now;
	(*k)->seen_poll = s->poll_no;
}

/* Sessions not in this poll have ended: tell their publishers. */
static unsigned known_sweep(struct session_sync *s)
{
	unsigned gone = 0;

	for (size_t i = 0; i < TABLE_SIZE; i++) {
		struct known **k = &s->tab[i];

		while (*k) {
			if ((*k)->seen_poll == s->poll_no) {
				k = &(*k)->next;
				continue;
			}
			struct known *dead = *k;

			publishers_session_gone(s->ps, dead->saddr, dead->sport, dead->seen_ns,
						s->poll_ns);
			gone++;
			*k = dead->next;
			free(dead);
		}
	}
	return gone;
}

static void known_free(struct session_sync *s)
{
	for (size_t i = 0; i < TABLE_SIZE; i++) {
		while (s->tab[i]) {
			struct known *k = s->tab[i];

			s->tab[i] = k->next;
			free(k);
		}
	}
}

/* ---- the connection ------------------------------------------------------------- */

static void disconnect(struct session_sync *s)
{
	if (s->my)
		mysql_close(s->my);
	s->my = NULL;
}

/* Our own connection's address as the capture sees it, so it can be
 * dropped before our first query goes out. */
static void exclude_self(struct session_sync *s)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = (int)mysql_get_socket(s->my);

	/* An earlier connection's exclusion stays: its COM_QUIT and FIN may
	 * still be on their way through the capture.  (The publishers keep a
	 * few, oldest replaced first.) */
	s->self_excluded = false;
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&sin, &len) || sin.sin_family != AF_INET)
		return; /* a unix socket or IPv6: never captured */
	s->self_saddr = sin.sin_addr.s_addr;
	s->self_sport = ntohs(sin.sin_port);
	if (publishers_exclude(s->ps, s->self_saddr, s->self_sport, 1))
		log_warn("session sync: the publishers did not confirm excluding our own connection");
	s->self_excluded = true;
}

static void warn_without_process(struct session_sync *s)
{
	/* Without PROCESS an account sees only its own threads. */
	if (mysql_query(s->my, "SELECT COUNT(*) FROM information_schema.user_privileges WHERE "
			       "privilege_type = 'PROCESS' AND grantee = CONCAT('''', "
			       "SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
			       "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"))
		return;
	MYSQL_RES *res = mysql_store_result(s->my);
	MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;

	if (row && row[0] && !strcmp(row[0], "0"))
		log_warn("session sync: account '%s' lacks the PROCESS privilege and sees only its own "
			 "sessions (GRANT PROCESS ON *.* TO ...)",
			 s->cfg->mysql_user);
	if (res)
		mysql_free_result(res);
}

static bool try_connect(struct session_sync *s, uint64_t now)
{
	const struct mrte_config *cfg = s->cfg;
	unsigned timeout = 3;

	s->my = mysql_init(NULL);
	if (!s->my) {
		log_error("session sync: out of memory");
		return false;
	}
	mysql_options(s->my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	timeout = 10;
	mysql_options(s->my, MYSQL_OPT_READ_TIMEOUT, &timeout);
	mysql_options(s->my, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
	if (!mysql_real_connect(s->my, cfg->mysql_host, cfg->mysql_user, cfg->mysql_password, NULL,
				cfg->mysql_port, NULL, 0)) {
		unsigned e = mysql_errno(s->my);

		if (e == ER_ACCESS_DENIED_ERROR || e == ER_DBACCESS_DENIED_ERROR)
			log_error("session sync: MySQL %s:%u refused account '%s': %s (check "
				  "--mysql_user and the password; retrying)",
				  cfg->mysql_host, cfg->mysql_port, cfg->mysql_user, mysql_error(s->my));
		else if (!s->warned_down)
			log_warn("session sync: MySQL %s:%u is unreachable: %s; capture goes on, "
				 "default databases and closed sessions wait until it answers",
				 cfg->mysql_host, cfg->mysql_port, mysql_error(s->my));
		s->warned_down = true;
		disconnect(s);
		s->retry_ns = s->retry_ns ? s->retry_ns * 2 : RETRY_MIN_NS;
		if (s->retry_ns > RETRY_MAX_NS)
			s->retry_ns = RETRY_MAX_NS;
		s->next_connect = now + s->retry_ns;
		return false;
	}
	exclude_self(s);
	if (s->warned_down)
		log_info("session sync: connected to MySQL %s:%u", cfg->mysql_host, cfg->mysql_port);
	s->warned_down = false;
	s->retry_ns = 0;
	warn_without_process(s);
	return true;
}

/* ---- one poll --------------------------------------------------------------------- */

static int poll_processlist(struct session_sync *s, int force_db, uint64_t now)
{
	unsigned sent = 0, sessions = 0, skipped = 0;

	s->poll_ns = mono_ns();
	if (mysql_query(s->my, "SELECT host, db, state FROM information_schema.processlist "
			       "WHERE id <> connection_id()")) {
		log_warn("session sync: processlist query failed: %s (reconnecting)", mysql_error(s->my));
		disconnect(s);
		s->next_connect = now;
		return -1;
	}
	MYSQL_RES *res = mysql_store_result(s->my);

	if (!res) {
		log_warn("session sync: reading the processlist failed: %s", mysql_error(s->my));
		disconnect(s);
		s->next_connect = now;
		return -1;
	}
	s->poll_no++;
	for (MYSQL_ROW row; (row = mysql_fetch_row(res));) {
		struct pl_session ps;

		if (session_parse_row(row[0], row[1], row[2], &ps) != PL_SESSION) {
			skipped++;
			continue;
		}
		if (s->self_excluded && ps.saddr == s->self_saddr && ps.sport == s->self_sport)
			continue;
		sessions++;
		known_seen(s, ps.saddr, ps.sport, s->poll_ns);
		if (ps.db[0]) {
			publishers_sync_db(s->ps, ps.saddr, ps.sport, ps.db, force_db, s->poll_ns);
			sent++;
		}
	}
	mysql_free_result(res);
	unsigned gone = known_sweep(s);

	log_debug("session sync: poll %u: %u sessions (%u skipped), %u databases offered, %u gone",
		  s->poll_no, sessions, skipped, sent, gone);
	return (int)sent;
}

static void *session_main(void *arg)
{
	struct session_sync *s = arg;
	const uint64_t every = s->cfg->session_poll_interval * NS_PER_SEC;

	pthread_setname_np(pthread_self(), "mrte-session");
	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		uint64_t now = mono_ns();

		if (!s->my && now >= s->next_connect && !try_connect(s, now))
			goto wait;
		if (s->my) {
			bool resend = __atomic_exchange_n(&s->resend, false, __ATOMIC_ACQ_REL);

			if (resend || now >= s->next_poll) {
				int sent = poll_processlist(s, resend, now);

				if (sent < 0)
					continue;
				if (s->rounds < 2 && !resend)
					log_info("session sync: default databases of existing sessions sent "
						 "(%u of 2)",
						 ++s->rounds);
				else if (resend)
					log_info("session sync: %d default database(s) sent again", sent);
				s->next_poll = now + (s->rounds == 1 ? s->cfg->init_db_delay * NS_PER_SEC
								     : every);
			}
		}
wait:;
		uint64_t next = s->my ? s->next_poll : s->next_connect;
		int ms = next > now ? (int)((next - now) / 1000000 + 1) : 0;
		struct pollfd pfd = {.fd = s->efd, .events = POLLIN};
		uint64_t v;

		if (poll(&pfd, 1, ms) > 0 && read(s->efd, &v, sizeof(v)) < 0) {
			/* raced with another reader: nothing to do */
		}
	}
	return NULL;
}

/* ---- public ------------------------------------------------------------------------- */

struct session_sync *session_start(const struct mrte_config *cfg, struct publishers *ps)
{
	if (!cfg->mysql_host || !*cfg->mysql_host) {
		log_warn("no --mysql_host: sessions already open will replay without their default "
			 "database, and a session whose end the capture misses stays open in the player");
		return NULL;
	}
	struct session_sync *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->cfg = cfg;
	s->ps = ps;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0 || pthread_create(&s->thread, NULL, session_main, s)) {
		log_error("session sync: cannot start: %s", strerror(errno));
		if (s->efd >= 0)
			close(s->efd);
		free(s);
		return NULL;
	}
	return s;
}

static void wake(struct session_sync *s)
{
	uint64_t one = 1;

	if (write(s->efd, &one, sizeof(one)) < 0) {
		/* the counter is already set: it is awake */
	}
}

void session_resend(struct session_sync *s)
{
	if (!s)
		return;
	__atomic_store_n(&s->resend, true, __ATOMIC_RELEASE);
	wake(s);
}

void session_stop(struct session_sync *s)
{
	if (!s)
		return;
	__atomic_store_n(&s->stop, true, __ATOMIC_RELEASE);
	wake(s);
	pthread_join(s->thread, NULL);
	disconnect(s); /* still excluded: its COM_QUIT is not published */
	known_free(s);
	close(s->efd);
	free(s);
}
