"""Tag the instance with its overlay IP and Neti version, off the critical path.

Tags are for people and tools (the report, the console); the agent works without them. So a
missing EC2 API, credentials or region is a logged warning and never delays or stops the agent.
"""

from __future__ import annotations

import logging
import threading

from neti_core import __version__
from neti_core.config import NetiConfig

log = logging.getLogger(__name__)


def tag_instance_now(config: NetiConfig, instance_id: str, overlay_ip: str) -> bool:
    from neti_core.aws import ec2_client, tag_instance

    try:
        client = ec2_client(config)
        tag_instance(client, instance_id, {"overlay_ip": overlay_ip, "neti_version": __version__})
    except Exception as exc:  # any AWS failure is only worth a warning here
        log.warning("could not tag %s with overlay_ip/neti_version: %s", instance_id, exc)
        return False
    log.info("tagged %s: overlay_ip=%s neti_version=%s", instance_id, overlay_ip, __version__)
    return True


def tag_in_background(config: NetiConfig, instance_id: str, overlay_ip: str) -> threading.Thread:
    thread = threading.Thread(target=tag_instance_now, args=(config, instance_id, overlay_ip),
                              name="neti-tagging", daemon=True)
    thread.start()
    return thread
