/* amqp_sink.c -- publish messages to RabbitMQ with rabbitmq-c.
 *
 * One connection and one channel per publisher thread, so all messages of a
 * client travel one channel in order (as in the original collector).
 *
 * No silent loss: the channel runs in publisher-confirm mode.  A message is
 * in flight from the moment it is written until the broker acks it; a nack
 * and a connection that drops with messages still in flight count in
 * mq_errors, and messages are published `mandatory` so that a broker
 * discarding them for want of a bound queue is counted (mq_returned) and
 * reported once.  Unconfirmed messages are not re-sent: the player would
 * replay a duplicate, which is worse than a counted gap.  A write that fails
 * is not in flight: the broker drops a message whose frames did not all
 * arrive, and the publisher keeps it and sends it again on the next
 * connection (or counts it in drop_unpublished at stop), so mq_errors
 * counts exactly the messages that may be missing from the queue.
 *
 * rabbitmq-c blocks in amqp_basic_publish while the broker is not reading
 * (flow control, a hung broker).  The publisher's watchdog calls
 * amqp_sink abort() from another thread, which shuts the socket down so the
 * write fails; the lock only guards the socket's lifetime against that.
 * The socket is exposed to abort() from the moment it connects, so that a
 * stop also cuts short a handshake with a broker that never answers.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "counters.h"
#include "log.h"
#include "sink.h"

struct amqp_sink {
	struct sink base;
	const struct mrte_config *cfg;
	amqp_connection_state_t conn;
	pthread_mutex_t lock; /* guards fd against abort() */
	int fd;
	bool aborted; /* abort() shut fd down (guarded by lock) */
	bool open;
	bool ever_open;
	/* confirm window: tags [low_tag, next_tag) may be unsettled */
	uint64_t next_tag, low_tag;
	uint32_t *unsettled; /* units in each unsettled message, 0 = settled */
	uint64_t window_mask;
	size_t inflight;
	uint64_t inflight_units;
	uint64_t fails_since_log; /* failures since the last connection opened */
};

#define AMQP_CHANNEL 1
#define FAIL_LOG_INTERVAL_NS (10ull * 1000000000ull)

/* ---- error reporting ------------------------------------------------------- */

/* Every publisher talks to the same broker with the same settings, so a
 * broker problem is one problem: say the first failure at once, then at most
 * one line every 10 s while it lasts -- for all publishers together, not one
 * line per publisher.  Each publisher still counts its own failures. */
static uint64_t fail_logged_ns; /* atomic: when any publisher last said one */
static bool warned_returned;    /* atomic: the unbound-exchange warning was given */

static bool fail_should_log(struct amqp_sink *a)
{
	uint64_t now = mono_ns();
	uint64_t last = __atomic_load_n(&fail_logged_ns, __ATOMIC_RELAXED);

	a->fails_since_log++;
	if (last && now - last < FAIL_LOG_INTERVAL_NS)
		return false;
	return __atomic_compare_exchange_n(&fail_logged_ns, &last, now, false, __ATOMIC_RELAXED,
					   __ATOMIC_RELAXED);
}

/* A login is refused when the broker says so (or, without the
 * authentication_failure_close capability, just closes).  A broker that
 * accepted the connection and then never answered -- or a stop that cut the
 * wait short -- refused nothing: pointing at the settings would mislead. */
static bool login_refused(amqp_rpc_reply_t r)
{
	return r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION ||
	       (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		r.library_error == AMQP_STATUS_CONNECTION_CLOSED);
}

static void describe_reply(amqp_rpc_reply_t r, char *buf, size_t len)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		snprintf(buf, len, "ok");
		return;
	case AMQP_RESPONSE_NONE:
		snprintf(buf, len, "no reply");
		return;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		snprintf(buf, len, "%s", amqp_error_string2(r.library_error));
		return;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_t *c = r.reply.decoded;

			snprintf(buf, len, "broker closed the connection: %u %.*s", c->reply_code,
				 (int)c->reply_text.len, (const char *)c->reply_text.bytes);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			amqp_channel_close_t *c = r.reply.decoded;

			snprintf(buf, len, "broker closed the channel: %u %.*s", c->reply_code,
				 (int)c->reply_text.len, (const char *)c->reply_text.bytes);
		} else {
			snprintf(buf, len, "broker error (method 0x%08x)", r.reply.id);
		}
		return;
	}
	snprintf(buf, len, "unknown reply");
}

