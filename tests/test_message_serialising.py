"""A newsletter's bytes are exactly what the standard generator writes, though its shared charts are written once."""

from __future__ import annotations

import email
from email import policy
from email.generator import BytesGenerator
from io import BytesIO

import pytest

from newsletters.compose import ComposedEmail
from newsletters.messages import message_build

PNG = bytes(range(256)) * 40  # 10 KB: several base64 lines, the part most messages share


def standard_bytes(mime, linesep: str) -> bytes:
    fp = BytesIO()
    BytesGenerator(fp, mangle_from_=False).flatten(mime, linesep=linesep)
    return fp.getvalue()


def newsletter(token: str, charts: dict[str, bytes]):
    composed = ComposedEmail(
        subject="NVDA leads, AAPL slips under its 50-day line",
        html="<p>" + "".join(f'<img src="cid:{cid}">' for cid in charts) + "</p>",
        text="NVDA leads",
        images=charts,
    )
    return message_build(
        composed=composed,
        to="ann@example.com",
        token=token,
        unsubscribe_url=f"https://walter.example.com/unsubscribe/{token}/",
    ).message()


@pytest.mark.parametrize("linesep", ["\n", "\r\n"])
def test_every_message_sharing_charts_comes_out_as_the_standard_generator_writes_it(linesep):
    charts = {"aapl@walter": PNG, "nvda@walter": PNG[::-1]}
    first, second = newsletter("token-1", charts), newsletter("token-2", {"nvda@walter": PNG[::-1]})
    for mime in (first, second, first):  # the second and third reuse what the first wrote of the chart
        assert mime.as_bytes(linesep=linesep) == standard_bytes(mime, linesep)
    assert first.as_bytes(linesep="\n") != first.as_bytes(linesep="\r\n")


def test_the_shared_chart_parts_are_written_once_and_reused():
    charts = {"aapl@walter": PNG}
    mimes = [newsletter(f"token-{i}", charts) for i in range(3)]
    for mime in mimes:
        mime.as_bytes()
    shared = {id(part) for mime in mimes for part in mime.walk() if getattr(part, "serialised", None)}
    assert len(shared) == 1, "every message shows the one chart part"
    parsed = email.message_from_bytes(mimes[2].as_bytes(), policy=policy.default)
    images = [p for p in parsed.walk() if p.get_content_type() == "image/png"]
    assert [p.get_content() for p in images] == [PNG]
    assert images[0]["Content-ID"] == "<aapl@walter>"
