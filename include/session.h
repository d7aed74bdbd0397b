/* session.h -- session sync with the source server's processlist. */
#ifndef MRTE_SESSION_H
#define MRTE_SESSION_H

#include <stdint.h>

#include "config.h"
#include "publish.h"

/* One row of information_schema.processlist, classified. */
struct pl_session {
	uint32_t saddr; /* network byte order */
	uint16_t sport;
	char db[257];   /* empty: no default database */
};

enum pl_verdict {
	PL_SESSION = 0, /* a client session at ip:port */
	PL_NO_PORT,     /* no ip:port host: socket, system thread */
	PL_REPLICATION, /* a replication thread */
	PL_IPV6,        /* an IPv6 client: not representable in MRTE */
	PL_BAD_HOST,    /* a host name instead of an address */
};

enum pl_verdict session_parse_row(const char *host, const char *db, const char *state,
				  struct pl_session *out);

struct session_sync;

/* NULL (with a warning) when no --mysql_host is configured. */
struct session_sync *session_start(const struct mrte_config *cfg, struct publishers *ps);
/* SIGUSR1: send every session's default database again. */
void session_resend(struct session_sync *s);
void session_stop(struct session_sync *s);

#endif