/* ---- connection lifetime ---------------------------------------------------- */

static void window_reset(struct amqp_sink *a)
{
	memset(a->unsettled, 0, (a->window_mask + 1) * sizeof(*a->unsettled));
	a->next_tag = a->low_tag = 1;
	a->inflight = 0;
	a->inflight_units = 0;
	CTR_SET(a->base.stats->mq_inflight, 0);
}

static void drop_connection(struct amqp_sink *a, const char *why)
{
	if (a->inflight) {
		log_error("publisher %d: %zu message(s) unconfirmed when the connection to %s:%u "
			  "dropped (%s); counted in MQError",
			  a->base.id, a->inflight, a->cfg->rabbitmq_host, a->cfg->rabbitmq_port, why);
		CTR_ADD(a->base.stats->mq_errors, a->inflight);
		CTR_ADD(a->base.stats->mq_units_lost, a->inflight_units);
	}
	pthread_mutex_lock(&a->lock);
	if (a->conn)
		amqp_destroy_connection(a->conn);
	a->conn = NULL;
	a->fd = -1;
	a->open = false;
	pthread_mutex_unlock(&a->lock);
	window_reset(a);
}

/* A handshake that abort() cut short (the agent is stopping) failed through
 * no fault of the broker's: say nothing rather than blame the settings. */
static bool open_fail_should_log(struct amqp_sink *a)
{
	pthread_mutex_lock(&a->lock);
	bool cut = a->aborted;

	pthread_mutex_unlock(&a->lock);
	return !cut && fail_should_log(a);
}

/* Give up a connection being opened: take its socket back from abort()
 * before the connection closes it. */
static void open_failed(struct amqp_sink *a, amqp_connection_state_t conn)
{
	pthread_mutex_lock(&a->lock);
	a->fd = -1;
	amqp_destroy_connection(conn);
	pthread_mutex_unlock(&a->lock);
}

