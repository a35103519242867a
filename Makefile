# The two commands a new user needs (see README.md), plus helpers.
.PHONY: demo test build fmt

## Run the tutorial: a local broker, two workers, five tasks.
demo:
	bash scripts/demo.sh

## Everything CI runs: fmt, clippy, unit + integration tests (real RabbitMQ).
test:
	bash scripts/test.sh

build:
	cargo build --release

fmt:
	cargo fmt --all

## Throughput: Warren vs a raw lapin consumer; writes target/bench/latest.md
## (BENCH_ARGS="--quick" for a smoke run; see docs/BENCHMARKS.md).
.PHONY: bench
bench:
	bash scripts/bench.sh $(BENCH_ARGS)
