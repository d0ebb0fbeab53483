"""`openspc users`: the broker's users, their passwords (mosquitto_passwd) and roles (the ACL)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.mosquitto_admin import BrokerUser, UserStore

HELP = "manage the broker's users: add, remove, list (password file and ACL)"

_DEFAULT_PASSWORD_FILE = Path("mosquitto/passwd")
_ROLES = ("hmi", "engineer", "gauge", "edge", "bridge", "gateway")


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
        "--characteristics",
        metavar="IDS",
        help="gauge only: the characteristics whose <prefix>/char/<id>/reading it may write, "
        "e.g. 1,2 (a gauge without this or --topic writes nothing)",
    )
    add.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="gauge/edge only: a further topic (filter) it may publish readings on, e.g. "
        "plant1/line3/gauge7/#; repeat for more",
    )
    add.add_argument(
        "--group",
        metavar="G",
        help="edge only, with --edge: its Sparkplug group (it writes only its own node's "
        "spBv1.0/G/{N,D}{BIRTH,DATA,DEATH}/E[/device] and reads its NCMD/DCMD)",
    )
    add.add_argument("--edge", metavar="E", help="edge only, with --group: its edge node id")
    add.add_argument(
        "--client-id",
        metavar="ID",
        help="bridge only: the bridge's [broker] client_id (default openspc-bridge); that id "
        "and every id starting with ID- are reserved for the bridge's users",
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
    from bridge import mosquitto_admin as broker

    store = broker.UserStore(args.password_file, acl_file=args.acl_file)
    try:
        if args.action == "list":
            return _list(store, as_json=args.json)
        if args.action == "add":
            failed = _add(store, args)
            if failed is not None:
                return failed
        else:
            store.remove(args.name)
            print(f"{args.name}: removed from {store.password_file}")
        print(f"ACL and guard rules rewritten: {store.acl_file}, {store.guard_file}")
        _warn_legacy(store)
        _reload(store, args)
        return 0
    except (
        broker.InvalidUserName,
        broker.InvalidTopic,
        broker.InvalidPassword,
        broker.InvalidUserScope,
    ) as exc:
        return _fail(str(exc))
    except broker.UnknownUser as exc:
        return _fail(str(exc))
    except broker.BrokerNotRunning as exc:
        return _fail(f"files updated, but {exc}", 1)
    except broker.PasswordToolFailed as exc:
        return _fail(str(exc), 1)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot update the broker's files: {exc}", 1)


def _add(store: UserStore, args: argparse.Namespace) -> int | None:
    """`openspc users add`: None when saved, else the exit code of the refusal."""
    from bridge import mosquitto_admin as broker

    if args.topic and args.role not in ("gauge", "edge"):
        return _fail(f"--topic is for gauge and edge users, not {args.role}")
    characteristics = (
        broker.parse_characteristics(args.characteristics)
        if args.characteristics is not None
        else ()
    )
    if (args.group is None) != (args.edge is None):
        return _fail("--group and --edge go together (an edge user's own node)")
    sparkplug = (args.group, args.edge) if args.group is not None else None
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
        characteristics=characteristics,
        sparkplug=sparkplug,
        client_id=args.client_id,
        topic_prefix=args.topic_prefix,
    )
    print(f"{user.name}: {user.role.value} user saved in {store.password_file}")
    if user.role in (broker.Role.GAUGE, broker.Role.EDGE) and not _writes(user):
        print(
            f"note: {user.name} may write nothing yet: give it --characteristics, "
            "--topic" + (" or --group/--edge" if user.role is broker.Role.EDGE else "")
        )
    if args.generate:
        print(f"password: {password}")
    if args.password_file == _DEFAULT_PASSWORD_FILE:
        # the shipped mosquitto.conf keeps persistence and its pid file there, and
        # loads the guard plugin built beside its source
        broker.prepare_data_dir(args.password_file.parent / "data")
        try:
            broker.guard_plugin()
        except broker.GuardPluginUnavailable as exc:
            print(f"openspc users: warning: {exc}", file=sys.stderr)
    return None


def _reload(store: UserStore, args: argparse.Namespace) -> None:
    """``--reload``: SIGHUP to the running Mosquitto; otherwise say how to."""
    from bridge import mosquitto_admin as broker

    pid_file = args.pid_file or store.password_file.parent / "data" / "mosquitto.pid"
    if args.reload:
        pid = broker.reload_broker(pid_file)
        print(f"Mosquitto (pid {pid}) told to reload its password file and ACL")
    else:
        print(
            f"Reload Mosquitto to apply: openspc users ... --reload, or kill -HUP $(cat {pid_file})"
        )


def _writes(user: BrokerUser) -> bool:
    return bool(user.topics or user.characteristics or user.group or user.legacy)


def _scope(user: BrokerUser) -> str:
    parts = []
    if user.characteristics:
        parts.append("characteristics " + ",".join(str(c) for c in user.characteristics))
    if user.group is not None:
        parts.append(f"node {user.group}/{user.edge}")
    if user.role.value == "bridge":
        parts.append(f"client id {user.bridge_client_id}")
    if user.legacy:
        parts.append("LEGACY: unscoped")
    parts += user.topics
    if user.role.value in ("gauge", "edge") and not _writes(user):
        parts.append("(writes nothing)")
    return " ".join(parts)


def _warn_legacy(store: UserStore) -> None:
    legacy = [u.name for u in store.users() if u.legacy]
    if legacy:
        print(
            f"openspc users: warning: {', '.join(legacy)} still have the old unscoped rights "
            "(any characteristic / any edge node): add them again with --characteristics, "
            "--topic or --group/--edge (docs/broker.md)",
            file=sys.stderr,
        )


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
                            **u.to_json(),
                            "topics": list(u.topics),
                            "legacy": u.legacy,
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
    print(f"{'NAME':<{width}}  {'ROLE':<8}  SCOPE")
    for user in users:
        note = "" if user.name in with_password else "  (no password: cannot log in)"
        print(f"{user.name:<{width}}  {user.role.value:<8}  {_scope(user)}{note}")
    for name in sorted(with_password - with_role):
        print(f"{name:<{width}}  {'-':<8}  (password only, no role: may do nothing)")
    _warn_legacy(store)
    return 0
