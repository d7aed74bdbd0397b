# mrte-collector -- build, test, demo, bench.
#
#   make            build build/mrte-collector and the tools
#   sudo make test  install what is missing (apt), build, run every test
#   sudo make demo  install, build, run the collector against throwaway servers
#   sudo make bench capacity / CPU / memory / latency benchmark -> BENCHMARKS.md
#
# V=1 shows the commands.  Everything built lands in build/.

.DELETE_ON_ERROR:
.SUFFIXES:

BUILD     ?= build
CC        ?= gcc
CLANG     ?= clang
BPFTOOL   ?= bpftool
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
ARCH      := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

WARN      := -Wall -Wextra -Werror
CFLAGS    ?= -O2 -g
ALL_CFLAGS := $(CFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -pthread \
              -Iinclude -Ibpf -I$(BUILD) -I/usr/include/mariadb
LDLIBS    := -lbpf -lelf -lpcap -lrabbitmq -lmariadb -lz -lm -lpthread

# BPF: -mcpu=v3 is required by clang 14 for variable-length copies to verify.
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) $(WARN) \
              -Wno-unused-function -Ibpf $(if $(MULTIARCH),-I/usr/include/$(MULTIARCH))

# ---- the agent --------------------------------------------------------------

# In data-path order: capture -> flow -> wire -> publish -> sink.
AGENT_SRCS := src/log.c src/config.c src/capture.c src/capture_bpf.c src/pcap_source.c src/queue.c \
              src/flow.c src/wire.c src/publish.c src/amqp_sink.c src/file_sink.c \
              src/session.c src/stats.c src/main.c
AGENT_OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(AGENT_SRCS))
LIB_OBJS   := $(filter-out $(BUILD)/obj/main.o,$(AGENT_OBJS))

TOOLS := $(BUILD)/mrte-dump $(BUILD)/loadgen

.PHONY: all
all: $(BUILD)/mrte-collector $(TOOLS) $(BUILD)/mrte-collector.8

# The man page's OPTIONS come from --help: they cannot drift apart.
$(BUILD)/mrte-collector.8: $(BUILD)/mrte-collector doc/mrte-collector.8.in tools/gen-man.sh
	$(call msg,MAN,$@)
	$(Q)tools/gen-man.sh $(BUILD)/mrte-collector doc/mrte-collector.8.in > $@

$(BUILD)/obj $(BUILD)/asan $(BUILD)/tests $(BUILD)/fuzz:
	$(Q)mkdir -p $@

$(BUILD)/mrte.bpf.o: bpf/mrte.bpf.c bpf/mrte.h bpf/mrte_parse.h | $(BUILD)/obj
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/mrte.skel.h: $(BUILD)/mrte.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name mrte_bpf > $@

$(BUILD)/obj/%.o: src/%.c $(wildcard include/*.h) bpf/mrte.h bpf/mrte_parse.h $(BUILD)/mrte.skel.h | $(BUILD)/obj
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/mrte-collector: $(AGENT_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/mrte-dump: tools/mrte-dump.c $(BUILD)/obj/wire.o $(BUILD)/obj/log.o include/wire.h
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) tools/mrte-dump.c $(BUILD)/obj/wire.o $(BUILD)/obj/log.o -o $@ -lrabbitmq -lz

$(BUILD)/loadgen: tools/loadgen.c
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $< -o $@ -lpthread

# ---- fuzzing (libFuzzer) ------------------------------------------------------

FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer,address,undefined -Iinclude -Ibpf -I$(BUILD) \
               -I/usr/include/mariadb -std=gnu11 -D_GNU_SOURCE -pthread $(WARN)
FUZZERS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(AGENT_SRCS) $(wildcard include/*.h) $(BUILD)/mrte.skel.h | $(BUILD)/fuzz
	$(call msg,FUZZ,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $< $(filter-out src/main.c,$(AGENT_SRCS)) -o $@ $(LDLIBS)

.PHONY: fuzz
fuzz: $(FUZZERS)
	$(Q)tests/fuzz/run.sh $(or $(FUZZ_SECONDS),60) $(FUZZERS)

# ---- tests ------------------------------------------------------------------

# Unit tests run under AddressSanitizer and UBSan.
SAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASAN_OBJS  := $(patsubst src/%.c,$(BUILD)/asan/%.o,$(filter-out src/main.c,$(AGENT_SRCS)))
.SECONDARY: $(ASAN_OBJS)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_unit_*.c))
BPF_TESTS  := $(patsubst tests/bpf/%.c,$(BUILD)/tests/%,$(wildcard tests/bpf/test_bpf_*.c))

$(BUILD)/asan/%.o: src/%.c $(wildcard include/*.h) bpf/mrte.h bpf/mrte_parse.h $(BUILD)/mrte.skel.h | $(BUILD)/asan
	$(call msg,CC-SAN,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN_CFLAGS) -c $< -o $@

$(BUILD)/tests/test_unit_%: tests/unit/test_unit_%.c $(wildcard tests/unit/*.h) $(ASAN_OBJS) | $(BUILD)/tests
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN_CFLAGS) -Itests/unit $< $(ASAN_OBJS) -o $@ $(LDLIBS) -lcmocka

$(BUILD)/tests/test_bpf_%: tests/bpf/test_bpf_%.c $(wildcard tests/bpf/*.h) $(LIB_OBJS) | $(BUILD)/tests
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/unit $< $(LIB_OBJS) -o $@ $(LDLIBS) -lcmocka

.PHONY: deps build-tests unit bpf-test integration test
deps:
	$(Q)tools/install-deps.sh

build-tests: all $(UNIT_TESTS) $(BPF_TESTS) $(FUZZERS)

unit: build-tests
	$(Q)tests/run-unit.sh $(UNIT_TESTS)

bpf-test: build-tests
	$(Q)tests/run-unit.sh $(BPF_TESTS)

integration: all
	$(Q)tests/integration/run.sh

# The one test command (README, .ci/run): installs, builds, runs everything.
test: deps
	$(Q)$(MAKE) --no-print-directory build-tests
	$(Q)tests/run-all.sh

# ---- demo, bench, install -----------------------------------------------------

.PHONY: demo bench install clean
demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tools/demo.sh

bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tools/bench.sh

PREFIX ?= /usr/local
install: all
	install -D -m 0755 $(BUILD)/mrte-collector $(DESTDIR)$(PREFIX)/sbin/mrte-collector
	install -D -m 0755 $(BUILD)/mrte-dump $(DESTDIR)$(PREFIX)/bin/mrte-dump
	install -D -m 0644 $(BUILD)/mrte-collector.8 $(DESTDIR)$(PREFIX)/share/man/man8/mrte-collector.8

clean:
	rm -rf $(BUILD)
