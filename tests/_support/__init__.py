"""What tests and benchmarks share to run sandlot for real: the leak census of the host
(`census`), a `sandlot serve` subprocess on a free loopback port (`server`), and the sandbox
plane in a thread of the test process (`plane`). tests/*/conftest.py and bench/*.py build
their fixtures and runs on these; none of it is a fixture itself."""
