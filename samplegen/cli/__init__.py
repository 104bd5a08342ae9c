"""The `samplegen` command line: one module per command group."""
