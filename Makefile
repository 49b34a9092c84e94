# limpet — a transparent, reconnecting tunnel.
#   make            build/limpet
#   make test       install missing deps, build (plain + ASan/UBSan), run every suite
#   make demo       install missing deps, build, run a transfer through a link cut every 2 s
#   make fuzz       run each libFuzzer harness for FUZZ_TIME seconds
#   make bench      scripts/bench.sh: limpet against socat/stunnel/ssh on this machine
#   make lint       clang-format check, banned functions, the layer rules (also in make test)

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
# What Debian's dpkg-buildflags gives a package: fortified libc calls, stack canaries, a
# position-independent executable with read-only relocations bound at start (checked by
# tests/e2e/test_hardening.py). _FORTIFY_SOURCE is left out of the sanitizer build, where it
# would hide overflows from ASan's own checks.
HARDEN_CFLAGS  := -fstack-protector-strong -fPIE
HARDEN_LDFLAGS := -pie -Wl,-z,relro,-z,now
ifneq ($(SAN),1)
HARDEN_CFLAGS  += -D_FORTIFY_SOURCE=2
endif
CFLAGS_ALL := -std=c11 $(OPT) $(WARN) $(HARDEN_CFLAGS) $(SANFLAGS) $(CFLAGS)
LDFLAGS_ALL := $(HARDEN_LDFLAGS) $(LDFLAGS)
# The cores may use pure data libraries (jansson for the MCP path), never I/O ones.
CORE_LIBS  := -ljansson -lm
LDLIBS_ALL := -lev -lyaml -ljansson -lmbedtls -lmbedx509 -lmbedcrypto -lm $(LDLIBS)

# The layers (STYLE.md): base <- core <- io <- app. Each is its own archive; a lower layer
# that calls up fails to link (the layer checks below), and the core unit tests link the core
# and base archives alone.
BASE_SRC := $(wildcard src/base/*.c)
CORE_SRC := $(wildcard src/core/*.c)
IO_SRC   := $(wildcard src/io/*.c)
APP_SRC  := $(filter-out src/app/main.c,$(wildcard src/app/*.c))
LIB_SRC  := $(BASE_SRC) $(CORE_SRC) $(IO_SRC) $(APP_SRC)
obj_of    = $(1:%.c=$(BUILD)/obj/%.o)
LIB_OBJ  := $(call obj_of,$(LIB_SRC))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_HELPERS := $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# A unit test of a core (or base) module, or of cores joined in memory, links those alone.
CORE_UNITS := $(filter $(patsubst %.c,tests/unit/test_%.c,$(notdir $(BASE_SRC) $(CORE_SRC))) \
                       tests/unit/test_pair.c,$(UNIT_SRC))
CORE_UNIT_BIN := $(CORE_UNITS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
LAYER_CHECKS := $(BUILD)/layers/base $(BUILD)/layers/core $(BUILD)/layers/io

.PHONY: all asan test unit unit-asan e2e e2e-asan mcp mcp-asan netns fuzz fuzz-build fuzz-regress \
        bench demo deps clean lint layers

all: $(BUILD)/limpet $(TOOL_BIN) $(LAYER_CHECKS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libbase.a: $(call obj_of,$(BASE_SRC))
$(BUILD)/libcore.a: $(call obj_of,$(CORE_SRC))
$(BUILD)/libio.a: $(call obj_of,$(IO_SRC))
$(BUILD)/liblimpet.a: $(LIB_OBJ)
$(BUILD)/lib%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/limpet: $(BUILD)/obj/src/app/main.o $(BUILD)/liblimpet.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# Layer checks: every object of a layer, linked whole (not picked from an archive) with only
# the layers below it and the libraries that layer may use. A core file that calls into io,
# or an io file that calls into app, is an undefined reference here.
$(BUILD)/layers/base: tests/layers/stub_main.c $(call obj_of,$(BASE_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $^
$(BUILD)/layers/core: tests/layers/stub_main.c $(call obj_of,$(CORE_SRC)) $(BUILD)/libbase.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $^ $(CORE_LIBS)
$(BUILD)/layers/io: tests/layers/stub_main.c $(call obj_of,$(IO_SRC)) $(BUILD)/libcore.a \
                    $(BUILD)/libbase.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

layers: $(LAYER_CHECKS)

$(CORE_UNIT_BIN): $(BUILD)/tests/%: tests/unit/%.c $(UNIT_HELPERS) $(BUILD)/libcore.a \
                  $(BUILD)/libbase.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(UNIT_HELPERS) \
	    $(BUILD)/libcore.a $(BUILD)/libbase.a -lcmocka $(CORE_LIBS)

$(filter-out $(CORE_UNIT_BIN),$(UNIT_BIN)): $(BUILD)/tests/%: tests/unit/%.c $(UNIT_HELPERS) \
                                            $(BUILD)/liblimpet.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(UNIT_HELPERS) \
	    $(BUILD)/liblimpet.a -lcmocka $(LDLIBS_ALL)

# Small programs the end-to-end tests drive (a scripted tunnel client, ...).
$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/liblimpet.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/liblimpet.a $(LDLIBS_ALL)

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
	$(MAKE) lint
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

# Fuzzers build from their own objects (clang, libFuzzer's instrumentation) with the same
# -MMD header dependencies as the rest, so a header change rebuilds what the replay runs.
FUZZ_LIB_SRC := $(BASE_SRC) $(CORE_SRC) $(APP_SRC) src/io/keys.c
FUZZ_OBJ := $(FUZZ_LIB_SRC:%.c=build/fuzz/obj/%.o)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

# An archive, so a harness pulls in only the objects it reaches.
build/fuzz/libfuzz.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^

build/fuzz/%: build/fuzz/obj/tests/fuzz/%.o build/fuzz/libfuzz.a
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lyaml -ljansson -lmbedtls -lmbedx509 -lmbedcrypto -lm

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
