"""Tag the instance with its overlay IP and Neti version, off the critical path.

Tags are for people and tools (the report, the console); the agent works without them. So a
missing EC2 API, credentials or region is a logged warning and never delays or stops the agent.
The call runs in a short-lived child process: loading boto3's EC2 model costs ~30 MB that the
agent would otherwise keep for its whole life (measured: 66 MB vs 35 MB RSS per agent).
"""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from neti_core import __version__
from neti_core.config import NetiConfig

log = logging.getLogger(__name__)
TAG_JITTER_SECONDS = 20.0
EC2_WAIT_SECONDS = 600.0  # past botocore's own 5 tries: throttled or unreachable for minutes
# What waiting cannot fix: the keys or the role are wrong, or the instance is not this account's.
_PERMANENT_EC2_ERRORS = frozenset({"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId",
                                   "SignatureDoesNotMatch", "OptInRequired",
                                   "InvalidInstanceID.Malformed", "InvalidInstanceID.NotFound"})


def ec2_transient(exc: Exception) -> bool:
    """Throttling, 5xx and unreachable endpoints pass; bad credentials and bad ids do not."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "") not in _PERMANENT_EC2_ERRORS
    return isinstance(exc, (EndpointConnectionError, ConnectionError, TimeoutError)) and \
        not isinstance(exc, NoCredentialsError)


def tag_instance_now(config: NetiConfig, instance_id: str, overlay_ip: str) -> bool:
    from agent.retry import retry_transient
    from neti_core.aws import ec2_client, tag_instance

    try:
        client = ec2_client(config)
        retry_transient(lambda: tag_instance(client, instance_id,
                                             {"overlay_ip": overlay_ip, "neti_version": __version__}),
                        what="the EC2 API", is_transient=ec2_transient, give_up_after=EC2_WAIT_SECONDS,
                        logger=log)
    except Exception as exc:  # any AWS failure is only worth a warning here
        log.warning("could not tag %s with overlay_ip/neti_version: %s", instance_id, exc)
        return False
    log.info("tagged %s: overlay_ip=%s neti_version=%s", instance_id, overlay_ip, __version__)
    return True


def tag_in_background(config_path: str | Path, instance_id: str, overlay_ip: str,
                      jitter_seconds: float = TAG_JITTER_SECONDS) -> threading.Thread:
    """Tag from a child process, after a random delay; a thread waits for it so nothing blocks.

    The jitter spreads a fleet-wide restart's EC2 API calls (API rate limits) and keeps the
    start-up CPU for what matters first: registering and converging.
    """

    def run() -> None:
        time.sleep(random.uniform(0, jitter_seconds))
        try:
            result = subprocess.run([sys.executable, "-m", "agent.tagging", "-c", str(config_path),
                                     instance_id, overlay_ip], timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not run the tagging process: %s", exc)
            return
        if result.returncode != 0:
            log.debug("tagging process exited with %d", result.returncode)

    thread = threading.Thread(target=run, name="neti-tagging", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    import argparse

    from neti_core.config import load_config
    from neti_core.errors import ConfigError

    parser = argparse.ArgumentParser(description="Tag this instance (run by neti-agent).")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("instance_id")
    parser.add_argument("overlay_ip")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.warning("tagging skipped: %s", exc)
        return 2
    return 0 if tag_instance_now(config, args.instance_id, args.overlay_ip) else 1


if __name__ == "__main__":
    raise SystemExit(main())
