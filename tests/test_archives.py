"""Hostile archives against `data fetch`: every attack is refused by name, before a byte is written.

Each archive is fetched through the CLI from a file:// URL into ROOT/work/data/hotdog, whose
extraction folder is ROOT/work/data/.hotdog.*/extracted: four levels of ``..`` lead from there
to ROOT, where the attacks aim. After each refusal nothing named like the marker may exist
anywhere under ROOT, the victim file must be unchanged, and no folder fetch made may be left.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from cvtool.data import hub
from cvtool.errors import InputError

UP = "../../../../"  # from the extraction folder to the test's root
MARKER = "pwned"
VICTIM = "victim.txt"


def tar_bytes(*members: tuple[str, bytes, str]) -> bytes:
    """A tar of (name, type, data-or-linkname) members, written as given (no name clean-up)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload.decode() if isinstance(payload, bytes) else payload
                tf.addfile(info)
    return buf.getvalue()


def zip_bytes(*entries: tuple[str, bytes, int]) -> bytes:
    """A zip of (name, data, unix mode) entries; mode 0 leaves the entry without a type, as writestr does."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def cve_2025_4517_chain(root: Path) -> bytes:
    """Symlinks nested deeper than realpath resolves, then a hard link through them to VICTIM outside."""
    comp, steps, path = "d" * 247, "abcdefghijklmnop", ""
    members = []
    for step in steps:
        members.append((os.path.join(path, comp), tarfile.DIRTYPE, ""))
        members.append((os.path.join(path, step), tarfile.SYMTYPE, comp))
        path = os.path.join(path, comp)
    link = os.path.join(*steps, "l" * 254)
    members.append((link, tarfile.SYMTYPE, "../" * len(steps)))  # back up to the extraction folder
    members.append(("escape", tarfile.SYMTYPE, link + "/" + UP))  # ... and on to the test's root
    members.append(("victimlink", tarfile.LNKTYPE, "escape/" + VICTIM))
    members.append(("victimlink", tarfile.REGTYPE, MARKER.encode()))  # written through the hard link
    return tar_bytes(*members)


LINK = stat.S_IFLNK | 0o777
ATTACKS = {
    "tar-dotdot": ("evil.tar", lambda root: tar_bytes(("hotdog/ok.txt", tarfile.REGTYPE, b"fine"),
                                                      ("hotdog/" + UP + "../" + MARKER, tarfile.REGTYPE, b"x")),
                   "hotdog/" + UP + "../" + MARKER),
    "tar-absolute": ("evil.tar", lambda root: tar_bytes((str(root / MARKER), tarfile.REGTYPE, b"x")),
                     str(Path("ROOT") / MARKER)),
    "tar-symlink-out": ("evil.tar", lambda root: tar_bytes(("hotdog/link", tarfile.SYMTYPE, UP + ".."),
                                                           ("hotdog/link/" + MARKER, tarfile.REGTYPE, b"x")),
                        "hotdog/link"),
    "tar-absolute-symlink": ("evil.tar", lambda root: tar_bytes(("hotdog/link", tarfile.SYMTYPE, str(root)),
                                                                ("hotdog/link/" + MARKER, tarfile.REGTYPE, b"x")),
                             "hotdog/link"),
    "tar-hardlink-out": ("evil.tar", lambda root: tar_bytes(("hotdog/hl", tarfile.LNKTYPE, str(root / VICTIM)),
                                                            ("hotdog/hl", tarfile.REGTYPE, MARKER.encode())),
                         "hotdog/hl"),
    "tar-relative-hardlink": ("evil.tar", lambda root: tar_bytes(("hl", tarfile.LNKTYPE, UP + VICTIM),
                                                                 ("hl", tarfile.REGTYPE, MARKER.encode())), "hl"),
    "tar-symlink-chain": ("evil.tar", cve_2025_4517_chain, "a"),
    "tar-top-is-dot": ("evil.tar", lambda root: tar_bytes(("top", tarfile.SYMTYPE, ".")), "top"),
    "tar-fifo": ("evil.tar", lambda root: tar_bytes(("hotdog/fifo", tarfile.FIFOTYPE, "")), "hotdog/fifo"),
    "tar-device": ("evil.tar", lambda root: tar_bytes(("hotdog/null", tarfile.CHRTYPE, "")), "hotdog/null"),
    "zip-dotdot": ("evil.zip", lambda root: zip_bytes(("hotdog/ok.txt", b"fine", 0),
                                                      ("hotdog/" + UP + "../" + MARKER, b"x", 0)),
                   "hotdog/" + UP + "../" + MARKER),
    "zip-backslash": ("evil.zip", lambda root: zip_bytes(("hotdog\\..\\..\\..\\..\\..\\" + MARKER, b"x", 0)),
                      "hotdog\\..\\..\\..\\..\\..\\" + MARKER),
    "zip-absolute": ("evil.zip", lambda root: zip_bytes((str(root / MARKER), b"x", 0)), str(Path("ROOT") / MARKER)),
    "zip-drive": ("evil.zip", lambda root: zip_bytes(("C:/" + MARKER, b"x", 0)), "C:/" + MARKER),
    "zip-symlink": ("evil.zip", lambda root: zip_bytes(("hotdog/link", (UP + "..").encode(), LINK),
                                                       ("hotdog/link/" + MARKER, b"x", 0)), "hotdog/link"),
    "zip-symlink-to-dot": ("evil.zip", lambda root: zip_bytes(("top", b".", LINK)), "top"),
}


@pytest.fixture
def fetch_cli(tmp_path, monkeypatch, cli):
    """Serve ``data`` as the hotdog archive from a file:// URL and run `data fetch` into ROOT/work/data."""
    (tmp_path / VICTIM).write_text("untouched")

    def run(filename: str, data: bytes) -> tuple[int, str, str]:
        served = tmp_path / "served" / filename
        served.parent.mkdir(exist_ok=True)
        served.write_bytes(data)
        sha = hashlib.sha1(data).hexdigest()
        monkeypatch.setitem(hub.ARCHIVES, "hotdog", hub.Archive("hotdog", "http://mirror.invalid/" + filename, sha))
        return cli("data", "fetch", "hotdog", "--root", tmp_path / "work" / "data" / "hotdog",
                   "--url", served.as_uri())

    return run


