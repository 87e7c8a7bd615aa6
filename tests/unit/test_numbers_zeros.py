"""parse.numbers: zeros right after the country code are kept only where they read back the same (Italy)."""

from __future__ import annotations

import pytest

from mail2sms.errors import NumberError
from mail2sms.parse.numbers import normalize


@pytest.mark.parametrize("value", ["+49000000", "+49000001", "+49001000"])
def test_unstable_zeros_are_refused(value: str) -> None:
    """Numbers the library would read differently each time (hypothesis found +49000000) are not numbers."""
    with pytest.raises(NumberError, match="zeros after the country code"):
        normalize(value, None)


@pytest.mark.parametrize(("value", "digits"), [("+3906123456", "3906123456"), ("+49030123456", "4930123456")])
def test_real_leading_zeros_still_work(value: str, digits: str) -> None:
    """Italy's leading zero stays; Germany's trunk zero written after +49 is dropped, and both read back the same."""
    assert normalize(value, None) == digits
    assert normalize("+" + digits, None) == digits
