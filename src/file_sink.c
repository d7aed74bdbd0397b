/* file_sink.c -- messages to a file, or nowhere.
 *
 * The file holds each message as a 4-byte little-endian length and the
 * body: `mrte-dump --file` reads it back.  Every publisher thread opens the
 * file with O_APPEND and writes a whole record with one writev(2), so records
 * never interleave and each client's messages keep their order.  With no
 * path the sink discards (a null sink, for measuring capture alone). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "counters.h"
#include "log.h"
#include "sink.h"

struct file_sink {
	struct sink base;
	char *path; /* NULL: discard */
	int fd;
	bool open;
};

static int file_sink_open(struct sink *s)
{
	struct file_sink *f = (struct file_sink *)s;

	if (f->open)
		return 0;
	if (f->path) {
		f->fd = open(f->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (f->fd < 0) {
			log_error("publisher %d: cannot open --output %s: %s", s->id, f->path,
				  strerror(errno));
			return -1;
		}
	}
	f->open = true;
	return 0;
}

static int file_sink_publish(struct sink *s, const void *body, size_t len, uint32_t units)
{
	struct file_sink *f = (struct file_sink *)s;
	uint8_t hdr[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
			  (uint8_t)(len >> 24)};
	struct iovec iov[2] = {{hdr, 4}, {(void *)body, len}};

	(void)units;
	if (!f->open)
		return -1;
	if (!f->path)
		return 0;
	ssize_t n = writev(f->fd, iov, 2);

	if (n != (ssize_t)(len + 4)) {
		CTR_INC(s->stats->mq_errors);
		log_error("publisher %d: write to %s failed: %s", s->id, f->path,
			  n < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return 0;
}

static int file_sink_service(struct sink *s)
{
	(void)s;
	return 0;
}

static int file_sink_fd(struct sink *s)
{
	(void)s;
	return -1;
}

static bool file_sink_is_open(struct sink *s)
{
	return ((struct file_sink *)s)->open;
}

static size_t file_sink_inflight(struct sink *s)
{
	(void)s;
	return 0;
}

static void file_sink_close(struct sink *s)
{
	struct file_sink *f = (struct file_sink *)s;

	if (f->open && f->path)
		close(f->fd);
	f->fd = -1;
	f->open = false;
}

static void file_sink_abort(struct sink *s)
{
	(void)s; /* writes to a file do not block on a peer */
}

static void file_sink_destroy(struct sink *s)
{
	struct file_sink *f = (struct file_sink *)s;

	file_sink_close(s);
	free(f->path);
	free(f);
}

static const struct sink_ops file_ops = {
	.open = file_sink_open,
	.publish = file_sink_publish,
	.service = file_sink_service,
	.fd = file_sink_fd,
	.is_open = file_sink_is_open,
	.inflight = file_sink_inflight,
	.close = file_sink_close,
	.abort = file_sink_abort,
	.destroy = file_sink_destroy,
};

struct sink *file_sink_new(const char *path, int id, struct mrte_agent_stats *st)
{
	struct file_sink *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->base.ops = &file_ops;
	f->base.stats = st;
	f->base.id = id;
	f->fd = -1;
	if (path && !(f->path = strdup(path))) {
		free(f);
		return NULL;
	}
	return &f->base;
}
