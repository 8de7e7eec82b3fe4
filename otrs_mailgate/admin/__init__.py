"""The click CLI: one module per command group."""
