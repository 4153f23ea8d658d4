"""The paper backup of the master keys: a printable page with a QR code and numbered text lines, each
with its own checksum (like `borg key export --paper`), and the way back from either.

The payload (binary, then hex):

    offset size
    0      2    magic "AK"
    2      1    version (1)
    3      1    number of keys n
    4      38*n per key, oldest first: state (1: active, 2: previous, 3: retired), created_at
                (5 bytes, Unix seconds, big-endian), key (32 bytes)
    4+38n  4    the first 4 bytes of SHA-256 of everything before

The text form: the payload in lines of 16 bytes, as 8 groups of 4 hex digits, numbered from 1, each
followed by " - " and 2 hex digits of SHA-256("<n>:<the line's hex digits, lower case, no spaces>"):

     1: 414b 0101 0168 9a1f 80c2 7d3e ... - 5c

so a typo is caught on the line where it was made. The QR code holds "ARCHIVERD-KEY1:" and the
payload in upper-case hex (QR alphanumeric mode), error correction Q; zxing-cpp makes the symbol
(the project's own encoder makes only version 40, far larger than 50 bytes need). Key ids are not
stored: each is computed from its key.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import html
import re

import zxingcpp

from .keyring import ACTIVE, PREVIOUS, RETIRED, Keyring, MasterKey, now_iso
from ..errors import EncryptionKeyError

MAGIC = b"AK"
VERSION = 1
QR_PREFIX = "ARCHIVERD-KEY1:"
BYTES_PER_LINE = 16
_STATE_CODES = {ACTIVE: 1, PREVIOUS: 2, RETIRED: 3}
_ENTRY = 1 + 5 + 32
_LINE = re.compile(r"^\s*(\d+)\s*:\s*([0-9a-fA-F][0-9a-fA-F ]*?)\s*-\s*([0-9a-fA-F]{2})\s*$")


def encode(ring: Keyring) -> bytes:
    out = bytearray(MAGIC + bytes([VERSION, len(ring.keys)]))
    for k in ring.keys:
        created = int(dt.datetime.fromisoformat(k.created_at.replace("Z", "+00:00")).timestamp())
        out += bytes([_STATE_CODES[k.state]]) + created.to_bytes(5, "big") + k.key
    return bytes(out + hashlib.sha256(out).digest()[:4])


def decode(payload: bytes) -> list[MasterKey]:
    """The keys in a payload; EncryptionKeyError if it is not a complete, intact one."""
    if len(payload) < 8 or payload[:2] != MAGIC:
        raise EncryptionKeyError("not an archiverd paper key")
    if payload[2] != VERSION:
        raise EncryptionKeyError(f"paper key version {payload[2]}; this archiverd reads version {VERSION}")
    n = payload[3]
    if len(payload) != payload_size(n):
        raise EncryptionKeyError(f"paper key is {len(payload)} bytes; {n} keys take {payload_size(n)}")
    if hashlib.sha256(payload[:-4]).digest()[:4] != payload[-4:]:
        raise EncryptionKeyError("paper key checksum does not match: a line was mistyped or misread")
    states = {v: k for k, v in _STATE_CODES.items()}
    keys = []
    for i in range(n):
        entry = payload[4 + i * _ENTRY: 4 + (i + 1) * _ENTRY]
        if entry[0] not in states:
            raise EncryptionKeyError(f"paper key entry {i + 1} has an unknown state")
        created = dt.datetime.fromtimestamp(int.from_bytes(entry[1:6], "big"), dt.timezone.utc)
        keys.append(MasterKey.from_key(entry[6:], created.isoformat().replace("+00:00", "Z"), states[entry[0]]))
    if [k.state for k in keys].count(ACTIVE) != 1:
        raise EncryptionKeyError("paper key must hold exactly one active key")
    return keys


def payload_size(n_keys: int) -> int:
    return 4 + _ENTRY * n_keys + 4


def line_checksum(number: int, hexdigits: str) -> str:
    return hashlib.sha256(f"{number}:{hexdigits.lower()}".encode()).hexdigest()[:2]


def text_lines(payload: bytes) -> list[str]:
    lines = []
    for i in range(0, len(payload), BYTES_PER_LINE):
        number, digits = i // BYTES_PER_LINE + 1, payload[i:i + BYTES_PER_LINE].hex()
        groups = " ".join(digits[j:j + 4] for j in range(0, len(digits), 4))
        lines.append(f"{number:2d}: {groups} - {line_checksum(number, digits)}")
    return lines


def parse_line(text: str) -> tuple[int, bytes]:
    """(line number, its bytes) of one typed line; EncryptionKeyError names what is wrong."""
    m = _LINE.match(text)
    if m is None:
        raise EncryptionKeyError(f"not a paper key line (expected 'N: xxxx xxxx ... - cc'): {text.strip()[:60]!r}")
    number, digits = int(m.group(1)), m.group(2).replace(" ", "").lower()
    if len(digits) % 2:
        raise EncryptionKeyError(f"line {number}: an odd number of hex digits (one is missing or extra)")
    if line_checksum(number, digits) != m.group(3).lower():
        raise EncryptionKeyError(f"line {number}: its checksum does not match: a digit was mistyped")
    return number, bytes.fromhex(digits)


def total_lines(first_line: bytes) -> int:
    """How many lines the whole payload takes, from the bytes of line 1."""
    if len(first_line) < 4 or first_line[:2] != MAGIC:
        raise EncryptionKeyError("line 1 does not start an archiverd paper key")
    return -(-payload_size(first_line[3]) // BYTES_PER_LINE)


def from_text(text: str) -> list[MasterKey]:
    """The keys in a paper key: its QR code's text, or its numbered lines (other lines are ignored)."""
    qr = re.search(re.escape(QR_PREFIX) + r"([0-9A-Fa-f]+)", text)
    if qr:
        return decode(bytes.fromhex(qr.group(1)))
    parts: dict[int, bytes] = {}
    for line in text.splitlines():
        if _LINE.match(line):
            number, data = parse_line(line)
            parts[number] = data
    if not parts:
        raise EncryptionKeyError("no paper key found (neither numbered lines nor a QR code's text)")
    expected = total_lines(parts.get(1, b""))
    missing = [n for n in range(1, expected + 1) if n not in parts]
    if missing:
        raise EncryptionKeyError(f"paper key lines missing: {', '.join(map(str, missing))}")
    return decode(b"".join(parts[n] for n in range(1, expected + 1)))


