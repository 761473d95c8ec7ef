# dvsnap build. `make` builds everything; `make check` runs every test; `make demo` runs the demo;
# `make bench` runs the benchmarks. `make deps` installs missing Debian packages (sudo only when
# not root). `make install` (PREFIX, DESTDIR and the *DIR variables below) installs the programs,
# man pages, shell completions, systemd units, the mount helper and an example configuration;
# `make uninstall` removes them. Sources are found by wildcard, so a new module needs no edit here:
#   backend/*/*.c cache/*.c fs/*.c -> build/libdvsnap.a
#   tools/dvsnap/*.c              -> build/dvsnap
#   tools/dvsim/*.c               -> build/dvsim (all but main.c also in build/libdvsim.a)
#   tests/unit/test_*.c           -> build/tests/test_* (cmocka, linked with both libraries)
#   tests/integration/*.sh        -> run by tests/run with a real dvsim and a real mount
#   docs/man/*.scd                -> build/man/* (scdoc)

CC      ?= cc
PKGS    := fuse3 libcurl libcjson sqlite3 libzstd libmicrohttpd libcrypto libsystemd
# build, then test: scdoc builds the man pages; man-db renders them, bash/zsh/fish check the
# completions, systemd verifies the units (tests/integration/pkg_*.sh)
DEBS    := libfuse3-dev fuse3 libcurl4-openssl-dev libcjson-dev libsqlite3-dev libzstd-dev \
           libcmocka-dev libmicrohttpd-dev libssl-dev libsystemd-dev pkg-config scdoc \
           jq rsync curl zstd python3 util-linux procps psmisc strace sqlite3 \
           man-db zsh fish systemd
BENCH_DEBS := restic borgbackup hyperfine

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings \
           -Wformat=2 -Wvla -Wno-unused-parameter -Werror
CFLAGS  ?= -O2 -g
SANITIZE ?=
ifneq ($(SANITIZE),)
  CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=$(SANITIZE)
  BUILD ?= build-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,
BUILD   ?= build

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DFUSE_USE_VERSION=314 -I. $(WARN) $(CPPFLAGS) $(CFLAGS) \
             $(PKG_CFLAGS) -MMD -MP

# make install: where things go. DESTDIR is prepended to each (staged installs, packages).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/dvsnap
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
INSTALL ?= install

ifeq ($(V),1)
  Q :=
else
  Q := @
endif

