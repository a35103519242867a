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
