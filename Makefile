# Builds and installs edgebuf like a system library:
#   make                 the release library, with its SONAME link, in target/release
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make uninstall PREFIX=/usr/local [DESTDIR=...]
# install puts in place lib/libedgebuf.so.MAJOR.MINOR.PATCH (with the .so.MAJOR and .so links),
# lib/libedgebuf.a, include/edgebuf.h, include/edgebuf.hpp, lib/pkgconfig/edgebuf.pc (and
# edgebuf-shared.pc, see scripts/pkgconfig.sh) and bin/edgebuf. A Makefile rather than cargo-c:
# cargo-c takes ~20 minutes to install on a small machine and needs a `capi` feature; this is
# a handful of files.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR   := $(word 1,$(subst ., ,$(VERSION)))
OUT     := target/release

# The SONAME link: programs linked with -ledgebuf look for libedgebuf.so.MAJOR at run time.
all:
	cargo build --release --lib
	ln -sf libedgebuf.so $(OUT)/libedgebuf.so.$(MAJOR)

# The edgebuf tool (status, export, check, requeue, compact, drain, receive).
cli:
	cargo build --release -p edgebuf-cli

# libedgebuf.a with only the edgebuf_* symbols global: the bundled SQLite, ring and Rust std
# become local, so a program that also links its own SQLite keeps its own. (The LLVM bitcode
# sections are dropped too: binutils' LTO plugin cannot read them.)
DIST := $(OUT)/dist
static: all
	mkdir -p $(DIST)
	scripts/localize-static.sh $(OUT)/libedgebuf.a $(DIST)/libedgebuf.a

INSTALLED := $(LIBDIR)/libedgebuf.so.$(VERSION) $(LIBDIR)/libedgebuf.so.$(MAJOR) \
  $(LIBDIR)/libedgebuf.so $(LIBDIR)/libedgebuf.a $(INCDIR)/edgebuf.h $(INCDIR)/edgebuf.hpp \
  $(LIBDIR)/pkgconfig/edgebuf.pc $(LIBDIR)/pkgconfig/edgebuf-shared.pc $(BINDIR)/edgebuf

install: all static cli
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(OUT)/libedgebuf.so $(DESTDIR)$(LIBDIR)/libedgebuf.so.$(VERSION)
	ln -sf libedgebuf.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libedgebuf.so.$(MAJOR)
	ln -sf libedgebuf.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libedgebuf.so
	install -m 0644 $(DIST)/libedgebuf.a $(DESTDIR)$(LIBDIR)/libedgebuf.a
	install -m 0644 include/edgebuf.h $(DESTDIR)$(INCDIR)/edgebuf.h
	install -m 0644 bindings/cpp/edgebuf.hpp $(DESTDIR)$(INCDIR)/edgebuf.hpp
	install -m 0755 $(OUT)/edgebuf $(DESTDIR)$(BINDIR)/edgebuf
	scripts/pkgconfig.sh $(DESTDIR)$(LIBDIR)/pkgconfig '$(PREFIX)' '$(LIBDIR)' '$(INCDIR)' $(VERSION)
	@echo "installed edgebuf $(VERSION) in $(DESTDIR)$(PREFIX); programs find libedgebuf.so.$(MAJOR) at run time if $(LIBDIR) is a directory the loader searches (run ldconfig as root after installing to /usr/local/lib), or through -Wl,-rpath,$(LIBDIR) or LD_LIBRARY_PATH"

# Removes exactly what install put in place (directories stay: they may hold other files).
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

.PHONY: all cli static install uninstall
