# Convenience targets; each one is a script in scripts/ that also works without make.
.PHONY: setup demo test check bench
setup: ; scripts/setup
demo: ; scripts/demo
test: ; scripts/test
check: ; scripts/check
bench: ; scripts/setup && .venv/bin/python -m bench
