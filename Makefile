# sweepd build. Every directory's *.c files are found by wildcard, so adding a
# source file needs no edit here. Each program's main() lives in its own file
# (daemon/main.c, worker/main.c, cli/main.c, trainer/sweep_train.c); the rest
# of each directory is an archive that unit tests link against.
#
#   make            release build in build/
#   make test       unit and integration tests, release and ASan/UBSan builds
#   make bench      benchmarks (see docs/BENCHMARKS.md)
#   make demo       a real sweep on the Brown corpus (see README.md)
#   make data       fetch and convert the Brown corpus into data/brown.txt
#   make install    PREFIX=/usr/local DESTDIR=

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?= 0
CC      ?= cc

PKGS := libuv sqlite3 libcjson libcurl openblas lapack
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror \
               -Wshadow -Wno-unused-parameter -Icommon -Itests/unit -Itrainer -Idaemon -Iworker -Icli \
               $(PKG_CFLAGS)
ifeq ($(SAN),1)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else ifeq ($(SAN),fuzz)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
else
OPT := -O2 -march=x86-64-v2 -mtune=native
endif
# The trainer's loops are written for auto-vectorisation; they get -O3.
TRAINER_OPT := $(if $(filter 1 fuzz,$(SAN)),$(OPT),-O3 -march=x86-64-v2 -mtune=native -fno-math-errno)
CFLAGS ?=
LDFLAGS ?=
ALL_CFLAGS = $(CFLAGS_BASE) $(OPT) $(CFLAGS)
LDLIBS := $(PKG_LIBS) -lm -lpthread

MAINS := daemon/main.c worker/main.c cli/main.c trainer/sweep_train.c
lib_srcs = $(filter-out $(MAINS),$(wildcard $(1)/*.c))

COMMON_SRCS  := $(call lib_srcs,common)
TRAINER_SRCS := $(call lib_srcs,trainer)
DAEMON_SRCS  := $(call lib_srcs,daemon)
WORKER_SRCS  := $(call lib_srcs,worker)
CLI_SRCS     := $(call lib_srcs,cli)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBCOMMON  := $(BUILD)/libcommon.a
LIBTRAINER := $(BUILD)/libtrainer.a
LIBDAEMON  := $(BUILD)/libdaemon.a
LIBWORKER  := $(BUILD)/libworker.a
LIBCLI     := $(BUILD)/libcli.a
ALL_LIBS   := $(LIBDAEMON) $(LIBWORKER) $(LIBCLI) $(LIBTRAINER) $(LIBCOMMON)

# A program is built once its main file exists.
PROGRAMS := $(if $(wildcard daemon/main.c),$(BUILD)/sweepd) \
            $(if $(wildcard worker/main.c),$(BUILD)/sweep-worker) \
            $(if $(wildcard cli/main.c),$(BUILD)/sweepctl) \
            $(if $(wildcard trainer/sweep_train.c),$(BUILD)/sweep-train)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

.PHONY: all programs tests benches test test-release test-san bench demo data \
        install clean fuzz chaos deps
all: programs tests benches
programs: $(PROGRAMS)
tests: $(UNIT_BINS)
benches: $(BENCH_BINS)
.PHONY: fuzzers
fuzzers: $(FUZZ_BINS)

# Schema migrations are embedded into the daemon as a generated C file.
SCHEMA_SQL := $(sort $(wildcard schema/*.sql))
$(BUILD)/gen/schema_sql.c: $(SCHEMA_SQL) tools/embed_schema.sh
	@mkdir -p $(dir $@)
	sh tools/embed_schema.sh $(SCHEMA_SQL) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/trainer/%.o: trainer/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(TRAINER_OPT) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/gen/schema_sql.o: $(BUILD)/gen/schema_sql.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBCOMMON): $(call obj,$(COMMON_SRCS))
$(LIBTRAINER): $(call obj,$(TRAINER_SRCS))
$(LIBDAEMON): $(call obj,$(DAEMON_SRCS)) $(BUILD)/obj/gen/schema_sql.o
$(LIBWORKER): $(call obj,$(WORKER_SRCS))
$(LIBCLI): $(call obj,$(CLI_SRCS))
$(BUILD)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/sweepd: $(BUILD)/obj/daemon/main.o $(ALL_LIBS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)
$(BUILD)/sweep-worker: $(BUILD)/obj/worker/main.o $(ALL_LIBS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)
$(BUILD)/sweepctl: $(BUILD)/obj/cli/main.o $(ALL_LIBS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)
$(BUILD)/sweep-train: $(BUILD)/obj/trainer/sweep_train.o $(ALL_LIBS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# Tests run twice: against the release build and against an ASan/UBSan build.
# Parallel builds: each build tree is made with -j2 (the machine has 2 cores).
JOBS ?= 2
test: test-release test-san
	@sh tests/summary.sh build/test-results.txt build-san/test-results.txt
test-release:
	$(MAKE) -j$(JOBS) BUILD=build SAN=0 all
	sh tests/run.sh build
test-san:
	$(MAKE) -j$(JOBS) BUILD=build-san SAN=1 programs tests
	sh tests/run.sh build-san

bench:
	sh tools/install_deps.sh bench
	$(MAKE) -j$(JOBS) BUILD=build SAN=0 all
	sh bench/run.sh build

data: data/brown.txt
data/brown.txt:
	sh tools/make_data.sh

demo:
	sh tools/demo.sh

fuzz:
	sh tests/fuzz/run.sh

chaos:
	$(MAKE) -j$(JOBS) BUILD=build SAN=0 programs
	/usr/bin/python3 tests/integration/chaos.py --build build --long

deps:
	sh tools/install_deps.sh

install: programs
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/sweepd/sweep_specs
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 sweep_specs/*.json $(DESTDIR)$(PREFIX)/share/sweepd/sweep_specs/

clean:
	rm -rf build build-san build-fuzz
.SECONDARY:
