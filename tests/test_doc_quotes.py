"""How the walkthrough test compares the doc's quotes with what the tools print (fast; the
comparison itself runs in tests/test_walkthrough.py on a real lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.doc_quotes import DocQuotes, pattern_of, quoted_lines

WALKTHROUGH = Path(__file__).resolve().parent.parent / "docs" / "walkthrough.md"


def test_other_numbers_paths_and_elisions_match_other_words_do_not() -> None:
    quote = ("lab: started 40 hosts (app-001 … app-040: 30 EC2-Classic side) in 14.6 s; "
             "see /tmp/neti-lab-0/x.yml")
    pattern = pattern_of(quote)
    assert pattern.fullmatch("lab: started 10 hosts (app-001 … app-010: 7 EC2-Classic side) in 3.2 s; "
                             "see /tmp/pytest-1/lab/x.yml")
    assert not pattern.fullmatch("lab: started 10 hosts (app-001 … app-010: 7 EC2 side) in 3.2 s; "
                                 "see /tmp/pytest-1/lab/x.yml")
    assert not pattern.fullmatch("lab: started 10 hosts (app-001 … app-010: 7 EC2-Classic side) in 3.2 s; "
                                 "see /tmp/pytest-1/lab/y.yml")


def test_text_blocks_and_output_comments_are_quotes_commands_are_not() -> None:
    markdown = "```sh\nneti x   # inline\n# lab: said\n# …\n```\n\n```text\nline one\n\nline two\n```\n"
    assert quoted_lines(markdown) == ["lab: said", "line one", "line two"]


def test_a_changed_output_fails_with_both_lines_and_unchecked_quotes_are_listed(tmp_path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```text\nrefused: 2 hosts in error — c clears\nsecond: 1\n```\n")
    quotes = DocQuotes(doc)
    assert quotes.check("refused:", "a banner\nrefused: 5 hosts in error — c clears") == \
        "refused: 5 hosts in error — c clears"
    with pytest.raises(AssertionError, match="but the tool printed"):
        quotes.check("refused:", "refused: 5 hosts in error — o clears")
    assert quotes.unchecked() == ["second: 1"]


def test_the_walkthrough_quotes_what_its_test_compares() -> None:
    quotes = quoted_lines(WALKTHROUGH.read_text(encoding="utf-8"))
    assert any(q.startswith("lab: started ZooKeeper") and "TLS-only, ACLs" in q for q in quotes)
    assert any(q.startswith("NETI CRITICAL:") for q in quotes)
    assert all(pattern_of(q) for q in quotes)
