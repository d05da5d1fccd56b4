"""Clients for talking to a mediator (or any MLLP peer): used by the CLI, tests and benchmarks."""
