"""Encryption at rest, the parts below the segment format: AEAD, the key file, wrapped data keys,
rotation, and the paper backup (read back with zxing-cpp), through the real command line."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zxingcpp

from archiverd import config, faults
from archiverd.cli.key_cmd import read_typed_lines
from archiverd.crypto import aead, envelope, keyring, paper, rotation
from archiverd.errors import ConfigError, CryptoError, EncryptionKeyError, SegmentError


def run(*args, env, check_code=None, stdin=None):
    proc = subprocess.run([sys.executable, "-m", "archiverd", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, input=stdin)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check_code is not None:
        assert proc.returncode == check_code, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def private_umask():
    """The usual umask: files would be 0644 unless archiverd sets their mode itself."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def env(tmp_path):
    (tmp_path / "archives").mkdir()
    (tmp_path / "keys").mkdir()
    return {"ARCHIVERD_ARCHIVE_DIR": str(tmp_path / "archives"),
            "ARCHIVERD_ENCRYPTION_KEY_FILE": str(tmp_path / "keys" / "master.key")}


def new_ring(path: Path) -> keyring.Keyring:
    ring = keyring.Keyring([keyring.MasterKey.generate()])
    keyring.create(path, ring)
    return keyring.load(path)


# --- AEAD -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 5_000, 1_000_000, 4 << 20])
def test_seal_open_round_trip(size):
    key, nonce, data = os.urandom(32), aead.counter_nonce(1, size), os.urandom(size)
    sealed = aead.seal(key, nonce, b"part-0001 block 7", data)
    assert len(sealed) == size + aead.TAG_BYTES and sealed[:size] != data[:size] or size == 0
    assert aead.open_(key, nonce, b"part-0001 block 7", sealed) == data


def test_any_change_is_detected_never_decoded():
    key, nonce, aad = os.urandom(32), aead.random_nonce(), b"header"
    sealed = aead.seal(key, nonce, aad, b"the exact BSON bytes of a document")
    flipped = bytearray(sealed)
    flipped[3] ^= 1
    tag_flipped = bytearray(sealed)
    tag_flipped[-1] ^= 0x80
    for k, n, a, c in [(key, nonce, aad, bytes(flipped)), (key, nonce, aad, bytes(tag_flipped)),
                       (key, nonce, b"other", sealed), (key, aead.counter_nonce(0, 0), aad, sealed),
                       (os.urandom(32), nonce, aad, sealed), (key, nonce, aad, sealed[:10])]:
        with pytest.raises(CryptoError) as exc:
            aead.open_(k, n, a, c, where="part-0001.mkv")
        assert exc.value.exit_code == 4 and "part-0001.mkv" in str(exc.value)
    with pytest.raises(ValueError):
        aead.seal(b"short", nonce, aad, b"x")


def test_counter_nonces_are_unique_and_subkeys_independent():
    nonces = {aead.counter_nonce(d, c) for d in range(4) for c in (0, 1, 2 ** 32, 2 ** 64 - 1)}
    assert len(nonces) == 16 and all(len(n) == 12 for n in nonces)
    with pytest.raises(ValueError):
        aead.counter_nonce(0, 2 ** 64)
    master = os.urandom(32)
    keys = {aead.subkey(master, p) for p in ("payload", "index", "vectors", "id-digest")}
    assert len(keys) == 4 and master not in keys and aead.subkey(master, "index") == aead.subkey(master, "index")


# --- the key file -----------------------------------------------------------------------------------

def test_key_file_is_private_checked_and_never_overwritten(tmp_path, private_umask):
    path = tmp_path / "master.key"
    ring = new_ring(path)
    assert path.stat().st_mode & 0o777 == 0o600
    body = json.loads(path.read_text())
    assert body["format"] == "archiverd-keyring" and body["version"] == 1 and body["checksum"].startswith("sha256:")
    assert body["keys"][0]["id"] == keyring.key_id(bytes.fromhex(body["keys"][0]["key"])) == ring.active.id
    before = path.read_bytes()
    with pytest.raises(EncryptionKeyError, match="never overwrites"):
        keyring.create(path, keyring.Keyring([keyring.MasterKey.generate()]))
    assert path.read_bytes() == before


