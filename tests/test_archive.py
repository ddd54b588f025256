"""The archive overwrites a rerun's copy in place, through the storage's own setting."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage

from newsletters.archive import archive_read_html, archive_write


def test_a_second_write_replaces_the_first(archive_dir, trading_day):
    key = archive_write(day=trading_day, token="t-1", html="<p>first</p>", mime=b"first")
    again = archive_write(day=trading_day, token="t-1", html="<p>second</p>", mime=b"second")
    assert again == key and archive_read_html(key) == "<p>second</p>"
    assert sorted(p.name for p in (archive_dir / key).parent.iterdir()) == ["t-1.eml", "t-1.html"]


def test_a_storage_that_renames_instead_of_overwriting_is_refused(tmp_path, trading_day):
    storage = FileSystemStorage(location=str(tmp_path))  # allow_overwrite is off by default
    archive_write(day=trading_day, token="t-2", html="<p>first</p>", mime=b"first", storage=storage)
    with pytest.raises(ImproperlyConfigured, match="overwrit"):
        archive_write(day=trading_day, token="t-2", html="<p>second</p>", mime=b"second", storage=storage)
    assert len(list((tmp_path / "emails").rglob("*"))) == 2 + 3  # the two files and their three folders
