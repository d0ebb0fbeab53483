"""`openspc users`: the broker's users, their passwords (mosquitto_passwd) and roles (the ACL)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.broker import UserStore

HELP = "manage the broker's users: add, remove, list (password file and ACL)"

_DEFAULT_PASSWORD_FILE = Path("mosquitto/passwd")
_ROLES = ("hmi", "engineer", "gauge", "edge", "bridge")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        default=_DEFAULT_PASSWORD_FILE,
        metavar="FILE",
        help="Mosquitto's password file (default: mosquitto/passwd); roles.json and acl "
        "are kept beside it",
    )
    parser.add_argument(
        "--acl-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="the ACL file to write (default: acl beside the password file)",
    )


def _reload_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reload",
        action="store_true",
        help="send SIGHUP to the running Mosquitto so it reads the files again",
    )
    parser.add_argument(
        "--pid-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="Mosquitto's pid file (default: data/mosquitto.pid beside the password file)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add a user, or change its role and password")
    add.add_argument("name", metavar="NAME", help="the user name (an HMI user acknowledges as it)")
    add.add_argument("--role", required=True, choices=_ROLES, help="what the user may do")
    add.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="gauge/edge only: a further topic (filter) it may publish readings on, e.g. "
        "plant1/line3/gauge7/#; repeat for more",
    )
    secret = add.add_mutually_exclusive_group()
    secret.add_argument(
        "--password", metavar="P", help="the password (default: prompt, or one line on stdin)"
    )
    secret.add_argument(
        "--generate",
        action="store_true",
        help="make up a strong password and print it once (for gauges and scripts)",
    )
    add.add_argument(
        "--topic-prefix",
        metavar="PREFIX",
        help="the bridge's topic prefix the ACL is written for (kept; default openspc)",
    )
    _common(add)
    _reload_options(add)

    remove = actions.add_parser("remove", help="remove a user")
    remove.add_argument("name", metavar="NAME", help="the user to remove")
    _common(remove)
    _reload_options(remove)

    listing = actions.add_parser("list", help="list the users and their roles")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    _common(listing)


def _fail(message: str, status: int = 2) -> int:
    print(f"openspc users: {message}", file=sys.stderr)
    return status


def _read_password(name: str) -> str | None:
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"Password for {name}: ")
        second = getpass.getpass("Again: ")
        return first if first == second else None
    return sys.stdin.readline().rstrip("\r\n")


def main(args: argparse.Namespace) -> int:
    from bridge import broker

    store = broker.UserStore(args.password_file, acl_file=args.acl_file)
    try:
        if args.action == "list":
            return _list(store, as_json=args.json)
        if args.action == "add":
            if args.topic and args.role not in ("gauge", "edge"):
                return _fail(f"--topic is for gauge and edge users, not {args.role}")
            password = args.password
            if args.generate:
                import secrets

                password = secrets.token_urlsafe(12)
            if password is None:
                password = _read_password(args.name)
                if password is None:
                    return _fail("the two passwords differ; nothing changed")
            user = store.add(
                args.name,
                broker.Role(args.role),
                password,
                args.topic,
                topic_prefix=args.topic_prefix,
            )
            print(f"{user.name}: {user.role.value} user saved in {store.password_file}")
            if args.generate:
                print(f"password: {password}")
            if args.password_file == _DEFAULT_PASSWORD_FILE:
                # the shipped mosquitto.conf keeps persistence and its pid file there
                broker.prepare_data_dir(args.password_file.parent / "data")
        else:
            store.remove(args.name)
            print(f"{args.name}: removed from {store.password_file}")
        print(f"ACL rewritten: {store.acl_file}")
        pid_file = args.pid_file or store.password_file.parent / "data" / "mosquitto.pid"
        if args.reload:
            pid = broker.reload_broker(pid_file)
            print(f"Mosquitto (pid {pid}) told to reload its password file and ACL")
        else:
            print(
                "Reload Mosquitto to apply: openspc users ... --reload, "
                f"or kill -HUP $(cat {pid_file})"
            )
        return 0
    except (broker.InvalidUserName, broker.InvalidTopic, broker.InvalidPassword) as exc:
        return _fail(str(exc))
    except broker.UnknownUser as exc:
        return _fail(str(exc))
    except broker.BrokerNotRunning as exc:
        return _fail(f"files updated, but {exc}", 1)
    except broker.PasswordToolFailed as exc:
        return _fail(str(exc), 1)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot update the broker's files: {exc}", 1)


def _list(store: UserStore, *, as_json: bool) -> int:
    import json

    users = store.users()
    with_password = set(store.password_names())
    with_role = {u.name for u in users}
    if as_json:
        print(
            json.dumps(
                {
                    "topic_prefix": store.topic_prefix,
                    "users": [
                        {
                            "name": u.name,
                            "role": u.role.value,
                            "topics": list(u.topics),
                            "has_password": u.name in with_password,
                        }
                        for u in users
                    ],
                    "without_role": sorted(with_password - with_role),
                }
            )
        )
        return 0
    if not users and not with_password:
        print(f"no users yet in {store.password_file}: openspc users add NAME --role ROLE")
        return 0
    width = max([4, *(len(u.name) for u in users)])
    print(f"{'NAME':<{width}}  {'ROLE':<8}  TOPICS")
    for user in users:
        note = "" if user.name in with_password else "  (no password: cannot log in)"
        print(f"{user.name:<{width}}  {user.role.value:<8}  {' '.join(user.topics)}{note}")
    for name in sorted(with_password - with_role):
        print(f"{name:<{width}}  {'-':<8}  (password only, no role: may do nothing)")
    return 0