static int amqp_sink_open(struct sink *s)
{
	struct amqp_sink *a = (struct amqp_sink *)s;
	const struct mrte_config *cfg = a->cfg;
	struct timeval tv = {.tv_sec = 3};
	char why[256];
	amqp_rpc_reply_t r;

	if (a->open)
		return 0;
	amqp_connection_state_t conn = amqp_new_connection();
	amqp_socket_t *sock = conn ? amqp_tcp_socket_new(conn) : NULL;

	if (!sock) {
		if (conn)
			amqp_destroy_connection(conn);
		log_error("publisher %d: out of memory creating an AMQP connection", s->id);
		return -1;
	}
	amqp_set_handshake_timeout(conn, &tv);
	amqp_set_rpc_timeout(conn, &tv);
	int st = amqp_socket_open_noblock(sock, cfg->rabbitmq_host, (int)cfg->rabbitmq_port, &tv);

	if (st != AMQP_STATUS_OK) {
		if (fail_should_log(a))
			log_error("publisher %d: cannot connect to RabbitMQ at %s:%u: %s (retrying)",
				  s->id, cfg->rabbitmq_host, cfg->rabbitmq_port, amqp_error_string2(st));
		amqp_destroy_connection(conn);
		return -1;
	}
	/* Each step below waits up to 3 s for a broker that may never answer;
	 * a stop must not wait for that (amqp_sink_abort). */
	pthread_mutex_lock(&a->lock);
	a->fd = amqp_get_sockfd(conn);
	a->aborted = false;
	pthread_mutex_unlock(&a->lock);

	/* Ask to be told when the broker blocks publishers, and name the
	 * connection so `rabbitmqctl list_connections` shows who we are. */
	char cname[96];
	amqp_table_entry_t caps[2], props[3];
	amqp_table_t caps_table = {.num_entries = 2, .entries = caps};

	snprintf(cname, sizeof(cname), "mrte-collector publisher %d", s->id);
	caps[0].key = amqp_cstring_bytes("connection.blocked");
	caps[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
	caps[0].value.value.boolean = 1;
	caps[1].key = amqp_cstring_bytes("authentication_failure_close");
	caps[1].value.kind = AMQP_FIELD_KIND_BOOLEAN;
	caps[1].value.value.boolean = 1;
	props[0].key = amqp_cstring_bytes("capabilities");
	props[0].value.kind = AMQP_FIELD_KIND_TABLE;
	props[0].value.value.table = caps_table;
	props[1].key = amqp_cstring_bytes("connection_name");
	props[1].value.kind = AMQP_FIELD_KIND_UTF8;
	props[1].value.value.bytes = amqp_cstring_bytes(cname);
	props[2].key = amqp_cstring_bytes("product");
	props[2].value.kind = AMQP_FIELD_KIND_UTF8;
	props[2].value.value.bytes = amqp_cstring_bytes("mrte-collector " MRTE_VERSION);
	amqp_table_t client_props = {.num_entries = 3, .entries = props};

	r = amqp_login_with_properties(conn, cfg->rabbitmq_vhost, 0, 131072, 0, &client_props,
				       AMQP_SASL_METHOD_PLAIN, cfg->rabbitmq_user,
				       cfg->rabbitmq_password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		bool say = open_fail_should_log(a);

		describe_reply(r, why, sizeof(why));
		if (say && !login_refused(r))
			log_error("publisher %d: RabbitMQ %s:%u accepted the connection but the login "
				  "did not complete: %s (broker hung, overloaded or gone; retrying)",
				  s->id, cfg->rabbitmq_host, cfg->rabbitmq_port, why);
		else if (say)
			log_error("publisher %d: RabbitMQ %s:%u refused login as '%s' on vhost '%s': "
				  "%s (check --rabbitmq_user/--rabbitmq_password/--rabbitmq_vhost)",
				  s->id, cfg->rabbitmq_host, cfg->rabbitmq_port, cfg->rabbitmq_user,
				  cfg->rabbitmq_vhost, why);
		open_failed(a, conn);
		return -1;
	}
	amqp_channel_open(conn, AMQP_CHANNEL);
	r = amqp_get_rpc_reply(conn);
	if (r.reply_type == AMQP_RESPONSE_NORMAL && *cfg->rabbitmq_exchange_name) {
		/* Passive declare: fail now, with a clear message, rather than
		 * have the broker close the channel on the first publish. */
		amqp_exchange_declare(conn, AMQP_CHANNEL,
				      amqp_cstring_bytes(cfg->rabbitmq_exchange_name),
				      amqp_cstring_bytes("fanout"), 1, 0, 0, 0, amqp_empty_table);
		r = amqp_get_rpc_reply(conn);
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			describe_reply(r, why, sizeof(why));
			if (open_fail_should_log(a))
				log_error("publisher %d: exchange '%s' is not usable on %s:%u vhost "
					  "'%s': %s (declare it, fanout or direct, and bind a queue)",
					  s->id, cfg->rabbitmq_exchange_name, cfg->rabbitmq_host,
					  cfg->rabbitmq_port, cfg->rabbitmq_vhost, why);
			open_failed(a, conn);
			return -1;
		}
	}
	if (r.reply_type == AMQP_RESPONSE_NORMAL) {
		amqp_confirm_select_t req = {0};

		amqp_simple_rpc_decoded(conn, AMQP_CHANNEL, AMQP_CONFIRM_SELECT_METHOD,
					AMQP_CONFIRM_SELECT_OK_METHOD, &req);
		r = amqp_get_rpc_reply(conn);
	}
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		describe_reply(r, why, sizeof(why));
		if (open_fail_should_log(a))
			log_error("publisher %d: cannot open a channel on %s:%u: %s", s->id,
				  cfg->rabbitmq_host, cfg->rabbitmq_port, why);
		open_failed(a, conn);
		return -1;
	}

	pthread_mutex_lock(&a->lock);
	a->conn = conn;
	a->fd = amqp_get_sockfd(conn);
	a->open = true;
	pthread_mutex_unlock(&a->lock);
	window_reset(a);
	if (a->ever_open) {
		CTR_INC(s->stats->mq_reconnects);
		log_info("publisher %d: reconnected to RabbitMQ %s:%u after %llu failure(s)", s->id,
			 cfg->rabbitmq_host, cfg->rabbitmq_port,
			 (unsigned long long)a->fails_since_log);
	} else {
		log_debug("publisher %d: connected to RabbitMQ %s:%u", s->id, cfg->rabbitmq_host,
			  cfg->rabbitmq_port);
	}
	a->ever_open = true;
	__atomic_store_n(&fail_logged_ns, 0, __ATOMIC_RELAXED); /* a new failure: say it */
	a->fails_since_log = 0;
	return 0;
}