def assert_untouched(root: Path) -> None:
    assert not [p for p in root.rglob(MARKER + "*")], "a member was written outside the target"
    assert (root / VICTIM).read_text() == "untouched"
    assert not os.path.lexists(root / "work"), "fetch left a folder behind"


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_refused_in_one_line(attack, fetch_cli, tmp_path):
    filename, build, member = ATTACKS[attack]
    code, _, err = fetch_cli(filename, build(tmp_path))
    member = member.replace(str(Path("ROOT")), str(tmp_path))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"archive {filename}: member {member!r}" in err, err
    assert_untouched(tmp_path)


def test_a_file_where_a_folder_is_needed_is_refused(fetch_cli, tmp_path):
    code, _, err = fetch_cli("clash.zip", zip_bytes(("hotdog/a", b"file", 0), ("hotdog/a/b", b"under it", 0)))
    assert code == 2 and "'hotdog/a'" in err and len(err.strip().splitlines()) == 1, err
    assert_untouched(tmp_path)


def test_extract_checks_every_member_before_writing_any(tmp_path):
    archive = tmp_path / "late.tar"
    archive.write_bytes(tar_bytes(*[(f"top/{i}.txt", tarfile.REGTYPE, b"ok") for i in range(5)],
                                  ("top/link", tarfile.SYMTYPE, "/etc")))
    with pytest.raises(InputError, match="'top/link' is a symlink"):
        hub.extract(archive, tmp_path / "out")
    assert not os.path.lexists(tmp_path / "out")


def test_typed_zip_and_tar_entries_extract(fetch_cli, tmp_path):
    """Entries with explicit file and folder modes (as `zip -r` and tar write them) are welcome."""
    data = zip_bytes(("hotdog/", b"", stat.S_IFDIR | 0o755), ("hotdog/train/", b"", stat.S_IFDIR | 0o755),
                     ("hotdog/train/a.txt", b"a", stat.S_IFREG | 0o644), ("hotdog/./b.txt", b"b", 0))
    code, out, err = fetch_cli("good.zip", data)
    assert code == 0, err
    target = tmp_path / "work" / "data" / "hotdog"
    assert (target / "train" / "a.txt").read_text() == "a" and (target / "b.txt").read_text() == "b"
    tar = tar_bytes(("VOCdevkit", tarfile.DIRTYPE, ""), ("VOCdevkit/x.txt", tarfile.REGTYPE, b"voc"))
    archive = tmp_path / "voc.tar"
    archive.write_bytes(tar)
    hub.extract(archive, tmp_path / "voc")
    assert (tmp_path / "voc" / "VOCdevkit" / "x.txt").read_text() == "voc"
