/* test_unit_session.c -- information_schema.processlist rows, classified.
 *
 * session_parse_row decides which rows are client sessions the player
 * knows (ip:port), which database they are in, and which rows to skip:
 * replication threads, sockets and system threads (no port), IPv6 clients
 * (an MRTE unit carries an IPv4 address), host names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "session.h"

static uint32_t addr(const char *dotted)
{
	struct in_addr a;

	assert_int_equal(inet_pton(AF_INET, dotted, &a), 1);
	return a.s_addr;
}

static void assert_session(const char *host, const char *db, const char *state,
			   const char *want_ip, uint16_t want_port, const char *want_db)
{
	struct pl_session s;

	if (session_parse_row(host, db, state, &s) != PL_SESSION)
		fail_msg("'%s' should be a client session", host);
	assert_int_equal(s.saddr, addr(want_ip));
	assert_int_equal(s.sport, want_port);
	assert_string_equal(s.db, want_db);
}

static void assert_verdict(enum pl_verdict want, const char *host, const char *db,
			   const char *state)
{
	struct pl_session s;
	enum pl_verdict got = session_parse_row(host, db, state, &s);

	if (got != want)
		fail_msg("host '%s' state '%s': verdict %d, expected %d", host ? host : "(null)",
			 state ? state : "(null)", got, want);
}

static void test_client_sessions(void **state)
{
	(void)state;
	assert_session("10.1.2.3:40000", "shop", "Sleep", "10.1.2.3", 40000, "shop");
	assert_session("127.0.0.1:1", "db_a", "", "127.0.0.1", 1, "db_a");
	assert_session("192.168.0.9:65535", "x", NULL, "192.168.0.9", 65535, "x");
	/* IPv4-mapped IPv6 (a dual-stack listener) is an IPv4 client. */
	assert_session("::ffff:10.0.0.7:5123", "app", "Sleep", "10.0.0.7", 5123, "app");
	assert_session("[::ffff:10.0.0.8]:5124", "app", "Sleep", "10.0.0.8", 5124, "app");
}

static void test_empty_db(void **state)
{
	(void)state;
	/* A session without a default database is still a session (it must be
	 * followed for its end), it just has no COM_INIT_DB to send. */
	assert_session("10.1.2.3:40001", NULL, "Sleep", "10.1.2.3", 40001, "");
	assert_session("10.1.2.3:40002", "", "Query", "10.1.2.3", 40002, "");
}

static void test_replication_threads(void **state)
{
	static const char *const states[] = {
		"Waiting for master to send event",
		"Has read all relay log; waiting for the slave I/O thread to update it",
		"Waiting on empty queue",
		"Master has sent all binlog to slave; waiting for more updates",
		"Waiting for source to send event",
		"Source has sent all binlog to replica; waiting for more updates",
		"Replica has read all relay log; waiting for more updates",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(states) / sizeof(*states); i++) {
		/* With or without a host: a binlog dump thread has the replica's
		 * ip:port as its host, and must still be skipped. */
		assert_verdict(PL_REPLICATION, "10.0.0.2:51000", "", states[i]);
		assert_verdict(PL_REPLICATION, "", NULL, states[i]);
	}
	/* Only a state that starts with one of them counts. */
	assert_session("10.0.0.2:51001", "db", "Sending data (Waiting for master)", "10.0.0.2",
		       51001, "db");
}

static void test_hosts_without_port(void **state)
{
	(void)state;
	assert_verdict(PL_NO_PORT, "localhost", "db", "Sleep");     /* unix socket */
	assert_verdict(PL_NO_PORT, "", NULL, "Daemon");             /* event scheduler */
	assert_verdict(PL_NO_PORT, NULL, NULL, NULL);               /* a NULL host */
	assert_verdict(PL_NO_PORT, "10.0.0.1:", "db", "Sleep");     /* empty port */
	assert_verdict(PL_NO_PORT, "10.0.0.1:0", "db", "Sleep");    /* port 0 */
	assert_verdict(PL_NO_PORT, "10.0.0.1:65536", "db", "Sleep"); /* out of range */
	assert_verdict(PL_NO_PORT, "10.0.0.1:12a", "db", "Sleep");  /* not a number */
}

static void test_ipv6_and_names(void **state)
{
	(void)state;
	assert_verdict(PL_IPV6, "::1", "db", "Sleep"); /* no port either: skipped all the same */
	assert_verdict(PL_IPV6, "::1:43210", "db", "Sleep");
	assert_verdict(PL_IPV6, "[2001:db8::5]:43211", "db", "Sleep");
	assert_verdict(PL_IPV6, "fe80::1:43212", "db", "Sleep");
	/* Without skip-name-resolve the server shows names: not usable. */
	assert_verdict(PL_BAD_HOST, "app-server-3.example:5000", "db", "Sleep");
	assert_verdict(PL_BAD_HOST, "10.0.0.256:5000", "db", "Sleep");
}

static void test_long_values(void **state)
{
	char host[300], db[400];
	struct pl_session s;

	(void)state;
	/* A host longer than any address: refused, not overflowed. */
	memset(host, '1', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	assert_verdict(PL_NO_PORT, host, "db", "Sleep");
	/* A database name longer than the buffer: the session is kept, the
	 * name is not sent (it could only be cut). */
	memset(db, 'd', sizeof(db) - 1);
	db[sizeof(db) - 1] = '\0';
	assert_int_equal(session_parse_row("10.0.0.1:7000", db, "Sleep", &s), PL_SESSION);
	assert_string_equal(s.db, "");
	/* 256 bytes fit (64 characters of 4-byte UTF-8). */
	db[256] = '\0';
	assert_int_equal(session_parse_row("10.0.0.1:7001", db, "Sleep", &s), PL_SESSION);
	assert_int_equal(strlen(s.db), 256);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_sessions),
		cmocka_unit_test(test_empty_db),
		cmocka_unit_test(test_replication_threads),
		cmocka_unit_test(test_hosts_without_port),
		cmocka_unit_test(test_ipv6_and_names),
		cmocka_unit_test(test_long_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
