"""Fuzzing the Train tab's zip importer with hypothesis: random zips of hostile entries
(zip-slip names, absolute and drive paths, symlinks, deep nesting, wide names, bombs, lying
headers, encrypted flags). Nothing is ever written outside the target folder and the caps hold.

The hand-written cases are in test_finetune.py; `python benchmarks/fuzz_zip.py` runs this longer.
"""

from datetime import timedelta

from hostile_zips import Entry, check_import, hostile_zips
from hypothesis import HealthCheck, given, settings


@settings(max_examples=120, deadline=timedelta(seconds=10),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hostile_zips())
def test_hostile_zips_never_write_outside_or_past_the_caps(tmp_path_factory, entries):
    check_import(tmp_path_factory.mktemp("zipfuzz"), entries)


def test_specific_shapes_the_fuzzer_found(tmp_path):
    """Entries whose path has no parts at all ('.'), and class names too wide for the file system."""
    png = Entry("cats/1.png", b"x").data
    for i, entries in enumerate([
        [Entry(".", png)],
        [Entry("./.", png), Entry("cats/1.png", png)],
        [Entry("🎨" * 64 + "/1.png", png)],
        [Entry("é" * 200 + "/1.png", png)],
    ]):
        check_import(tmp_path / str(i), entries)
