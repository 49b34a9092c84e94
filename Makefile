# limpet — a transparent, reconnecting tunnel.
#   make            build/limpet
#   make test       install missing deps, build (plain + ASan/UBSan), run every suite
#   make demo       install missing deps, build, run a transfer through a link cut every 2 s
#   make fuzz       run each libFuzzer harness for FUZZ_TIME seconds
#   make bench      scripts/bench.sh: limpet against socat/stunnel/ssh on this machine
#   make lint       clang-format check and banned functions

BUILD    ?= build
CC       ?= cc
PYTHON   ?= /usr/bin/python3
FUZZ_TIME ?= 30
VERSION  := 0.1.0

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wvla -Wformat=2 -Wno-format-nonliteral -Wundef
CPPFLAGS := -Iinclude -D_GNU_SOURCE -DLP_VERSION='"$(VERSION)"'
OPT      ?= -O2 -g
SANFLAGS :=
ifeq ($(SAN),1)
OPT      := -O1 -g -fno-omit-frame-pointer
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
CFLAGS_ALL := -std=c11 $(OPT) $(WARN) $(SANFLAGS) $(CFLAGS)
LDLIBS_ALL := -lev -lyaml -ljansson -lmbedtls -lmbedx509 -lmbedcrypto -lcrypto -lm $(LDLIBS)

CORE_SRC := $(wildcard src/core/*.c)
APP_SRC  := $(filter-out src/app/main.c,$(wildcard src/app/*.c))
IO_SRC   := $(wildcard src/io/*.c)
LIB_SRC  := $(CORE_SRC) $(APP_SRC) $(IO_SRC)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_HELPERS := $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all asan test unit unit-asan e2e e2e-asan mcp mcp-asan netns fuzz fuzz-build fuzz-regress \
        bench demo deps clean lint

all: $(BUILD)/limpet $(TOOL_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/liblimpet.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/limpet: $(BUILD)/obj/src/app/main.o $(BUILD)/liblimpet.a
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(UNIT_HELPERS) $(BUILD)/liblimpet.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS_ALL) -o $@ $< $(UNIT_HELPERS) $(BUILD)/liblimpet.a \
	    -lcmocka $(LDLIBS_ALL)

# Small programs the end-to-end tests drive (a scripted tunnel client, ...).
$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/liblimpet.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS_ALL) -o $@ $< $(BUILD)/liblimpet.a $(LDLIBS_ALL)

unit-bins: $(UNIT_BIN)

# Each suite runs on its own so one failure names its file; all run before the verdict.
unit: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || fail=1; done; exit $$fail

asan:
	$(MAKE) BUILD=build/asan SAN=1 all unit-bins

unit-asan: asan
	$(MAKE) BUILD=build/asan SAN=1 unit

E2E_ENV = LIMPET_BIN=$(abspath $(BUILD)/limpet) LIMPET_ROOT=$(CURDIR)
e2e: all
	$(E2E_ENV) $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

e2e-asan: asan
	LIMPET_BIN=$(abspath build/asan/limpet) LIMPET_ROOT=$(CURDIR) LIMPET_ASAN=1 \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

netns: all
	$(E2E_ENV) $(PYTHON) -m pytest -q -p no:cacheprovider -rs tests/netns

# Real MCP hosts and servers from npm (tests/mcp/package.json; `make deps` installs them).
mcp: all
	$(E2E_ENV) $(PYTHON) -m pytest -q -p no:cacheprovider tests/mcp

mcp-asan: asan
	LIMPET_BIN=$(abspath build/asan/limpet) LIMPET_ROOT=$(CURDIR) LIMPET_ASAN=1 \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/mcp

deps:
	@scripts/install-deps.sh

test: deps
	$(MAKE) all unit
	$(MAKE) unit-asan
	$(MAKE) fuzz-regress
	$(MAKE) e2e
	$(MAKE) e2e-asan
	$(MAKE) mcp
	$(MAKE) mcp-asan
	$(MAKE) netns

# ---- fuzzing (clang + libFuzzer) -------------------------------------------------------
FUZZ_CFLAGS := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined $(CPPFLAGS) \
               -Wall -Wextra -Werror
fuzz-build: $(FUZZ_BIN)

build/fuzz/%: tests/fuzz/%.c $(CORE_SRC) $(APP_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(CORE_SRC) $(APP_SRC) -lyaml -ljansson -lmbedtls -lmbedx509 -lmbedcrypto -lm

# Replays each checked-in corpus once: a cheap regression run for `make test`.
fuzz-regress: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	    echo "== $$n corpus"; $$f -runs=0 tests/fuzz/corpus/$${n#fuzz_} >/dev/null 2>&1 \
	    || { echo "$$n: corpus replay failed"; $$f -runs=0 tests/fuzz/corpus/$${n#fuzz_}; exit 1; }; \
	done

# New findings go to build/fuzz/corpus-*; the checked-in corpus is only read.
fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); c=$${n#fuzz_}; \
	    mkdir -p build/fuzz/corpus-$$c; echo "== $$n for $(FUZZ_TIME)s"; \
	    $$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 build/fuzz/corpus-$$c \
	        tests/fuzz/corpus/$$c || exit 1; \
	done

bench: deps all
	LIMPET_BIN=$(abspath $(BUILD)/limpet) scripts/bench.sh

demo: deps all
	LIMPET_BIN=$(abspath $(BUILD)/limpet) scripts/demo.sh

lint:
	@scripts/lint.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
