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
# CPPFLAGS and LDFLAGS from the command line or the environment (dpkg-buildflags) are kept.
override CPPFLAGS := -Iinclude -D_GNU_SOURCE -DLP_VERSION='"$(VERSION)"' $(CPPFLAGS)
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
LDLIBS_ALL := -lev -lyaml -ljansson -lmbedtls -lmbedx509 -lmbedcrypto -lcrypto -lm $(LDLIBS)

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

# test_mcpclient makes allocations fail on purpose: its own malloc, calloc and realloc stand in
# for the C library's in every object it links (jansson's go there by json_set_alloc_funcs).
$(BUILD)/tests/test_mcpclient: LDFLAGS_ALL += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

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
	$(MAKE) container-check

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

# ---- man pages, install, Debian package, container image (issue 16) -------------------------
# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, limpet(1), limpet.yaml(5), the
# example configs in $(DOCDIR) and the systemd units in $(UNITDIR), whose ExecStart= is made
# to point at $(BINDIR). uninstall removes exactly those files. The lists come from the
# directories (config/*.yaml, config/*.service, man/*.in), not from names written here.
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
DOCDIR   ?= $(PREFIX)/share/doc/limpet
UNITDIR  ?= $(or $(shell pkg-config systemd --variable=systemdsystemunitdir 2>/dev/null),$(PREFIX)/lib/systemd/system)
INSTALL  ?= install
# The pages' date: the package's (dpkg sets SOURCE_DATE_EPOCH), else the last commit's.
MAN_DATE ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} +%Y-%m-%d)

MAN_IN    := $(wildcard man/*.in)
MAN_PAGES := $(MAN_IN:man/%.in=$(BUILD)/man/%)
INST_DOCS := $(wildcard config/*.yaml)
INST_UNITS := $(wildcard config/*.service)
# page NAME.S goes to man S
man_section = $(patsubst .%,%,$(suffix $(1)))

.PHONY: man install uninstall deb container-check FORCE
all: $(MAN_PAGES)
man: $(MAN_PAGES)

# The paths the pages name: rebuilt when PREFIX, DOCDIR or UNITDIR change.
$(BUILD)/man/subst: FORCE
	@mkdir -p $(dir $@)
	@printf 's|@VERSION@|%s|g\ns|@DATE@|%s|g\ns|@DOCDIR@|%s|g\ns|@UNITDIR@|%s|g\n' \
	    '$(VERSION)' '$(MAN_DATE)' '$(DOCDIR)' '$(UNITDIR)' >$@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; fi

$(BUILD)/man/mankeys: man/mankeys.c $(BUILD)/liblimpet.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/liblimpet.a $(LDLIBS_ALL)

# limpet.yaml(5)'s key list is printed by mankeys from the table --help prints.
$(BUILD)/man/%: man/%.in $(BUILD)/man/subst $(BUILD)/man/mankeys
	sed -f $(BUILD)/man/subst $< | \
	    if grep -q '^@KEYS@$$' $<; then $(BUILD)/man/mankeys; else cat; fi >$@.tmp
	mv $@.tmp $@

install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 0755 $(BUILD)/limpet $(DESTDIR)$(BINDIR)/limpet
	$(foreach p,$(MAN_PAGES),$(INSTALL) -d $(DESTDIR)$(MANDIR)/man$(call man_section,$(p)) && \
	    $(INSTALL) -m 0644 $(p) $(DESTDIR)$(MANDIR)/man$(call man_section,$(p))/$(notdir $(p));)
	$(INSTALL) -m 0644 $(INST_DOCS) $(DESTDIR)$(DOCDIR)/
	$(foreach u,$(INST_UNITS),sed 's|/usr/local/bin/limpet|$(BINDIR)/limpet|g' $(u) \
	    >$(DESTDIR)$(UNITDIR)/$(notdir $(u)) && chmod 0644 $(DESTDIR)$(UNITDIR)/$(notdir $(u));)

# The .deb, built by dpkg-buildpackage from debian/ in a clean copy of the tracked files under
# build/deb/ (it writes its results next to the source tree, so never into the parent of this
# checkout). DEB_BUILD_OPTIONS=nocheck skips the unit tests it runs.
DEB_SRC := build/deb/limpet-$(VERSION)
deb:
	rm -rf build/deb && mkdir -p $(DEB_SRC)
	git ls-files -z | tar --null -T - -cf - | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b -j2
	@ls build/deb/*.deb

# docker/Dockerfile built with podman and run: a server and a client in two containers carry a
# transfer through a cut of the client's link (scripts/container-check.sh says what it needs,
# and skips with one line where this machine cannot run containers).
container-check:
	@scripts/container-check.sh

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/limpet
	rm -f $(foreach p,$(MAN_IN:man/%.in=%),$(DESTDIR)$(MANDIR)/man$(call man_section,$(p))/$(p))
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(INST_DOCS)))
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(INST_UNITS)))
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null

-include $(shell find build -name '*.d' 2>/dev/null)
