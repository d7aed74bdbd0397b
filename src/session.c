/* session.c -- placeholder until session sync lands. */
#include <stdlib.h>

#include "log.h"
#include "session.h"

struct session_sync *session_start(const struct mrte_config *cfg, struct publishers *ps)
{
	(void)ps;
	if (cfg->mysql_host)
		log_warn("session sync is not built yet: --mysql_host ignored");
	return NULL;
}

void session_resend(struct session_sync *s)
{
	(void)s;
}

void session_stop(struct session_sync *s)
{
	(void)s;
}
