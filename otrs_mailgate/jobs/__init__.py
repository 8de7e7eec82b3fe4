"""Timed jobs: escalations, pending reminders, lock expiry, purges."""

# notifications list the mail commands: make sure every command class has registered
import otrs_mailgate.ingest.commands  # noqa: F401
