"""The bytes an app signs: the quick encoder against the rfc8785 package."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from api import jws

keys = st.text(max_size=4) | st.text(
    alphabet=st.characters(min_codepoint=0xE000, exclude_categories=("Cs",)), max_size=3
)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=15,
)


@settings(max_examples=500, deadline=None)
@given(body=st.dictionaries(keys, values, max_size=5))
def test_the_signed_bytes_of_any_body_are_rfc8785(body: dict[str, Any]) -> None:
    """Including keys beyond the BMP, which sort by UTF-16 code units in RFC 8785."""
    assert jws.canonical_body(body) == rfc8785.dumps(body)


def test_a_float_in_a_plain_body_is_refused() -> None:
    with pytest.raises(jws.SignatureError, match="floats"):
        jws.canonical_body({"data": {"items": [{"amount": 1.5}]}})