/* ---- publishing and confirms --------------------------------------------------- */

static int amqp_sink_publish(struct sink *s, const void *body, size_t len, uint32_t units)
{
	struct amqp_sink *a = (struct amqp_sink *)s;
	amqp_basic_properties_t props = {
		._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG,
		.content_type = amqp_cstring_bytes("text/plain"),
		.delivery_mode = 1, /* transient, as the original */
	};
	amqp_bytes_t b = {.len = len, .bytes = (void *)body};

	if (!a->open)
		return -1;
	if (a->next_tag - a->low_tag > a->window_mask)
		return -1; /* caller keeps inflight below the window; never reached */
	int st = amqp_basic_publish(a->conn, AMQP_CHANNEL,
				    amqp_cstring_bytes(a->cfg->rabbitmq_exchange_name),
				    amqp_cstring_bytes(a->cfg->rabbitmq_routing_key), 1, 0, &props, b);

	if (st != AMQP_STATUS_OK) {
		/* Not counted in mq_errors: the message is kept and sent again
		 * (see the top of the file); counting it would count a loss twice. */
		if (fail_should_log(a))
			log_error("publisher %d: publish to %s:%u failed: %s (reconnecting; the "
				  "message stays queued)",
				  s->id, a->cfg->rabbitmq_host, a->cfg->rabbitmq_port,
				  amqp_error_string2(st));
		drop_connection(a, amqp_error_string2(st));
		return -1;
	}
	a->unsettled[a->next_tag & a->window_mask] = units ? units : 1;
	a->inflight_units += units ? units : 1;
	a->next_tag++;
	a->inflight++;
	CTR_SET(s->stats->mq_inflight, a->inflight);
	return 0;
}

static void settle(struct amqp_sink *a, uint64_t tag, bool multiple, bool nack)
{
	uint64_t from = multiple ? a->low_tag : tag;

	if (tag >= a->next_tag)
		return;
	for (uint64_t t = from; t <= tag; t++) {
		uint32_t *slot = &a->unsettled[t & a->window_mask];

		if (t < a->low_tag || !*slot)
			continue;
		if (nack) {
			CTR_INC(a->base.stats->mq_errors);
			CTR_ADD(a->base.stats->mq_units_lost, *slot);
		}
		a->inflight--;
		a->inflight_units -= *slot;
		*slot = 0;
	}
	while (a->low_tag < a->next_tag && !a->unsettled[a->low_tag & a->window_mask])
		a->low_tag++;
	CTR_SET(a->base.stats->mq_inflight, a->inflight);
}

static int amqp_sink_service(struct sink *s)
{
	struct amqp_sink *a = (struct amqp_sink *)s;
	struct timeval zero = {0, 0};
	amqp_frame_t frame;

	while (a->open) {
		int st = amqp_simple_wait_frame_noblock(a->conn, &frame, &zero);

		if (st == AMQP_STATUS_TIMEOUT)
			break;
		if (st != AMQP_STATUS_OK) {
			if (fail_should_log(a))
				log_error("publisher %d: connection to %s:%u lost: %s", s->id,
					  a->cfg->rabbitmq_host, a->cfg->rabbitmq_port,
					  amqp_error_string2(st));
			drop_connection(a, amqp_error_string2(st));
			return -1;
		}
		if (frame.frame_type != AMQP_FRAME_METHOD)
			continue; /* header/body of a returned message, heartbeats */
		switch (frame.payload.method.id) {
		case AMQP_BASIC_ACK_METHOD: {
			amqp_basic_ack_t *m = frame.payload.method.decoded;

			settle(a, m->delivery_tag, m->multiple, false);
			break;
		}
		case AMQP_BASIC_NACK_METHOD: {
			amqp_basic_nack_t *m = frame.payload.method.decoded;

			settle(a, m->delivery_tag, m->multiple, true);
			break;
		}
		case AMQP_BASIC_RETURN_METHOD: {
			amqp_basic_return_t *m = frame.payload.method.decoded;

			CTR_INC(s->stats->mq_returned);
			if (!__atomic_exchange_n(&warned_returned, true, __ATOMIC_RELAXED))
				log_warn("publisher %d: the broker discards messages: %u %.*s (bind a "
					 "queue to exchange '%s'); counted as mq_returned",
					 s->id, m->reply_code, (int)m->reply_text.len,
					 (const char *)m->reply_text.bytes,
					 a->cfg->rabbitmq_exchange_name);
			break;
		}
		case AMQP_CONNECTION_BLOCKED_METHOD: {
			amqp_connection_blocked_t *m = frame.payload.method.decoded;

			log_warn("publisher %d: RabbitMQ blocks publishing: %.*s", s->id,
				 (int)m->reason.len, (const char *)m->reason.bytes);
			break;
		}
		case AMQP_CONNECTION_UNBLOCKED_METHOD:
			log_info("publisher %d: RabbitMQ unblocked publishing", s->id);
			break;
		case AMQP_CHANNEL_CLOSE_METHOD:
		case AMQP_CONNECTION_CLOSE_METHOD: {
			amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
					      .reply = frame.payload.method};
			char why[256];

			describe_reply(r, why, sizeof(why));
			log_error("publisher %d: %s (reconnecting)", s->id, why);
			drop_connection(a, why);
			return -1;
		}
		default:
			break;
		}
	}
	if (a->open)
		amqp_maybe_release_buffers(a->conn);
	return 0;
}

