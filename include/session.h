/* session.h -- session sync with the source server's processlist. */
#ifndef MRTE_SESSION_H
#define MRTE_SESSION_H

#include "config.h"
#include "publish.h"

struct session_sync;

/* NULL (with a warning) when no --mysql_host is configured. */
struct session_sync *session_start(const struct mrte_config *cfg, struct publishers *ps);
/* SIGUSR1: send every session's default database again. */
void session_resend(struct session_sync *s);
void session_stop(struct session_sync *s);

#endif
