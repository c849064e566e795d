"""`python -m producer.cli ...`: the `mmq` command (the e2e tests and benches start it this way)."""

from producer.cli import run

run()
