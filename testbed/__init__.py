"""Start-up helpers that the tests and the benchmarks share: the native local stack, an
isolated callvault instance per test or run, and probes of a running worker. Not part of the
callvault package (the wheel ships ``workers/`` only)."""
