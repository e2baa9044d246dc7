"""The README's list of nets is the net table's."""

from pathlib import Path

from dets.models import nets_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_the_net_table():
    text = README.read_text()
    start = text.index("<!-- nets:")
    block = text[text.index("\n", start) + 1 : text.index("<!-- /nets -->")].strip()
    assert block == nets_markdown()
