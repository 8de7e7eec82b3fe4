"""The click CLI: one module per command group."""

# notifications list the mail commands: make sure every command class has registered
import otrs_mailgate.ingest.commands  # noqa: F401
