# Builds and installs edgebuf like a system library:
#   make                 release build (cargo) + the SONAME link in target/release
#   make install PREFIX=/usr/local [DESTDIR=...]
# installs lib/libedgebuf.so.MAJOR.MINOR.PATCH (+ .so.MAJOR, .so links), lib/libedgebuf.a,
# include/edgebuf.h and lib/pkgconfig/edgebuf.pc. A Makefile rather than cargo-c: cargo-c takes
# ~20 minutes to install on a small machine and needs a `capi` feature; this is four files.
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR   := $(word 1,$(subst ., ,$(VERSION)))
OUT     := target/release
# What a static link needs besides libedgebuf.a (rustc --print native-static-libs).
PRIVATE_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

all:
	cargo build --release --lib
	ln -sf libedgebuf.so $(OUT)/libedgebuf.so.$(MAJOR)

# libedgebuf.a with only the edgebuf_* symbols global: the bundled SQLite, ring and Rust std
# become local, so a program that also links its own SQLite keeps its own. (The LLVM bitcode
# sections are dropped too: binutils' LTO plugin cannot read them.)
DIST := $(OUT)/dist
static: all
	mkdir -p $(DIST)
	scripts/localize-static.sh $(OUT)/libedgebuf.a $(DIST)/libedgebuf.a

install: all static
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)
	install -m 0755 $(OUT)/libedgebuf.so $(DESTDIR)$(LIBDIR)/libedgebuf.so.$(VERSION)
	ln -sf libedgebuf.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libedgebuf.so.$(MAJOR)
	ln -sf libedgebuf.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libedgebuf.so
	install -m 0644 $(DIST)/libedgebuf.a $(DESTDIR)$(LIBDIR)/libedgebuf.a
	install -m 0644 include/edgebuf.h $(DESTDIR)$(INCDIR)/edgebuf.h
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: edgebuf' 'Description: durable on-device buffer for ML inference records' \
	  'Version: $(VERSION)' 'Libs: -L$${libdir} -ledgebuf' 'Libs.private: $(PRIVATE_LIBS)' \
	  'Cflags: -I$${includedir}' > $(DESTDIR)$(LIBDIR)/pkgconfig/edgebuf.pc

.PHONY: all static install
