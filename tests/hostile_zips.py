"""Hostile zips for the Train tab's importer (artlab.store.uploads.import_zip), shared by the fuzz test
(tests/test_zip_fuzz.py) and the long fuzz run (benchmarks/fuzz_zip.py).

`hostile_zips()` is a hypothesis strategy for a list of entries; `build_zip` writes them;
`check_import` runs the importer in a sandbox and checks the invariants: it either imports or
refuses with UploadError (nothing else), nothing is written outside the target folder, no
link is created, and the byte and file caps hold.
"""

import io
import os
import re
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st
from PIL import Image


def _png(color: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (color, 255 - color, 40)).save(buf, "PNG")
    return buf.getvalue()


PNGS = [_png(c) for c in (0, 90, 200)]

# Path pieces that have broken zip extractors before: traversal, absolute and drive paths,
# backslashes, dots, empty parts, NULs, very long and very wide (4-byte UTF-8) names.
NASTY_PARTS = ["..", ".", "", "/", "\\", "..\\..", "C:", "c:\\", "//server", "~", "__MACOSX", ".hidden",
               "\0", "con", "a" * 300, "🎨" * 64, "é" * 200, " ", "...", "../" * 8, "%2e%2e", "\u202e"]
SUFFIXES = [".png", ".PNG", ".jpg", ".txt", "", ".png/", ".pkl", ".png\0.txt"]


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes
    symlink: bool = False         # external attributes say "symbolic link"; data is its target
    encrypted: bool = False       # the encrypted flag bit, set on a plain entry
    compress: bool = True
    lie: bool = False             # the central directory claims a smaller size than the data


part = st.one_of(st.sampled_from(["cats", "dogs", "mine", "a", "b"]), st.sampled_from(NASTY_PARTS),
                 st.text(min_size=1, max_size=12))
name = st.builds(lambda parts, leading, suffix: leading + "/".join(parts) + suffix,
                 st.lists(part, min_size=1, max_size=10), st.sampled_from(["", "", "", "/", "./", "../", "\\"]),
                 st.sampled_from(SUFFIXES))
data = st.one_of(st.sampled_from(PNGS), st.binary(max_size=64),
                 st.builds(lambda n: b"\0" * n, st.integers(0, 400_000)))           # compressible: bombs
rare = st.sampled_from([False] * 9 + [True])


def _entry(name, data, symlink, encrypted, compress, lie) -> Entry:
    if symlink:  # a link pointing out of the target folder
        data = b"../../../../etc/passwd"
    return Entry(name, data, symlink, encrypted, compress, lie)


entry = st.builds(_entry, name, data, rare, rare, st.booleans(), rare)


def hostile_zips(max_entries: int = 30):
    """Lists of entries: mostly plausible class folders, mixed with the nasty ones."""
    plausible = st.builds(lambda cls, i, png: Entry(f"{cls}/{i}.png", png),
                          st.sampled_from(["cats", "dogs", "birds"]), st.integers(0, 99), st.sampled_from(PNGS))
    # Safe names with hostile contents and flags reach the checks after the name checks.
    flagged = st.builds(_entry, st.builds("{}/{}.png".format, st.sampled_from(["cats", "dogs"]), st.integers(0, 9)),
                        data, rare, rare, st.booleans(), rare)
    return st.lists(st.one_of(plausible, flagged, entry), min_size=0, max_size=max_entries)


def _patch_central_directory(raw: bytes, patches: list[tuple[bool, bool]]) -> bytes:
    """Per written entry (encrypted, lie): set the encrypted flag bit, or claim 1 byte uncompressed.

    zipfile clears the flags when it writes, so the central directory is edited afterwards.
    """
    out = bytearray(raw)
    at = out.find(b"PK\x01\x02")
    for encrypted, lie in patches:
        if at < 0:
            break
        if encrypted:
            out[at + 8] |= 0x1
        if lie:
            out[at + 24:at + 28] = struct.pack("<I", 1)
        at = out.find(b"PK\x01\x02", at + 46)
    return bytes(out)


def build_zip(path: Path, entries: list[Entry]) -> Path:
    buf = io.BytesIO()
    patches = []
    with zipfile.ZipFile(buf, "w") as archive:
        for item in entries:
            info = zipfile.ZipInfo(item.name or "x")
            info.compress_type = zipfile.ZIP_DEFLATED if item.compress else zipfile.ZIP_STORED
            if item.symlink:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            try:
                archive.writestr(info, item.data)
            except (ValueError, UnicodeEncodeError, IndexError):     # a name zipfile itself cannot write
                continue
            patches.append((item.encrypted, item.lie))
    path.write_bytes(_patch_central_directory(buf.getvalue(), patches))
    return path


def _all_paths(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        found += [Path(folder) / n for n in dirs + files]
    return found


def check_import(sandbox: Path, entries: list[Entry], max_bytes: int = 300_000, max_files: int = 25) -> str:
    """Import a hostile zip in `sandbox`; assert the invariants; return what happened (for reports)."""
    from artlab.store.uploads import ImportResult, UploadError, import_zip

    sandbox.mkdir(parents=True, exist_ok=True)
    archive = build_zip(sandbox / "upload.zip", entries)
    dest = sandbox / "staging" / "classes"
    outcome = "imported"
    try:
        result = import_zip(archive, dest, max_bytes=max_bytes, max_files=max_files)
    except UploadError as e:
        message = str(e)
        assert message and "\n" not in message, f"unclear refusal: {message!r}"
        reason = re.sub(r"\d+", "N", re.sub(r"(['\"]).*?\1", "NAME", message.removeprefix("zip refused: ")))
        outcome = "refused: " + reason[:70]
        result = None
    written = _all_paths(sandbox)
    for path in written:
        assert path == archive or path.is_relative_to(dest) or dest.is_relative_to(path), \
            f"written outside the target folder: {path}"
        assert not path.is_symlink(), f"a link was created: {path}"
    files = [p for p in written if p.is_file() and p != archive]
    assert sum(p.stat().st_size for p in files) <= max_bytes, "the byte cap did not hold"
    assert len(files) <= max_files, "the file cap did not hold"
    if result is not None:
        assert isinstance(result, ImportResult)
        for cls, saved in result.classes.items():
            assert (dest / cls).parent == dest and "/" not in cls and not cls.startswith(".")
            assert all(p.parent == dest / cls and p.is_file() for p in saved)
        outcome += f" {sum(result.counts().values())} image(s) in {len(result.classes)} class(es)"
    return outcome
