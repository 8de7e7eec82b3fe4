"""Agents' command mails: one small class per command (eml_*.py), the plan that applies
them all or none, and the transcript (commandmail.py).

Importing this package registers every command; the order of the imports is the order
in which transcripts and notifications list them.
"""

# isort: off
from otrs_mailgate.ingest.commands import (  # noqa: F401  each registers its commands
    eml_reply,
    eml_state,
    eml_owner,
    eml_queue,
    eml_priority,
    eml_time,
    eml_links,
    eml_cc,
    eml_quiet,
    eml_faq,
    eml_junk,
    eml_split,
    eml_watch,
    eml_template,
)

# isort: on
from otrs_mailgate.ingest.commands.commandmail import (
    CommandMail,
    agent_reply,
    answerable,
    apply,
    leak_patterns,
    refused,
)

__all__ = ["CommandMail", "agent_reply", "answerable", "apply", "leak_patterns", "refused"]