def qr_svg(payload: bytes) -> str:
    """The QR symbol as an SVG element, 60 mm wide, for an HTML page."""
    symbol = zxingcpp.create_barcode(QR_PREFIX + payload.hex().upper(), zxingcpp.BarcodeFormat.QRCode, ec_level="Q")
    svg = zxingcpp.write_barcode_to_svg(symbol)
    svg = svg[svg.index("<svg"):]
    m = re.match(r'<svg width="(\d+)" height="(\d+)"', svg)
    if m is None:
        raise RuntimeError("zxing-cpp wrote an SVG this page cannot size")
    return svg.replace(m.group(0), f'<svg viewBox="0 0 {m.group(1)} {m.group(2)}" width="60mm" height="60mm" '
                                    'shape-rendering="crispEdges"', 1)


def page(ring: Keyring) -> str:
    """A printable HTML page: the QR code, the numbered lines, and how to restore."""
    payload = encode(ring)
    ids = ", ".join(f"{k.id} ({k.state})" for k in ring.keys)
    lines = "\n".join(html.escape(line) for line in text_lines(payload))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>archiverd paper key</title>
<style>
 body {{ font-family: sans-serif; margin: 20mm; }}
 pre {{ font-size: 13pt; line-height: 1.6; }}
 .warn {{ border: 2px solid #000; padding: 4mm; }}
 @media print {{ body {{ margin: 10mm; }} }}
</style></head>
<body>
<h1>archiverd master key &mdash; paper backup</h1>
<p class="warn"><b>Whoever holds this page can read the archive; whoever loses every copy of the key
loses the archive.</b> Keep it where you keep other secrets, away from the archive itself.</p>
<p>Keys: {html.escape(ids)}<br>Printed: {html.escape(now_iso())}</p>
{qr_svg(payload)}
<pre>ARCHIVERD PAPER KEY v{VERSION}
{lines}</pre>
<h2>To restore</h2>
<p>Scan the QR code and pass its text, or type the numbered lines (each is checked as you type):</p>
<pre>archiverd key import --paper           # then type the lines
archiverd key import --paper FILE      # FILE: the QR code's text, or the lines</pre>
<p>The key file named by ARCHIVERD_ENCRYPTION_KEY_FILE is created if it does not exist; an existing
one only gains the keys it lacks.</p>
</body></html>
"""


def text(ring: Keyring) -> str:
    """The text form alone, for a terminal."""
    ids = ", ".join(f"{k.id} ({k.state})" for k in ring.keys)
    return "\n".join([f"ARCHIVERD PAPER KEY v{VERSION}  keys: {ids}", *text_lines(encode(ring)), ""])