LIB_SRC   := $(wildcard backend/*/*.c cache/*.c fs/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
DVSNAP_SRC:= $(wildcard tools/dvsnap/*.c)
DVSNAP_OBJ:= $(DVSNAP_SRC:%.c=$(BUILD)/%.o)
DVSIM_SRC := $(wildcard tools/dvsim/*.c)
DVSIM_OBJ := $(DVSIM_SRC:%.c=$(BUILD)/%.o)
DVSIM_LIB_OBJ := $(filter-out $(BUILD)/tools/dvsim/main.o,$(DVSIM_OBJ))
TEST_SRC  := $(wildcard tests/unit/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_SRC:= $(wildcard tests/tools/*.c)
HELPER_BIN:= $(HELPER_SRC:tests/tools/%.c=$(BUILD)/tests/%)
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/%)
MAN_SRC   := $(wildcard docs/man/*.scd)
MAN_PAGES := $(MAN_SRC:docs/man/%.scd=$(BUILD)/man/%)
UNIT_SRC  := $(wildcard contrib/systemd/*.in)
UNITS     := $(UNIT_SRC:contrib/systemd/%.in=%)

.SECONDARY:
.PHONY: all deps check unit integration demo bench fuzz clean lint format man install uninstall
all: $(BUILD)/dvsnap $(BUILD)/dvsim $(TEST_BIN) $(HELPER_BIN) $(FUZZ_BIN) $(MAN_PAGES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libdvsnap.a: $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libdvsim.a: $(DVSIM_LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^ $(if $^,,--)

$(BUILD)/dvsnap: $(DVSNAP_OBJ) $(BUILD)/libdvsnap.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(DVSNAP_OBJ) $(BUILD)/libdvsnap.a $(PKG_LIBS)

$(BUILD)/dvsim: $(DVSIM_OBJ) $(BUILD)/libdvsnap.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(DVSIM_OBJ) $(BUILD)/libdvsnap.a $(PKG_LIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(BUILD)/libdvsnap.a $(BUILD)/libdvsim.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libdvsim.a $(BUILD)/libdvsnap.a $(PKG_LIBS) -lcmocka

$(BUILD)/tests/%: $(BUILD)/tests/tools/%.o $(BUILD)/libdvsnap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libdvsnap.a $(PKG_LIBS)

# Fuzz targets built for replay (seed corpus + regressions in `make check`); `make fuzz` builds
# them with libFuzzer (clang) and runs each for FUZZ_SECONDS.
$(BUILD)/tests/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(BUILD)/libdvsnap.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

fuzz: deps
	@tests/fuzz/run

# Man pages: docs/man/NAME.SECTION.scd -> build/man/NAME.SECTION
man: $(MAN_PAGES)

$(BUILD)/man/%: docs/man/%.scd
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  SCDOC   $<")
	$(Q)epoch=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct -- $< 2>/dev/null)}; \
	  SOURCE_DATE_EPOCH=$${epoch:-$$(date +%s)} scdoc <$< >$@.tmp && mv $@.tmp $@ || \
	  { rm -f $@.tmp; exit 1; }

# The units name the installed program: @BINDIR@ becomes $(BINDIR). The mount helper is a
# relative symlink, found by mount(8) for type fuse.dvsnap when SBINDIR is /sbin or /usr/sbin.
install: $(BUILD)/dvsnap $(BUILD)/dvsim $(MAN_PAGES)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSTEMDUNITDIR) \
	  $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(INSTALL) -m 0755 $(BUILD)/dvsnap $(BUILD)/dvsim $(DESTDIR)$(BINDIR)/
	ln -sfr $(DESTDIR)$(BINDIR)/dvsnap $(DESTDIR)$(SBINDIR)/mount.fuse.dvsnap
	$(INSTALL) -m 0644 $(filter %.1,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 $(filter %.5,$(MAN_PAGES)) $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 contrib/completion/dvsnap.bash $(DESTDIR)$(BASHCOMPDIR)/dvsnap
	$(INSTALL) -m 0644 contrib/completion/_dvsnap $(DESTDIR)$(ZSHCOMPDIR)/_dvsnap
	$(INSTALL) -m 0644 contrib/completion/dvsnap.fish $(DESTDIR)$(FISHCOMPDIR)/dvsnap.fish
	$(INSTALL) -m 0644 contrib/config.example $(DESTDIR)$(DOCDIR)/config.example
	for u in $(UNITS); do \
	  sed 's|@BINDIR@|$(BINDIR)|g' contrib/systemd/$$u.in >$(DESTDIR)$(SYSTEMDUNITDIR)/$$u.tmp && \
	  chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u.tmp && \
	  mv $(DESTDIR)$(SYSTEMDUNITDIR)/$$u.tmp $(DESTDIR)$(SYSTEMDUNITDIR)/$$u || exit 1; done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/dvsnap $(DESTDIR)$(BINDIR)/dvsim \
	  $(DESTDIR)$(SBINDIR)/mount.fuse.dvsnap \
	  $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(filter %.1,$(MAN_PAGES)))) \
	  $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(filter %.5,$(MAN_PAGES)))) \
	  $(DESTDIR)$(BASHCOMPDIR)/dvsnap $(DESTDIR)$(ZSHCOMPDIR)/_dvsnap \
	  $(DESTDIR)$(FISHCOMPDIR)/dvsnap.fish $(DESTDIR)$(DOCDIR)/config.example \
	  $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(UNITS))
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true

# Install only what is missing; sudo only when not root. Each dev package is probed by dpkg.
deps:
	@missing=""; for p in $(DEBS) $(if $(filter bench,$(MAKECMDGOALS)),$(BENCH_DEBS)); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

lint:
	@tests/lint.sh

unit: all
	@tests/run --unit $(BUILD)

integration: all
	@tests/run --integration $(BUILD)

check: deps
	@$(MAKE) --no-print-directory all
	@tests/lint.sh
	@tests/run $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all
	@tools/demo.sh $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory all
	@tests/bench/run $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-*

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
