/* config.h -- the agent's command line: every flag, its default, its range. */
#ifndef MRTE_CONFIG_H
#define MRTE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mrte.h"

enum capture_mode { CAPTURE_AUTO = 0, CAPTURE_XDP, CAPTURE_TC, CAPTURE_PCAP };
enum xdp_mode { XDP_MODE_AUTO = 0, XDP_MODE_NATIVE, XDP_MODE_GENERIC };
enum sink_kind { SINK_AMQP = 0, SINK_FILE, SINK_NULL };

struct mrte_config {
	/* capture */
	char *interface;
	uint16_t ports[MRTE_MAX_PORTS];
	uint32_t nports;
	uint32_t capture;  /* enum capture_mode */
	uint32_t xdp_mode; /* enum xdp_mode */
	uint32_t snapshot_len;
	uint32_t read_timeout_ms;
	uint32_t ring_mb;
	uint32_t pcap_buffer_mb;
	char *read_file;
	uint32_t local_ip; /* network byte order; 0 = from the interface */
	char *pin_dir;

	/* publishing */
	uint32_t thread_count;
	uint32_t queue_size;
	uint32_t queue_size_given; /* given on the command line: not resized to fit */
	uint32_t batch_packets;
	uint32_t batch_bytes;
	uint32_t sink; /* enum sink_kind */
	char *output;
	char *rabbitmq_host;
	uint32_t rabbitmq_port;
	char *rabbitmq_user;
	char *rabbitmq_password;
	char *rabbitmq_password_file;
	char *rabbitmq_vhost;
	char *rabbitmq_exchange_name;
	char *rabbitmq_routing_key;

	/* flow tracking */
	uint32_t max_flows;
	uint32_t reorder_timeout_ms;
	uint32_t reorder_mb;

	/* session sync */
	char *mysql_host;
	uint32_t mysql_port;
	char *mysql_user;
	char *mysql_password;
	char *mysql_password_file;
	uint32_t session_poll_interval;
	uint32_t init_db_delay;

	/* operation */
	uint32_t max_mem_mb;
	uint32_t stats_interval;
	uint32_t verbose;
};

/* Outcome of config_parse. */
enum config_result { CONFIG_OK = 0, CONFIG_EXIT_OK, CONFIG_ERROR };

/* Parse argv into cfg (defaults first).  On CONFIG_ERROR, err holds one line
 * naming the flag; the caller prints it and exits with status 2.  --help and
 * --version print to `out` and give CONFIG_EXIT_OK. */
enum config_result config_parse(struct mrte_config *cfg, int argc, char **argv, FILE *out,
				char *err, size_t errlen);
void config_free(struct mrte_config *cfg);
void config_print_help(FILE *out, const char *prog);

/* Memory the configuration allows the agent to hold, in bytes: the rings,
 * the publisher queues, the flow tables and the reorder budget.  --help and
 * the start-up log both show it. */
uint64_t config_memory_bound(const struct mrte_config *cfg);
/* The largest message body a publisher builds. */
uint64_t config_message_max(const struct mrte_config *cfg);
/* The pcap buffer (MiB) that fits the budget once the rest is sized for the
 * BPF path: what an automatic fallback to pcap may use. */
uint32_t config_pcap_buffer_fit(const struct mrte_config *cfg);

/* Parts of the bound: the process itself, and one tracked flow (its pool
 * entry and its share of the index). */
#define MEM_BASE_BYTES (8ull << 20)
#define MEM_PER_FLOW_BYTES 136

const char *config_capture_name(uint32_t mode);

#define MRTE_VERSION "0.1.0"

#endif
