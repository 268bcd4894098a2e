# berth: build, example rootfs, demo, integration tests.
# The tests and the demo run real containers: run them as root.

CARGO ?= cargo
# The suite runs on a debug build (a release build with LTO takes minutes longer);
# `make test CARGO_TEST_FLAGS=--release` tests the release binary.
CARGO_TEST_FLAGS ?=
TEST_THREADS ?= 2
ROOTFS := bundles/busybox/rootfs
BERTH := ./target/release/berth
# The release binary is linked statically and not position-independent: no shared library
# to load and no relocations to apply when it starts (measured: 347k instructions for
# `berth --version` against 758k dynamically linked), and fewer pages touched. Only the
# binary gets these flags (`cargo rustc`): proc-macro crates cannot be built with crt-static.
# The functions a start runs come first in .text (scripts/symbol-order.txt, made by
# `make symbol-order`), and the image layer's code last (scripts/cold-code.ld): the code a
# start touches then shares few pages, and only those become resident. build.rs makes cargo
# relink when either file changes. Function names carry hashes of the build's metadata: after
# a change of dependencies, features or build script, rerun `make symbol-order` (make bench
# warns when the order no longer matches the binary).
STATIC_FLAGS := -C target-feature=+crt-static -C relocation-model=static \
	-C link-arg=-Wl,-T,$(CURDIR)/scripts/cold-code.ld \
	-C link-arg=-Wl,--symbol-ordering-file=$(CURDIR)/scripts/symbol-order.txt \
	-C link-arg=-Wl,--no-warn-symbol-ordering

.PHONY: all build rootfs demo test test-clients bench symbol-order clean

all: build

build:
	$(CARGO) rustc --release --bin berth -- $(STATIC_FLAGS)

rootfs: $(ROOTFS)/bin/busybox

$(ROOTFS)/bin/busybox: scripts/mkrootfs.sh
	scripts/mkrootfs.sh $(ROOTFS)

demo: build rootfs
	$(BERTH) run --bundle bundles/busybox demo-$$$$

test: rootfs
	$(CARGO) test $(CARGO_TEST_FLAGS) --no-fail-fast -- --test-threads=$(TEST_THREADS)

# Only the client suites: containerd, Docker and Podman driving berth (tests/clients.rs);
# `make test-clients BERTH_TEST_RUNTIME=/usr/sbin/runc` runs them against runc.
test-clients: rootfs
	$(CARGO) test $(CARGO_TEST_FLAGS) --test clients -- --test-threads=1

# Start-up time and memory against crun and runc (hyperfine); see scripts/bench.sh.
# Pull and unpack against skopeo + umoci from a local registry; see scripts/bench-pull.sh.
# The engine against podman and Docker (run --rm, 200 containers' monitors, ls); see
# scripts/bench-engine.sh. Networks (run --rm on each engine's default bridge, a published
# port's loopback throughput against docker-proxy and netavark): scripts/bench-network.sh.
# `berth build` against `buildah bud` (cold and cached): scripts/bench-build.sh.
# `compose up -d` to all healthy and `down` against docker-compose on its own dockerd and
# podman-compose: scripts/bench-compose.sh.
bench: rootfs
	scripts/bench.sh
	scripts/bench-pull.sh
	scripts/bench-engine.sh
	scripts/bench-network.sh
	scripts/bench-build.sh
	scripts/bench-compose.sh

# Re-profile which functions a start runs (after changing the start path); see the script.
symbol-order: rootfs
	scripts/gen-symbol-order.sh

clean:
	$(CARGO) clean
	rm -rf $(ROOTFS)
