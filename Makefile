# berth: build, example rootfs, demo, integration tests.
# The tests and the demo run real containers: run them as root.

CARGO ?= cargo
# The suite runs on a debug build (a release build with LTO takes minutes longer);
# `make test CARGO_TEST_FLAGS=--release` tests the release binary.
CARGO_TEST_FLAGS ?=
TEST_THREADS ?= 2
ROOTFS := bundles/busybox/rootfs
BERTH := ./target/release/berth

.PHONY: all build rootfs demo test bench clean

all: build

build:
	$(CARGO) build --release

rootfs: $(ROOTFS)/bin/busybox

$(ROOTFS)/bin/busybox: scripts/mkrootfs.sh
	scripts/mkrootfs.sh $(ROOTFS)

demo: build rootfs
	$(BERTH) run --bundle bundles/busybox demo-$$$$

test: rootfs
	$(CARGO) test $(CARGO_TEST_FLAGS) --no-fail-fast -- --test-threads=$(TEST_THREADS)

# Start-up time and memory against crun and runc (hyperfine); see scripts/bench.sh.
# Pull and unpack against skopeo + umoci from a local registry; see scripts/bench-pull.sh.
bench: rootfs
	scripts/bench.sh
	scripts/bench-pull.sh

clean:
	$(CARGO) clean
	rm -rf $(ROOTFS)
