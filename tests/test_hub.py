"""The downloader against a local HTTP server and file:// URLs: never the network."""

import hashlib
import http.server
import io
import threading
import zipfile
from functools import partial

import pytest

from cvtool.data import hub
from cvtool.errors import InputError


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_archive_over_http(server, tmp_path):
    root, url = server
    sha = make_zip(root / "tiny.zip", {"tiny/train/a.txt": "x", "tiny/label.csv": "y"})
    target = tmp_path / "data" / "tiny"
    seen = []
    hub.fetch(hub.Archive("tiny", url + "tiny.zip", sha), target, progress=lambda d, t: seen.append((d, t)))
    assert (target / "train" / "a.txt").read_text() == "x"
    assert leftovers(tmp_path / "data") == ["tiny"]
    assert seen and seen[-1][0] == (root / "tiny.zip").stat().st_size


def test_file_url_and_tar(tmp_path):
    import tarfile

    src = tmp_path / "src" / "VOCdevkit"
    src.mkdir(parents=True)
    (src / "x.txt").write_text("voc")
    tar_path = tmp_path / "voc.tar"
    with tarfile.open(tar_path, "w") as tf:
        tf.add(src, arcname="VOCdevkit")
    sha = hashlib.sha1(tar_path.read_bytes()).hexdigest()
    target = tmp_path / "data" / "VOCdevkit"
    hub.fetch(hub.Archive("voc", tar_path.as_uri(), sha), target)
    assert (target / "x.txt").read_text() == "voc"


def test_hash_mismatch_leaves_nothing(server, tmp_path, cli):
    root, url = server
    make_zip(root / "hotdog.zip", {"hotdog/train/x.png": "not really"})
    code, _, err = cli("data", "fetch", "hotdog", "--root", tmp_path / "data" / "hotdog", "--url", url + "hotdog.zip")
    assert code == 3 and "SHA-1" in err
    assert leftovers(tmp_path / "data") == []


def test_path_traversal_is_refused(server, tmp_path):
    root, url = server
    sha = make_zip(root / "evil.zip", {"evil/ok.txt": "fine", "evil/../../escaped.txt": "gotcha"})
    with pytest.raises(InputError, match="unsafe path"):
        hub.fetch(hub.Archive("evil", url + "evil.zip", sha), tmp_path / "data" / "evil")
    assert leftovers(tmp_path / "data") == []
    assert not (tmp_path / "escaped.txt").exists()


def test_offline_is_exit_3(tmp_path, cli):
    code, _, err = cli("data", "fetch", "banana-detection", "--root", tmp_path / "b", "--url",
                       "http://127.0.0.1:9/banana-detection.zip")
    assert code == 3 and "could not download" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_train_command_fetches_when_download_is_on(server, tmp_path, monkeypatch, cli):
    from cvtool.data.hotdog import synthesize

    root, url = server
    synthesize(tmp_path / "build" / "hotdog", n=4, size=32)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted((tmp_path / "build").rglob("*.png")):
            zf.write(f, f.relative_to(tmp_path / "build").as_posix())
    (root / "hotdog.zip").write_bytes(buf.getvalue())
    sha = hashlib.sha1(buf.getvalue()).hexdigest()
    monkeypatch.setitem(hub.ARCHIVES, "hotdog", hub.Archive("hotdog", url + "hotdog.zip", sha))
    monkeypatch.delenv("CVTOOL_OFFLINE")  # the suite's guard against implicit downloads; this one is local
    code, _, err = cli("finetune-hotdog", "--set", "data.root=fetched/hotdog", "--set", "model.weights=none",
                       "--set", "data.image_size=32", "--set", "data.num_workers=0", "--epochs", "1",
                       "--max-steps", "1", "--device", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "fetched" / "hotdog").iterdir()) == ["test", "train"]


def test_failed_fetch_removes_the_parents_it_made(tmp_path, cli):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("theirs")
    code, _, err = cli("data", "fetch", "hotdog", "--root", tmp_path / "x" / "a" / "b" / "hotdog", "--url",
                       "http://127.0.0.1:9/hotdog.zip")
    assert code == 3 and "could not download" in err
    assert leftovers(tmp_path / "x") == ["keep.txt"]


def test_failed_fetch_keeps_a_parent_that_was_written_to(tmp_path, monkeypatch):
    def download(url, dest, sha1, progress=None):
        (tmp_path / "a" / "other.txt").write_text("not fetch's")  # another writer, mid-download
        raise KeyboardInterrupt

    monkeypatch.setattr(hub, "download", download)
    with pytest.raises(KeyboardInterrupt):
        hub.fetch(hub.Archive("tiny", "http://127.0.0.1:9/tiny.zip", "0"), tmp_path / "a" / "b" / "tiny")
    assert leftovers(tmp_path) == ["a"] and leftovers(tmp_path / "a") == ["other.txt"]


def test_train_command_says_what_to_do_when_the_fetch_fails(tmp_path, monkeypatch, cli):
    from cvtool.data.hotdog import LAYOUT

    missing = (tmp_path / "nowhere" / "hotdog.zip").as_uri()
    monkeypatch.setitem(hub.ARCHIVES, "hotdog", hub.Archive("hotdog", missing, "0"))
    monkeypatch.delenv("CVTOOL_OFFLINE")  # the download is a missing local file
    code, _, err = cli("finetune-hotdog", "--set", "data.root=fetched/hotdog", "--set", "model.weights=none",
                       "--device", "cpu")
    assert code == 3 and len(err.strip().splitlines()) == 1, err
    assert "could not download" in err and "cvtool data fetch hotdog --root fetched/hotdog" in err
    assert LAYOUT in err
    assert not (tmp_path / "fetched").exists()
