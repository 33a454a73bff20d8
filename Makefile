# Tailgate's entry points. `make run` and `make test` do all set-up on a
# fresh machine (they install the wasm32-wasip2 Rust target if missing).

CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
CONFIG      ?= config.toml
# Plugins' pure logic is unit-tested natively, on the host's own target.
HOST_TARGET := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')

.PHONY: run test build plugins plugin-cases template-check bench test-hostile setup lint

## run: build the release binary and the plugins, run Tailgate on config.toml
run: plugins
	$(CARGO) build --release -p tailgate
	./target/release/tailgate run --config $(CONFIG)

## test: build the plugins and the binary, run every test (unit, config snapshots, runtime, end-to-end)
test: setup plugins
	bash scripts/install-test-deps.sh
	$(CARGO) build -p tailgate
	$(CARGO) test --workspace --no-fail-fast
	cd plugins && $(CARGO) test --target $(HOST_TARGET) -p tailgate-plugin-sdk -p header-rewrite -p rate-limit -p log-shape -p cors -p ban --features tailgate-plugin-sdk/testing
	$(MAKE) --no-print-directory plugin-cases
	$(MAKE) --no-print-directory template-check

## plugin-cases: every plugin's cases.toml through `tailgate plugin test` (after `make plugins`, `cargo build -p tailgate`)
plugin-cases:
	@set -e; for cases in plugins/*/cases.toml; do \
	  dir=$$(dirname $$cases); \
	  wasm=$$(sed -n 's/^name = "\(.*\)"/\1/p' $$dir/Cargo.toml | head -1 | tr - _); \
	  echo "== tailgate plugin test $$wasm.wasm $$cases"; \
	  ./target/debug/tailgate plugin test plugins/target/$(WASM_TARGET)/release/$$wasm.wasm $$cases; \
	done

## template-check: the plugin template builds with plain cargo for wasm32-wasip2 and passes its harness tests and cases
template-check:
	cd plugins && $(CARGO) build --release --target $(WASM_TARGET) -p plugin-template
	cd plugins && $(CARGO) test --target $(HOST_TARGET) -p plugin-template
	./target/debug/tailgate plugin test plugins/target/$(WASM_TARGET)/release/plugin_template.wasm plugins/template/cases.toml

## build: release binary and plugins
build: plugins
	$(CARGO) build --release -p tailgate

## plugins: build every plugin component (wasm32-wasip2)
plugins: setup
	cd plugins && $(CARGO) build --release

## bench: Tailgate vs. nginx side by side (installs nginx and wrk; see docs/performance.md)
bench: plugins
	bash bench/run.sh

## test-hostile: Tailgate vs. nginx against hostile input, one table (installs nginx; see docs/operations.md).
## HOSTILE_ARGS=--strict fails when Tailgate fails a case.
test-hostile: plugins
	$(CARGO) build -p tailgate
	bash bench/hostile/run.sh $(HOSTILE_ARGS)

## bench-runtime: criterion benchmarks of the plugin runtime (instance strategies)
bench-runtime: plugins
	$(CARGO) bench -p tailgate-runtime

## lint: formatting and clippy, as CI runs them
lint: setup
	$(CARGO) fmt --all -- --check
	cd plugins && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) clippy --release -- -D warnings

setup:
	@bash scripts/setup.sh