def test_key_file_refused_when_unprotected_damaged_or_missing(tmp_path):
    path = tmp_path / "master.key"
    new_ring(path)
    os.chmod(path, 0o644)
    with pytest.raises(EncryptionKeyError, match="chmod 600") as exc:
        keyring.load(path)
    assert exc.value.exit_code == 3
    os.chmod(path, 0o600)
    good = path.read_text()
    key_hex = json.loads(good)["keys"][0]["key"]
    path.write_text(good.replace(key_hex, key_hex[:-1] + ("0" if key_hex[-1] != "0" else "1")))
    with pytest.raises(EncryptionKeyError, match="damaged"):
        keyring.load(path)
    path.write_text(good[: len(good) // 2])
    with pytest.raises(EncryptionKeyError, match="damaged"):
        keyring.load(path)
    with pytest.raises(EncryptionKeyError, match="does not exist"):
        keyring.load(tmp_path / "nowhere.key")


# --- wrapped data keys ------------------------------------------------------------------------------

def test_wrap_unwrap_wrong_key_and_tampering(tmp_path):
    ring, other = new_ring(tmp_path / "a.key"), new_ring(tmp_path / "b.key")
    data_key = envelope.new_data_key()
    wrapped = envelope.wrap(ring.active, data_key, "seg-1")
    assert json.loads(json.dumps(wrapped)) == wrapped and wrapped["key_id"] == ring.active.id
    assert data_key.hex() not in json.dumps(wrapped)
    assert envelope.unwrap(ring, wrapped) == data_key
    with pytest.raises(EncryptionKeyError, match=ring.active.id) as exc:  # the wrong key file: exit 3
        envelope.unwrap(other, wrapped)
    assert exc.value.exit_code == 3
    both = keyring.Keyring(ring.keys + [keyring.MasterKey(k.id, k.key, k.created_at, keyring.RETIRED)
                                        for k in other.keys])
    for field, value in [("ciphertext", "00" + wrapped["ciphertext"][2:]), ("segment_id", "seg-2"),
                         ("key_id", other.active.id), ("nonce", "00" * 12)]:
        with pytest.raises(CryptoError) as exc:  # damage or tampering: exit 4
            envelope.unwrap(both, {**wrapped, field: value})
        assert exc.value.exit_code == 4
    with pytest.raises(SegmentError, match="malformed"):
        envelope.unwrap(ring, {**wrapped, "nonce": "zz"})


def test_keys_for_segment_key_file_first_then_header_copy(tmp_path):
    ring = new_ring(tmp_path / "master.key")
    video = tmp_path / "part-0001.mkv"
    data_key = envelope.new_data_key()
    wrapped = envelope.wrap(ring.active, data_key, "seg-1")
    header_reads = []

    def header():
        header_reads.append(1)
        return wrapped

    with pytest.raises(SegmentError, match="missing"):
        envelope.keys_for_segment(video, ring)
    problems: list[str] = []
    assert envelope.keys_for_segment(video, ring, header, "seg-1", problems) == data_key
    assert header_reads and "missing" in problems[0]
    path = envelope.write(video, wrapped)
    assert path.name == "part-0001.key.json" and envelope.path_for(tmp_path / "part-0001.repaired.mkv") == path
    header_reads.clear()
    assert envelope.keys_for_segment(video, ring, header, "seg-1") == data_key and not header_reads
    envelope.replace(path, envelope.wrap(ring.active, envelope.new_data_key(), "seg-9"))  # another segment's key
    problems.clear()
    assert envelope.keys_for_segment(video, ring, header, "seg-1", problems) == data_key
    assert "seg-9" in problems[0]
    path.write_text("{not json")
    with pytest.raises(SegmentError, match="not JSON"):
        envelope.keys_for_segment(video, ring)


# --- rotation ---------------------------------------------------------------------------------------

def encrypted_tree(root: Path, ring: keyring.Keyring, n: int) -> dict[Path, tuple[bytes, bytes, dict]]:
    """n segments in two collections: a key file each, a record sealed under the data key, and the
    wrapped key as a video header would keep it."""
    out = {}
    for i in range(n):
        video = root / "db" / f"coll{i % 2}" / "2026" / "01" / f"{i + 1:02d}" / "part-0001.mkv"
        video.parent.mkdir(parents=True)
        video.write_bytes(b"video bytes stand-in %d" % i)
        data_key = envelope.new_data_key()
        wrapped = envelope.wrap(ring.active, data_key, f"seg-{i}")
        envelope.write(video, wrapped)
        record = aead.seal(data_key, aead.counter_nonce(1, 0), b"", b"document %d" % i)
        out[video] = (record, video.read_bytes(), wrapped)
    return out


def assert_all_open(ring: keyring.Keyring, tree: dict) -> None:
    for video, (record, _video_bytes, header_copy) in tree.items():
        data_key = envelope.keys_for_segment(video, ring, lambda: None, envelope.read_file(
            envelope.path_for(video))["segment_id"])
        assert aead.open_(data_key, aead.counter_nonce(1, 0), b"", record).startswith(b"document")
        assert envelope.unwrap(ring, header_copy) == data_key  # the header copy, under the original key


def test_rotation_rewraps_every_key_file_and_old_segments_still_open(tmp_path, private_umask):
    path = tmp_path / "master.key"
    ring = new_ring(path)
    tree = encrypted_tree(tmp_path / "archives", ring, 5)
    report = rotation.rotate(path, tmp_path / "archives")
    assert report.finished and not report.resumed and report.rewrapped == 5 and report.current == 0
    ring = keyring.load(path)
    assert [k.state for k in ring.keys] == [keyring.RETIRED, keyring.ACTIVE] and ring.rotation is None
    assert ring.active.id == report.new_key and ring.keys[0].retired_at
    for video, (_record, video_bytes, _header) in tree.items():
        assert envelope.read_file(envelope.path_for(video))["key_id"] == report.new_key
        assert video.read_bytes() == video_bytes  # no video touched
        assert envelope.path_for(video).stat().st_mode & 0o777 == 0o600
    assert_all_open(ring, tree)
    again = rotation.rotate(path, tmp_path / "archives")  # a second rotation: a third key, all re-wrapped
    assert again.rewrapped == 5 and len(keyring.load(path).keys) == 3
    assert_all_open(keyring.load(path), tree)


def test_interrupted_rotation_resumes_with_the_same_new_key(tmp_path):
    path = tmp_path / "master.key"
    ring = new_ring(path)
    tree = encrypted_tree(tmp_path / "archives", ring, 4)
    seen = []

    def crash(point: str) -> None:
        seen.append(point)
        if point == "rotate:rewrapped" and seen.count(point) == 2:
            raise KeyboardInterrupt("simulated crash")

    with faults.installed(crash), pytest.raises(KeyboardInterrupt):
        rotation.rotate(path, tmp_path / "archives")
    mid = keyring.load(path)
    assert mid.rotation and [k.state for k in mid.keys] == [keyring.PREVIOUS, keyring.ACTIVE]
    ids = [envelope.read_file(envelope.path_for(v))["key_id"] for v in tree]
    assert ids.count(mid.active.id) == 2 and ids.count(mid.keys[0].id) == 2  # mixed, and all still open:
    assert_all_open(mid, tree)
    cfg = config.load(environ={"ARCHIVERD_ARCHIVE_DIR": str(tmp_path / "archives"),
                               "ARCHIVERD_ENCRYPTION_KEY_FILE": str(path)})
    assert "unfinished" in keyring.export_warning(cfg)
    report = rotation.rotate(path, tmp_path / "archives")
    assert report.resumed and report.new_key == mid.active.id and report.rewrapped == 2 and report.current == 2
    done = keyring.load(path)
    assert len(done.keys) == 2 and done.rotation is None and done.keys[0].state == keyring.RETIRED
    assert_all_open(done, tree)


def test_rotation_reports_a_key_file_it_cannot_rewrap_and_stays_unfinished(tmp_path):
    path = tmp_path / "master.key"
    ring = new_ring(path)
    tree = encrypted_tree(tmp_path / "archives", ring, 3)
    broken = envelope.path_for(next(iter(tree)))
    broken.write_text('{"format": "archiverd-segment-key", "version": 1, "wrapped": {}}')
    report = rotation.rotate(path, tmp_path / "archives")
    assert not report.finished and len(report.failed) == 1 and str(broken) in report.failed[0]
    assert keyring.load(path).rotation is not None  # old key kept as `previous`, rotation marked unfinished


# --- export, paper, import through the command line ------------------------------------------------

def qr_text_from_page(html: str) -> str:
    """Read the page's QR code like a scanner would: draw the SVG's modules, let zxing-cpp decode."""
    svg = html[html.index("<svg"):html.index("</svg>")]
    width, height = map(int, re.search(r'viewBox="0 0 (\d+) (\d+)"', svg).groups())
    image = np.full((height, width), 255, np.uint8)
    for x, y, w, h in re.findall(r"M(\d+) (\d+)h(\d+)v(\d+)h-\d+Z", svg):
        image[int(y):int(y) + int(h), int(x):int(x) + int(w)] = 0
    found = zxingcpp.read_barcodes(np.kron(image, np.ones((4, 4), np.uint8)))
    assert len(found) == 1 and found[0].format == zxingcpp.BarcodeFormat.QRCode
    return found[0].text


def test_paper_export_and_import_round_trip(tmp_path, env, private_umask):
    key_path = Path(env["ARCHIVERD_ENCRYPTION_KEY_FILE"])
    run("key", "init", env=env, check_code=0)
    run("key", "rotate", env=env, check_code=0)  # two keys, one retired: both must come back
    original = keyring.load(key_path)
    assert run("key", "list", env=env, check_code=1).stderr.count("never been exported") == 1
    page_path = tmp_path / "key.html"
    run("key", "export", "--paper", page_path, env=env, check_code=0)
    assert page_path.stat().st_mode & 0o777 == 0o600
    run("key", "export", "--paper", page_path, env=env, check_code=3)  # never overwritten
    assert run("key", "list", env=env, check_code=0).stdout.count("exported") == 2
    page = page_path.read_text()
    scanned = qr_text_from_page(page)
    assert scanned.startswith(paper.QR_PREFIX)
    lines = re.search(r"<pre>(ARCHIVERD PAPER KEY.*?)</pre>", page, re.S).group(1)
    for source in (scanned, lines):  # the QR code's text, then the typed lines
        key_path.rename(tmp_path / "lost.key")
        (tmp_path / "in.txt").write_text(source)
        out = run("key", "import", "--paper", tmp_path / "in.txt", env=env, check_code=0).stdout
        assert "imported" in out
        restored = keyring.load(key_path)
        assert [(k.id, k.key, k.state) for k in restored.keys] == [(k.id, k.key, k.state) for k in original.keys]
        assert key_path.stat().st_mode & 0o777 == 0o600 and not restored.unexported()
        key_path.unlink()
        (tmp_path / "lost.key").rename(key_path)
    typo = lines.replace(" - ", " -  ", 1).splitlines()
    typo[2] = typo[2][:6] + ("0" if typo[2][6] != "0" else "1") + typo[2][7:]  # one digit of line 2
    (tmp_path / "typo.txt").write_text("\n".join(typo))
    err = run("key", "import", "--paper", tmp_path / "typo.txt", env=env, check_code=3).stderr
    assert "line 2" in err and "mistyped" in err


def test_typed_lines_ask_again_after_a_typo(tmp_path):
    ring = new_ring(tmp_path / "master.key")
    lines = paper.text(ring).splitlines()[1:]
    bad = lines[1][:5] + ("f" if lines[1][5] != "f" else "e") + lines[1][6:]
    answers = iter([lines[0], bad, lines[2], lines[1], lines[2]])  # a typo, then line 3 too early
    told: list[str] = []
    keys = read_typed_lines(lambda _what: next(answers), told.append)
    assert [(k.id, k.key) for k in keys] == [(k.id, k.key) for k in ring.keys]
    assert "line 2" in told[0] and "type line 2" in told[1]
    digits_only = [line.split(":", 1)[1] for line in lines]  # without the "N:" a person may leave out
    assert read_typed_lines(lambda _what, it=iter(digits_only): next(it), told.append)[0].key == ring.active.key


def test_file_export_import_merges_and_status_warns_until_exported(tmp_path, env):
    key_path = Path(env["ARCHIVERD_ENCRYPTION_KEY_FILE"])
    cfg = config.load(environ=env)
    assert keyring.export_warning(config.load(environ={"ARCHIVERD_ARCHIVE_DIR": env["ARCHIVERD_ARCHIVE_DIR"]})) is None
    assert "does not exist" in keyring.export_warning(cfg)
    run("key", "init", env=env, check_code=0)
    assert "never been exported" in keyring.export_warning(cfg)
    run("key", "export", tmp_path / "backup.key", env=env, check_code=0)
    assert keyring.export_warning(cfg) is None and (tmp_path / "backup.key").stat().st_mode & 0o777 == 0o600
    first = keyring.load(key_path).active
    run("key", "rotate", env=env, check_code=0)
    assert keyring.load(key_path).active.id in keyring.export_warning(cfg)
    # an old backup imported into the current key file adds nothing it lacks, changes nothing
    out = run("key", "import", tmp_path / "backup.key", env=env, check_code=0).stdout
    assert "already holds" in out and keyring.load(key_path).keys[0].id == first.id
    # imported into another machine's fresh key file: the old key, active there
    other = {**env, "ARCHIVERD_ENCRYPTION_KEY_FILE": str(tmp_path / "keys" / "other.key")}
    run("key", "import", tmp_path / "backup.key", env=other, check_code=0)
    assert keyring.load(tmp_path / "keys" / "other.key").active.id == first.id


def test_key_commands_fail_clearly(tmp_path, env):
    err = run("key", "init", env={**env, "ARCHIVERD_ENCRYPTION_KEY_FILE": env["ARCHIVERD_ARCHIVE_DIR"] + "/k.key"},
              check_code=3).stderr
    assert "inside the archive directory" in err
    run("key", "list", env={"ARCHIVERD_ARCHIVE_DIR": env["ARCHIVERD_ARCHIVE_DIR"]}, check_code=3)
    assert "does not exist" in run("key", "export", "-", env=env, check_code=3).stderr
    with pytest.raises(ConfigError, match="absolute"):
        config.load(environ={"ARCHIVERD_ENCRYPTION_KEY_FILE": "keys/master.key"})


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_root_rewriting_the_key_file_keeps_its_owner(tmp_path):
    """Root running `key export` or `key rotate` must not leave the service unable to read its key."""
    path = tmp_path / "master.key"
    ring = new_ring(path)
    os.chown(path, 4321, 4322)
    keyring.record_export(path, "paper", [ring.active.id], "printer")
    rotation.rotate(path, tmp_path / "archives")
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4321, 4322, 0o600)
    assert len(keyring.load(path).keys) == 2 and keyring.load(path).exports[0]["to"] == "printer"
