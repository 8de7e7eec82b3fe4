"""`otrs-mailgate man`: the manual page of the command line, made from the click commands
themselves (their help, arguments and options), so it cannot drift from the CLI.
setup.py writes it at build time and installs it as share/man/man1/otrs-mailgate.1."""

from __future__ import annotations

import datetime as dt

import click


def _esc(text: str) -> str:
    """Text as troff reads it: backslashes and leading dots/quotes escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in ".'" else line for line in text.splitlines())


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.append((path, command))
            found += _commands(command, path)
        else:
            found.append((path, command))
    return found


def render(main: click.Group, name: str = "otrs-mailgate", version: str = "") -> str:
    today = dt.date.today().isoformat()
    out = [
        f'.TH "{name.upper()}" "1" "{today}" "{name} {version}" "User Commands"',
        ".SH NAME",
        f"{name} \\- {_esc(main.help or '').splitlines()[0]}",
        ".SH SYNOPSIS",
        f".B {name}",
        "[\\-\\-config FILE] COMMAND [ARGS]...",
        ".SH DESCRIPTION",
        _esc(
            "A mail-native trouble ticket system: Postfix hands it mail over LMTP or a pipe, "
            "it hands back ticket numbers; agents work by answering its mails; admins use "
            "these commands. Every command reads the configuration from --config FILE, "
            "$OTRS_MAILGATE_CONFIG, ./otrs-mailgate.toml or /etc/otrs-mailgate/otrs-mailgate.toml."
        ),
        ".SH COMMANDS",
    ]
    ctx = click.Context(main, info_name=name)
    for path, command in _commands(main, name):
        sub = click.Context(command, info_name=path, parent=ctx)
        usage = " ".join(command.collect_usage_pieces(sub))
        out += [".TP", f".B {_esc(path)}", _esc(usage) if usage else ""]
        if command.help:
            out += [".RS", _esc(inspect_help(command.help)), ".RE"]
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                record = param.get_help_record(sub)
                if record:
                    out += [".RS", ".TP", f".B {_esc(record[0])}", _esc(record[1]), ".RE"]
    out += [
        ".SH EXIT STATUS",
        _esc(
            "0 on success; 1 for a request that cannot be done (the reason is one line on "
            "stderr); 2 for a usage error. deliver follows sysexits: 0, 75 (try again), "
            "67, 65. serve: 69 database unusable, 71 a port that cannot be bound. doctor: "
            "0 all ok, 1 warnings, 2 failures."
        ),
        ".SH FILES",
        "/etc/otrs-mailgate/otrs-mailgate.toml, /var/lib/otrs-mailgate/",
        ".SH SEE ALSO",
        "postfix(1), postconf(5), systemd.service(5); the manual in docs/ of the source.",
    ]
    return "\n".join(line for line in out if line != "") + "\n"


def inspect_help(text: str) -> str:
    import inspect

    return inspect.cleandoc(text).replace("\b\n", "")


@click.command("man")
def man() -> None:
    """Print the manual page (troff): `otrs-mailgate man | man -l -`."""
    from importlib.metadata import PackageNotFoundError, version

    root = click.get_current_context().find_root().command  # the CLI this runs in
    assert isinstance(root, click.Group)
    try:
        release = version("otrs-mailgate")
    except PackageNotFoundError:
        release = ""
    click.echo(render(root, version=release), nl=False)


COMMANDS = [man]
