"""The overlay-IP registry in ZooKeeper: stable overlay IPs, the live party, and the ZK parameters.

Allocation must never hand one overlay IP to two instances, even when hundreds register in the same
second, so both maps (``ip-to-id/<ip>`` and ``id-to-ip/<id>``) are claimed in one multi-operation
transaction. Losing a race is normal: re-read, reuse the instance's IP if it has one by now,
otherwise pick another free address. The layout is the original Neti's, so an existing tree is
read as is, and half-written pairs left by its non-transactional agents are repaired or reported.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoAuthError, NodeExistsError, NoNodeError

from neti_core.config import ZkPaths
from neti_core.errors import MalformedEntryError, OverlayExhaustedError, RegistryError
from neti_core.members import ParsedParty, parse_ipv4, parse_party, validate_instance_id
from neti_core.schema import DEFAULT_INTERVAL_SECONDS, DEFAULT_MAXCHANGE, decode_interval, decode_maxchange
from neti_core.zkbulk import read_many

log = logging.getLogger(__name__)

_ALLOCATION_ATTEMPTS = 64
_RANDOM_PROBES = 32


# --- ZooKeeper parameters ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ZkParams:
    """``maxchange`` and ``interval``, with what was wrong with them if they were unreadable."""

    maxchange: int = DEFAULT_MAXCHANGE
    interval: float = DEFAULT_INTERVAL_SECONDS
    problems: tuple[str, ...] = ()


def _read_number(client: KazooClient, path: str, default: float,
                 decode: Callable[[bytes], float], problems: list[str]) -> float:
    # A secured tree refuses an agent's create (NoAuth, checked before existence): operators made it.
    with contextlib.suppress(NodeExistsError, NoAuthError):
        # "1", not "1.0": agents of the original Neti read these nodes with int().
        client.create(path, f"{default:g}".encode(), makepath=True)
    try:
        data, _ = client.get(path)
    except NoNodeError:
        problems.append(f"{path}: absent and not ours to create; using {default:g}")
        return default
    try:
        return decode(data)
    except MalformedEntryError as exc:
        problems.append(f"{exc}; using {default:g} until a good value is read")
        return default


def read_params(client: KazooClient, paths: ZkPaths) -> ZkParams:
    """Read ``maxchange`` and ``interval``; write the interval's default when it is absent.

    ``maxchange`` is an operator's node (DESIGN.md "Trust"): absent, the agent's guard uses its
    default share (neti_core/maxchange.py) and the agent writes nothing there. A share ("10%")
    is the guard's to read; here only a count is reported.
    """
    problems: list[str] = []
    data = client.get(paths.maxchange)[0] if client.exists(paths.maxchange) else None
    maxchange = DEFAULT_MAXCHANGE
    if data and not data.strip().endswith(b"%"):
        try:
            maxchange = decode_maxchange(data)
        except MalformedEntryError as exc:
            problems.append(f"{exc}; using the guard's default until a good value is read")
    interval = _read_number(client, paths.interval, DEFAULT_INTERVAL_SECONDS, decode_interval, problems)
    return ZkParams(int(maxchange), float(interval), tuple(problems))


# --- overlay-IP allocation -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Registration:
    instance_id: str
    overlay_ip: IPv4Address
    newly_allocated: bool
    repaired: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RegistryProblem:
    """One inconsistency between the two maps. ``repairable`` ones are fixed by ``repair``."""

    kind: str  # missing-ip-to-id | missing-id-to-ip | orphan | conflict | malformed
    detail: str
    instance_id: str | None = None
    overlay_ip: IPv4Address | None = None
    repairable: bool = False


class OverlayRegistry:
    """Allocates and looks up overlay IPs in the ``ip-to-id`` / ``id-to-ip`` maps."""

    def __init__(self, client: KazooClient, paths: ZkPaths, subnet: IPv4Network,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.paths = paths
        self.subnet = subnet
        self._rng = rng or random.SystemRandom()

    def ensure_tree(self) -> None:
        for path in (self.paths.ip_to_id, self.paths.id_to_ip, self.paths.ip_map):
            self.client.ensure_path(path)

    def _ip_node(self, ip: IPv4Address) -> str:
        return f"{self.paths.ip_to_id}/{ip}"

    def _id_node(self, instance_id: str) -> str:
        return f"{self.paths.id_to_ip}/{instance_id}"

    def lookup(self, instance_id: str) -> IPv4Address | None:
        """The instance's overlay IP as recorded in ``id-to-ip``, or None."""
        try:
            data, _ = self.client.get(self._id_node(validate_instance_id(instance_id)))
        except NoNodeError:
            return None
        return parse_ipv4(data.decode(errors="replace").strip())

    def register(self, instance_id: str) -> Registration:
        """Return the instance's overlay IP, allocating one if it has none. Safe to race."""
        validate_instance_id(instance_id)
        taken: set[str] = set()
        for _ in range(_ALLOCATION_ATTEMPTS):
            existing = self._existing(instance_id)
            if existing is not None:
                return existing
            try:
                taken.update(self.client.get_children(self.paths.ip_to_id))
            except NoNodeError:
                self.ensure_tree()  # first registration in this tree
                continue
            candidate = self._pick_free(taken)
            transaction = self.client.transaction()
            transaction.create(self._ip_node(candidate), instance_id.encode())
            transaction.create(self._id_node(instance_id), str(candidate).encode())
            results = transaction.commit()
            if not any(isinstance(r, Exception) for r in results):
                return Registration(instance_id, candidate, newly_allocated=True)
            if any(isinstance(r, NoNodeError) for r in results):
                self.ensure_tree()  # a tree from an older agent may lack one of the maps
            taken.add(str(candidate))  # lost a race for this IP, or our id was claimed: re-read
        raise RegistryError(f"could not allocate an overlay IP for {instance_id} after "
                            f"{_ALLOCATION_ATTEMPTS} attempts (heavy contention?)")

    def _existing(self, instance_id: str) -> Registration | None:
        """Reuse the instance's recorded IP, repairing a half-written pair; None if it has none."""
        try:
            data, stat = self.client.get(self._id_node(instance_id))
        except NoNodeError:
            return None
        text = data.decode(errors="replace").strip()
        try:
            ip = parse_ipv4(text)
        except MalformedEntryError:
            log.warning("id-to-ip/%s holds %r, not an IP: allocating a new one", instance_id, text)
            return self._replace_forward(instance_id, stat.version, f"malformed id-to-ip {text!r}")
        try:
            owner_data, owner_stat = self.client.get(self._ip_node(ip))
        except NoNodeError:
            try:
                self.client.create(self._ip_node(ip), instance_id.encode(), makepath=True)
            except NodeExistsError:
                return self._existing(instance_id)  # someone claimed it meanwhile: look again
            note = f"repaired missing ip-to-id/{ip} for {instance_id}"
            log.warning(note)
            return Registration(instance_id, ip, newly_allocated=False, repaired=(note,))
        owner = owner_data.decode(errors="replace").strip()
        if owner == instance_id:
            return self._reclaim(instance_id, ip, data, stat.version, owner_stat.version)
        log.warning("id-to-ip/%s says %s but ip-to-id/%s belongs to %s: allocating a new IP",
                    instance_id, ip, ip, owner)
        return self._replace_forward(instance_id, stat.version, f"{ip} is owned by {owner}")

    def restore_pair(self, instance_id: str, ip: IPv4Address, watch: Callable[[object], None] | None = None,
                     ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Put back a live host's own pair that someone deleted or changed: (what was restored,
        what could not be). ``ip-to-id/<ip>`` that now names another instance is a conflict to
        report, never to overwrite: that instance may have been handed the address meanwhile.
        """
        notes: list[str] = []
        conflicts: list[str] = []
        for path, want in ((self._id_node(instance_id), str(ip)), (self._ip_node(ip), instance_id)):
            try:
                data, _ = self.client.get(path, watch=watch)
            except NoNodeError:
                with contextlib.suppress(NodeExistsError):
                    self.client.create(path, want.encode(), makepath=True)
                    notes.append(f"restored missing {path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}")
                self.client.exists(path, watch=watch)
                continue
            have = data.decode(errors="replace").strip()
            if have == want:
                continue
            if path == self._id_node(instance_id):
                self.client.set(path, want.encode())
                notes.append(f"restored id-to-ip/{instance_id} to {want} (it said {have[:40]!r})")
            else:
                conflicts.append(f"ip-to-id/{ip} names {have[:40]!r}, not this host: left as it is")
        return tuple(notes), tuple(conflicts)

    def _reclaim(self, instance_id: str, ip: IPv4Address, data: bytes, id_version: int,
                 ip_version: int) -> Registration | None:
        """Take the recorded pair back by rewriting ``id-to-ip/<id>`` unchanged, conditional on both
        versions. The write is what makes a returning host safe against ``neti registry reclaim``:
        the reclaim deletes the pair only at the versions it judged, so either this write wins and
        the reclaim of the pair fails, or the reclaim won and this finds no pair and allocates anew.
        A host never runs on an address that was handed back."""
        transaction = self.client.transaction()
        transaction.set_data(self._id_node(instance_id), data, version=id_version)
        transaction.check(self._ip_node(ip), version=ip_version)
        if any(isinstance(r, Exception) for r in transaction.commit()):
            return self._existing(instance_id)  # the pair moved (reclaimed or repaired): look again
        return Registration(instance_id, ip, newly_allocated=False)

    def _replace_forward(self, instance_id: str, version: int, reason: str) -> Registration | None:
        """Give an instance whose forward entry is unusable a fresh IP, atomically."""
        taken = set(self.client.get_children(self.paths.ip_to_id))
        candidate = self._pick_free(taken)
        transaction = self.client.transaction()
        transaction.set_data(self._id_node(instance_id), str(candidate).encode(), version=version)
        transaction.create(self._ip_node(candidate), instance_id.encode())
        if any(isinstance(r, Exception) for r in transaction.commit()):
            return self._existing(instance_id)
        note = f"re-allocated {instance_id} to {candidate}: {reason}"
        return Registration(instance_id, candidate, newly_allocated=True, repaired=(note,))

    def _pick_free(self, taken: set[str]) -> IPv4Address:
        """A random free host address (random, so concurrent registrations rarely collide)."""
        first = int(self.subnet.network_address) + 1
        last = int(self.subnet.broadcast_address) - 1
        for _ in range(_RANDOM_PROBES):
            candidate = IPv4Address(self._rng.randint(first, last))
            if str(candidate) not in taken:
                return candidate
        start = self._rng.randint(first, last)
        for offset in range(last - first + 1):
            candidate = IPv4Address(first + (start - first + offset) % (last - first + 1))
            if str(candidate) not in taken:
                return candidate
        raise OverlayExhaustedError(
            f"overlay subnet {self.subnet} is exhausted: all {last - first + 1} addresses are taken")

    # --- audit and repair of the two maps ---------------------------------------------------------

    def read_maps(self) -> tuple[dict[str, str], dict[str, str]]:
        """(ip-to-id, id-to-ip) as raw text, read in bulk (multi-read)."""
        maps = []
        for path in (self.paths.ip_to_id, self.paths.id_to_ip):
            try:
                children = self.client.get_children(path)
            except NoNodeError:
                children = []
            data = read_many(self.client, [f"{path}/{child}" for child in children])
            maps.append({child: value.decode(errors="replace").strip()
                         for child, value in zip(children, data, strict=True) if value is not None})
        return maps[0], maps[1]

    def audit(self) -> list[RegistryProblem]:
        ip_to_id, id_to_ip = self.read_maps()
        return list(find_problems(ip_to_id, id_to_ip))

    def repair(self, problems: Iterable[RegistryProblem]) -> list[RegistryProblem]:
        """Fix the repairable problems; return those it fixed. Never overwrites a live claim."""
        fixed = []
        for problem in problems:
            if not problem.repairable or problem.instance_id is None or problem.overlay_ip is None:
                continue
            ip, instance_id = problem.overlay_ip, problem.instance_id
            try:
                if problem.kind == "missing-ip-to-id":
                    self.client.create(self._ip_node(ip), instance_id.encode(), makepath=True)
                elif problem.kind == "missing-id-to-ip":
                    self.client.create(self._id_node(instance_id), str(ip).encode())
                elif problem.kind == "orphan":
                    data, stat = self.client.get(self._ip_node(ip))
                    if data.decode().strip() != instance_id:
                        continue
                    self.client.delete(self._ip_node(ip), version=stat.version)
                else:
                    continue
            except (NodeExistsError, NoNodeError, BadVersionError):
                continue  # the tree moved under us; the next audit will look again
            fixed.append(problem)
        return fixed


def find_problems(ip_to_id: dict[str, str], id_to_ip: dict[str, str]) -> Iterable[RegistryProblem]:
    """Pure check of the two maps against each other."""
    for name, owner in ip_to_id.items():
        try:
            ip = parse_ipv4(name)
            validate_instance_id(owner)
        except MalformedEntryError as exc:
            yield RegistryProblem("malformed", f"ip-to-id/{name}: {exc}")
            continue
        forward = id_to_ip.get(owner)
        if forward is None:
            claims = [n for n, o in ip_to_id.items() if o == owner]
            yield RegistryProblem("missing-id-to-ip", f"ip-to-id/{ip} -> {owner} has no id-to-ip",
                                  owner, ip, repairable=len(claims) == 1)
        elif forward != name and ip_to_id.get(forward) == owner:
            yield RegistryProblem("orphan", f"ip-to-id/{ip} -> {owner}, whose IP is {forward}",
                                  owner, ip, repairable=True)
    for instance_id, text in id_to_ip.items():
        try:
            validate_instance_id(instance_id)
            ip = parse_ipv4(text)
        except MalformedEntryError as exc:
            yield RegistryProblem("malformed", f"id-to-ip/{instance_id}: {exc}")
            continue
        claimant = ip_to_id.get(str(ip))
        if claimant is None:
            yield RegistryProblem("missing-ip-to-id", f"id-to-ip/{instance_id} -> {ip} has no ip-to-id",
                                  instance_id, ip, repairable=True)
        elif claimant != instance_id:
            yield RegistryProblem("conflict", f"id-to-ip/{instance_id} -> {ip}, owned by {claimant}",
                                  instance_id, ip)


# --- the live party ------------------------------------------------------------------------------

def read_party(client: KazooClient, paths: ZkPaths,
               watch: Callable[..., object] | None = None) -> tuple[ParsedParty, int]:
    """The members announced under ``ip-map`` and the children version they were read at."""
    children, stat = client.get_children(paths.ip_map, watch=watch, include_data=True)
    return parse_party(children), stat.cversion
