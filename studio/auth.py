"""Who may log in: ``--auth USER:PASS`` (repeatable) and ``--auth-file FILE`` (one ``user:password`` a line).

The file holds passwords, so one that every account on the machine can read is refused (``chmod 600``).
Blank lines and lines starting with ``#`` are skipped; messages name the line, never its password.
"""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

from npnet.errors import UserError

Account = tuple[str, str]


def split_account(text: str) -> Account | None:
    """``user:password`` as (user, password); None when either part is empty or the colon is missing."""
    user, sep, password = text.partition(":")
    user = user.strip()
    if not sep or not user or not password:
        return None
    return user, password


def auth_argument(value: str) -> Account:
    """argparse ``type`` of ``--auth``."""
    account = split_account(value)
    if account is None:
        raise argparse.ArgumentTypeError("--auth must be USER:PASS (both non-empty)")
    return account


def read_auth_file(path: str | Path) -> list[Account]:
    """The accounts of an ``--auth-file``; UserError for a missing, world-readable or malformed file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--auth-file {file}: no such file; write one user:password a line")
    if file.stat().st_mode & stat.S_IROTH:
        raise UserError(
            f"--auth-file {file} is readable by every user of this machine; restrict it with chmod 600 {file}"
        )
    accounts = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        account = split_account(line.rstrip("\r\n"))
        if account is None:
            raise UserError(f"--auth-file {file} line {number}: expected user:password (both non-empty)")
        accounts.append(account)
    if not accounts:
        raise UserError(f"--auth-file {file} lists no accounts; write one user:password a line")
    return accounts


def accounts(auth: list[Account] | tuple[Account, ...] = (), auth_file: str | None = None) -> tuple[Account, ...]:
    """Every account from ``--auth`` and ``--auth-file``; a user named twice is refused."""
    found = [*auth, *(read_auth_file(auth_file) if auth_file else [])]
    seen: set[str] = set()
    for user, _ in found:
        if user in seen:
            raise UserError(f"user {user!r} is given more than once (--auth / --auth-file); keep one password")
        seen.add(user)
    return tuple(found)