/* ---- the rest of the interface -------------------------------------------------- */

static int amqp_sink_fd(struct sink *s)
{
	struct amqp_sink *a = (struct amqp_sink *)s;

	return a->open ? a->fd : -1;
}

static bool amqp_sink_is_open(struct sink *s)
{
	return ((struct amqp_sink *)s)->open;
}

static size_t amqp_sink_inflight(struct sink *s)
{
	return ((struct amqp_sink *)s)->inflight;
}

static void amqp_sink_close(struct sink *s)
{
	struct amqp_sink *a = (struct amqp_sink *)s;
	struct timeval tv = {.tv_sec = 1};

	if (!a->open)
		return;
	amqp_set_rpc_timeout(a->conn, &tv);
	amqp_channel_close(a->conn, AMQP_CHANNEL, AMQP_REPLY_SUCCESS);
	amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
	drop_connection(a, "closed by the agent");
}

static void amqp_sink_abort(struct sink *s)
{
	struct amqp_sink *a = (struct amqp_sink *)s;

	pthread_mutex_lock(&a->lock);
	if (a->fd >= 0) {
		shutdown(a->fd, SHUT_RDWR);
		a->aborted = true;
	}
	pthread_mutex_unlock(&a->lock);
}

static void amqp_sink_destroy(struct sink *s)
{
	struct amqp_sink *a = (struct amqp_sink *)s;

	if (a->open) {
		pthread_mutex_lock(&a->lock);
		amqp_destroy_connection(a->conn);
		a->conn = NULL;
		a->open = false;
		pthread_mutex_unlock(&a->lock);
	}
	pthread_mutex_destroy(&a->lock);
	free(a->unsettled);
	free(a);
}

static const struct sink_ops amqp_ops = {
	.open = amqp_sink_open,
	.publish = amqp_sink_publish,
	.service = amqp_sink_service,
	.fd = amqp_sink_fd,
	.is_open = amqp_sink_is_open,
	.inflight = amqp_sink_inflight,
	.close = amqp_sink_close,
	.abort = amqp_sink_abort,
	.destroy = amqp_sink_destroy,
};

struct sink *amqp_sink_new(const struct mrte_config *cfg, int id, struct mrte_agent_stats *st)
{
	struct amqp_sink *a = calloc(1, sizeof(*a));
	uint64_t window = 2;

	if (!a)
		return NULL;
	while (window < 2ull * cfg->queue_size + 2)
		window <<= 1;
	a->unsettled = calloc(window, sizeof(*a->unsettled));
	if (!a->unsettled) {
		free(a);
		return NULL;
	}
	a->window_mask = window - 1;
	a->base.ops = &amqp_ops;
	a->base.stats = st;
	a->base.id = id;
	a->cfg = cfg;
	a->fd = -1;
	pthread_mutex_init(&a->lock, NULL);
	window_reset(a);
	return &a->base;
}
