"""What the operator subcommands share: arguments, the ZooKeeper session, AWS calls and their errors.

AWS and ZooKeeper failures become one line on stderr (exit 1: the world is wrong); bad input
(a group id that is not ``sg-…``, a missing group, an unreadable file) is exit 2, like argparse.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar

from neti_core.cliutil import DEFAULT_CONFIG, EXIT_USAGE, fail
from neti_core.config import NetiConfig
from neti_core.errors import ConfigError

if TYPE_CHECKING:
    from kazoo.client import KazooClient

PROG = "neti"
EXIT_FAILURE = 1
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
_GROUP_ID = re.compile(r"sg-(?:[0-9a-f]{8}|[0-9a-f]{17})")
T = TypeVar("T")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=str(DEFAULT_CONFIG), help="neti.yml")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")


def add_zk_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zk", help="ZooKeeper connect string (default: zk_hosts of --side)")
    parser.add_argument("--side", choices=["ec2", "vpc"], default="vpc",
                        help="which side's zk_hosts to use (default: vpc)")
    parser.add_argument("--timeout", type=float, default=10.0, help="ZooKeeper connect timeout, s")


def group_id(text: str) -> str:
    """argparse type for a security-group id: ``sg-`` and 8 or 17 hex digits, nothing else."""
    if not _GROUP_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a security group id (sg-…): {text!r}")
    return text


@contextmanager
def zk_session(config: NetiConfig, args: argparse.Namespace, *,
               read_only: bool = True) -> Iterator[KazooClient]:
    """A started kazoo client for ``--zk`` or the config's zk_hosts; unreachable → exit 1."""
    from kazoo.handlers.threading import KazooTimeoutError

    from neti_core.members import Side
    from neti_core.zkclient import install_acl, make_client

    try:
        hosts = args.zk or config.zk_connect_string(Side(args.side))
    except ConfigError as exc:
        fail(PROG, str(exc), status=EXIT_USAGE)
    try:
        client = make_client(config, hosts, read_only=read_only)
    except ConfigError as exc:
        fail(PROG, str(exc), status=EXIT_USAGE)
    try:
        client.start(timeout=args.timeout)
    except KazooTimeoutError:
        client.close()
        fail(PROG, f"cannot reach ZooKeeper at {hosts} within {args.timeout:g} s", status=EXIT_FAILURE)
    try:
        if not read_only:
            install_acl(client, config.zk_paths)  # what this operator creates carries the tree's ACL
        yield client
    finally:
        client.stop()
        client.close()


def aws_error_code(exc: BaseException) -> str:
    """The EC2 error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def aws_fail(exc: BaseException, doing: str) -> NoReturn:
    """One line for an AWS failure: a missing group is bad input (2), the rest is exit 1."""
    code = aws_error_code(exc)
    if code in {"InvalidGroup.NotFound", "InvalidGroupId.Malformed", "InvalidGroupId.NotFound"}:
        fail(PROG, f"{doing}: security group not found ({code})", status=EXIT_USAGE)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    fail(PROG, f"{doing}: {message}", status=EXIT_FAILURE)


def aws_call(doing: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one boto3 call; any botocore failure becomes :func:`aws_fail`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(*args, **kwargs)
    except (ClientError, BotoCoreError) as exc:
        aws_fail(exc, doing)


def ec2_client_or_exit(config: NetiConfig) -> Any:
    """The EC2 client of neti.yml (keys, region, endpoint); a missing region is one line, exit 2."""
    from botocore.exceptions import BotoCoreError

    from neti_core.aws import ec2_client

    try:
        return ec2_client(config)
    except BotoCoreError as exc:
        fail(PROG, f"cannot build an EC2 client: {exc} (set aws_region in neti.yml)",
             status=EXIT_USAGE)
