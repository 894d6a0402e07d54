"""The party entry format: strict parsing of untrusted names from ZooKeeper."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neti_core.errors import MalformedEntryError
from neti_core.members import (
    Member,
    Side,
    format_party_entry,
    parse_party,
    parse_party_entry,
    validate_instance_id,
)

addresses = st.integers(min_value=0, max_value=2**32 - 1).map(IPv4Address)
members = st.builds(Member, public=addresses, private=addresses, overlay=addresses,
                    side=st.sampled_from(Side))
uuids = st.uuids().map(lambda u: u.hex)
DANGEROUS = [*";&$`'\"\\!*?()[]{}<>~#%^ \t\n/:,=+@\x00", "|", "||", "--"]


@given(uuids, members)
def test_format_then_parse_round_trips(entry_uuid, member):
    entry = parse_party_entry(format_party_entry(entry_uuid, member))
    assert entry.uuid == entry_uuid
    assert entry.member == member


@given(st.text())
def test_arbitrary_text_is_a_member_or_a_typed_error(text):
    try:
        entry = parse_party_entry(text)
    except MalformedEntryError:
        return
    # Whatever parses must print back to exactly the same name: nothing was dropped or coerced.
    assert entry.node_name == text


@given(uuids, members, st.sampled_from(DANGEROUS), st.integers(min_value=0, max_value=200))
def test_a_shell_or_iptables_metacharacter_anywhere_makes_the_entry_invalid(
        entry_uuid, member, char, position):
    name = format_party_entry(entry_uuid, member)
    position %= len(name) + 1
    with pytest.raises(MalformedEntryError):
        parse_party_entry(name[:position] + char + name[position:])


@given(uuids, members, st.sampled_from([";", " ", "\n", "$(x)", "`x`", "-j ACCEPT", "/32"]))
def test_a_valid_entry_with_anything_appended_is_rejected(entry_uuid, member, suffix):
    with pytest.raises(MalformedEntryError):
        parse_party_entry(format_party_entry(entry_uuid, member) + suffix)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "abc",
        f"{'0' * 32}-1.2.3.4|10.0.0.1|192.168.0.1",  # three fields
        f"{'0' * 32}-1.2.3.4|10.0.0.1|192.168.0.1|2",  # bad side flag
        f"{'0' * 32}-1.2.3.4|10.0.0.01|192.168.0.1|0",  # leading zero
        f"{'0' * 32}-1.2.3.4|10.0.0.256|192.168.0.1|0",
        f"{'0' * 32}-::1|10.0.0.1|192.168.0.1|0",
        f"{'0' * 32}- 1.2.3.4|10.0.0.1|192.168.0.1|0",
        f"{'G' * 32}-1.2.3.4|10.0.0.1|192.168.0.1|0",  # not hex
        f"{'0' * 31}-1.2.3.4|10.0.0.1|192.168.0.1|0",
        "1.2.3.4|10.0.0.1|192.168.0.1|0",  # no uuid
        f"{'0' * 32}-1.2.3.4|10.0.0.1|192.168.0.1|0;iptables -F",
    ],
)
def test_malformed_entries_are_typed_errors(name):
    with pytest.raises(MalformedEntryError):
        parse_party_entry(name)


def test_the_original_agents_entry_parses():
    entry = parse_party_entry("4f5e3b0c9d8a7b6c5d4e3f2a1b0c9d8e-54.1.2.3|10.0.0.5|192.168.3.4|1")
    assert entry.member == Member(IPv4Address("54.1.2.3"), IPv4Address("10.0.0.5"),
                                  IPv4Address("192.168.3.4"), Side.VPC)


def test_filter_ip_is_private_on_the_same_side_and_public_across():
    member = Member(IPv4Address("54.1.2.3"), IPv4Address("10.0.0.5"), IPv4Address("192.168.3.4"),
                    Side.EC2)
    assert member.filter_ip(Side.EC2) == IPv4Address("10.0.0.5")
    assert member.filter_ip(Side.VPC) == IPv4Address("54.1.2.3")


def test_parse_party_keeps_good_entries_and_reports_bad_ones():
    good = format_party_entry(uuid.uuid4().hex, Member(IPv4Address("1.1.1.1"), IPv4Address("10.0.0.1"),
                                                      IPv4Address("192.168.0.9"), Side.EC2))
    party = parse_party([good, "garbage", f"{uuid.uuid4().hex}-1.1.1.1|x|y|0"])
    assert [e.node_name for e in party.entries] == [good]
    assert [name for name, _ in party.malformed] == ["garbage", party.malformed[1][0]]
    assert all(reason for _, reason in party.malformed)


@pytest.mark.parametrize("text", ["i-0123456789abcdef0", "i-12345678"])
def test_instance_ids(text):
    assert validate_instance_id(text) == text


@pytest.mark.parametrize("text", ["", "i-", "i-XYZ45678", "i-1234567", "../i-12345678", "i-12345678/x",
                                  "i-0123456789abcdef0\n"])
def test_bad_instance_ids(text):
    with pytest.raises(MalformedEntryError):
        validate_instance_id(text)
