"""The Matroska layer on its own: what the writer lays down, what the reader gets back, and how it
steps over damage."""
import io

import av
import pytest

from archiverd.format import mkv, video
from archiverd.format.video import BytesSource

GOLDEN_V1 = __import__("pathlib").Path(__file__).parent / "golden" / "v1-every-type.mkv"


def _file(clusters: list[list[bytes]]) -> bytes:
    out = io.BytesIO()

    def write(data: bytes, offset):
        if offset is None:
            out.seek(0, 2)
        else:
            out.seek(offset)
        out.write(data)

    writer = mkv.Writer(write, codec_id="V_FFV1", codec_private=b"\x01\x02\x03", width=177, height=177,
                        frame_ms=40, app="test")
    for packets in clusters:
        writer.add_cluster(packets)
    writer.close()
    return out.getvalue()


def _packets(data: bytes) -> list[tuple[int, bool, bytes]]:
    source = BytesSource(data)
    layout = mkv.parse_head(source.read(0, mkv.MAX_HEADER_BYTES))
    out = []
    for ref in mkv.scan_clusters(source, layout.first_cluster, 40):
        for p in mkv.cluster_packets(source.read(ref.offset, ref.length), 40):
            out.append((p.number, p.keyframe, p.data))
    return out


def test_written_file_reads_back_packet_for_packet():
    clusters = [[bytes([c, i]) * (50 + i) for i in range(4)] for c in range(5)]
    data = _file(clusters)
    layout = mkv.parse_head(data)
    assert layout.track.codec_id == "V_FFV1" and layout.track.codec_private == b"\x01\x02\x03"
    assert (layout.track.width, layout.track.height, layout.track.frame_ns) == (177, 177, 40_000_000)
    assert layout.declared_end == len(data)
    got = _packets(data)
    assert [p for _, _, p in got] == [p for c in clusters for p in c]
    assert [n for n, _, _ in got] == list(range(20))
    assert [k for _, k, _ in got] == [i % 4 == 0 for i in range(20)]


def test_the_writer_is_deterministic():
    clusters = [[b"x" * 100] * 4, [b"y" * 90] * 3]
    assert _file(clusters) == _file(clusters)


@pytest.mark.parametrize("where", ["cluster id", "cluster size", "block size"])
def test_a_damaged_element_costs_only_its_cluster(where):
    clusters = [[bytes([c]) * 300] * 4 for c in range(6)]
    data = bytearray(_file(clusters))
    source = BytesSource(bytes(data))
    layout = mkv.parse_head(bytes(data))
    refs = list(mkv.scan_clusters(source, layout.first_cluster, 40))
    target = refs[2].offset
    if where == "cluster id":
        data[target] ^= 0xFF
    elif where == "cluster size":
        data[target + 4] = 0x01  # an 8-byte size that claims far more than the file holds
    else:
        data[target + 4 + 4 + 3 + 1] ^= 0x40  # first SimpleBlock's size field
    got = [p for _, _, p in _packets(bytes(data))]
    assert set(got) >= {bytes([c]) * 300 for c in (0, 1, 3, 4, 5)}
    assert len(got) >= 20


def test_a_v1_file_written_by_libavformat_parses():
    data = GOLDEN_V1.read_bytes()
    layout = mkv.parse_head(data)
    assert layout.track.codec_id == video.CODEC_ID and layout.track.codec_private
    assert len(_packets(data)) >= 1


def test_garbage_is_not_matroska():
    for data in (b"", b"hello world", bytes(64), b"\x1a\x45\xdf\xa3" + bytes(40)):
        with pytest.raises(mkv.Malformed):
            mkv.parse_head(data)


def _gops(count: int) -> list[list[mkv.Packet]]:
    """`count` real 2-frame FFV1 GOPs of distinct QR frames."""
    out = []
    for g in range(count):
        packets = video.encode_gop([bytes([g, i]) * 700 for i in range(video.GOP)])
        out.append([mkv.Packet(g * video.GOP + i, i == 0, data) for i, data in enumerate(packets)])
    return out


def test_a_reused_decoder_decodes_exactly_as_a_new_one():
    """Decoders are reused across GOPs (opening one costs ~3 frames of decoding); from a keyframe
    the result must be the same as a new decoder's, also after a damaged GOP and a GOP whose
    container flag says keyframe but whose FFV1 bitstream does not."""
    private = video.codec_private()
    gops = _gops(4)
    fresh = [[(n, img.tobytes()) for n, img in video.decode_packets(private, g)] for g in gops]
    assert all(img is not None for g in fresh for _, img in g)
    video._local.decoder = None
    damaged = [mkv.Packet(p.number, p.keyframe, p.data[:2] + bytes(len(p.data) - 2)) for p in gops[1]]
    # a P-frame's bytes flagged as a keyframe by the container: only a new decoder may try it
    mislabelled = [mkv.Packet(0, True, gops[2][1].data)]
    assert not video._keyframe(mislabelled[0]) and video._keyframe(gops[2][0])
    for g, want in zip(gops, fresh):
        video.decode_packets(private, damaged)
        video.decode_packets(private, mislabelled)
        got = [(n, None if img is None else img.tobytes()) for n, img in video.decode_packets(private, g)]
        assert got == want
        assert video._local.decoder is not None  # kept for the next call after a clean run
    with pytest.raises(av.error.InvalidDataError):  # what a new decoder does with it
        video._decoder(private).decode(av.Packet(mislabelled[0].data))


def test_a_reused_decoder_decodes_a_damaged_keyframe_as_a_new_one_does():
    """FFV1 conceals a damaged slice with the picture its decoder showed last, and a keyframe does
    not forget that picture: a reused decoder gave a damaged GOP's first frame the last frame of
    whatever it decoded before -- another GOP, another video -- where a new decoder gives nothing
    readable (a read of a video without its index then took the other video's segment id from it
    and lost every document)."""
    private = video.codec_private()
    gops = _gops(3)

    def images(packets):
        return [(n, None if img is None else img.tobytes()) for n, img in video.decode_packets(private, packets)]

    key = gops[1][0].data
    flipped = [mkv.Packet(gops[1][0].number, True, key[:len(key) // 2] + bytes([key[len(key) // 2] ^ 0x10])
                          + key[len(key) // 2 + 1:]), gops[1][1]]
    assert video._keyframe(flipped[0])
    video._local.decoder = None
    alone = images(flipped)
    for g in gops:
        images(g)  # a clean GOP: its decoder is kept for the next call
        assert images(flipped) == alone
