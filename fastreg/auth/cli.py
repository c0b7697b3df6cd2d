"""`fastreg htpasswd add|remove USER [--file F] [--password-stdin]` and `fastreg gencerts DIR`."""
from __future__ import annotations

import argparse
import getpass
import sys


def htpasswd(args: argparse.Namespace) -> int:
    from .htpasswd import add_user, remove_user
    if args.action == "remove":
        try:
            removed = remove_user(args.file, args.user)
        except FileNotFoundError:
            removed = False
        print(f"{'removed' if removed else 'no such user'}: {args.user}", file=sys.stderr)
        return 0 if removed else 1
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not _terminal():
            print("fastreg: no terminal to ask for the password: pipe it in with --password-stdin", file=sys.stderr)
            return 2
        try:
            password = getpass.getpass(f"password for {args.user}: ")
            again = getpass.getpass("again: ")
        except EOFError:
            print("\nfastreg: no password given (end of input)", file=sys.stderr)
            return 1
        if again != password:
            print("fastreg: passwords do not match", file=sys.stderr)
            return 1
    if not password:
        print("fastreg: empty password", file=sys.stderr)
        return 1
    try:
        new = add_user(args.file, args.user, password, cost=args.cost)
    except ValueError as exc:
        print(f"fastreg: {exc}", file=sys.stderr)
        return 2
    print(f"{'added' if new else 'updated'}: {args.user} in {args.file}", file=sys.stderr)
    return 0


def _terminal() -> bool:
    """Whether getpass can ask on a terminal (it reads /dev/tty, else stdin when that is one)."""
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return sys.stdin is not None and sys.stdin.isatty()


def gencerts(args: argparse.Namespace) -> int:
    from .pki import PairIncomplete, generate, token_signer_shares_tls_ca
    try:
        written = generate(args.directory, args.host or ["127.0.0.1", "localhost"])
    except PairIncomplete as exc:
        print(f"fastreg: gencerts: {exc}", file=sys.stderr)
        return 1
    for p in written:
        print(p)
    if not written:
        print(f"all files already exist in {args.directory}; nothing written", file=sys.stderr)
    if token_signer_shares_tls_ca(args.directory):
        print(f"fastreg: warning: {args.directory}/token.pem was signed by the TLS CA (ca.pem); keep the token "
              f"signer apart: remove token.pem and token.key, run gencerts again and set "
              f"auth.token.rootcertbundle to token.pem", file=sys.stderr)
    return 0
