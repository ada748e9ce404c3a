"""Shard format: exact round trip, deterministic bytes, atomic writes, a reader that skips and reports and counts
the bytes it reads, and the manifest's choice of shards."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import webdataset as wds

from slp.data.schema import Sample, SampleMeta, make_key
from slp.data.shards import (
    ReadStats,
    ShardWriter,
    encode_sample,
    iter_samples,
    manifest_row,
    read_manifest,
    shards_holding,
    tar_members,
    tar_samples,
    write_manifest,
    write_shard,
    write_summary,
)
from slp.pose.readers import PoseSequence, to_shard_pose


def _sample(i: int, rng, paired: bool = True, frames: int = 12) -> Sample:
    kp = np.concatenate([rng.uniform(0, 1920, (frames, 133, 1)), rng.uniform(0, 1080, (frames, 133, 1)),
                         rng.uniform(0, 1, (frames, 133, 1))], axis=-1).astype(np.float32)
    meta = SampleMeta(dataset="wlasl", split="train", sign_language="ASL", text_language="en" if paired else "",
                      source_id=f"0{i:04d}", fps=25.0, width=1920, height=1080, signer="7", frame_start=3,
                      frame_end=3 + frames, text="This word is book." if paired else "", gloss="book", label=i,
                      paired=paired)
    pose = to_shard_pose(PoseSequence(kp, 25.0, 1920, 1080))
    return Sample(make_key("wlasl", "train", f"0{i:04d}.mp4"), pose, meta), kp


def test_keys_have_no_dots():
    assert make_key("how2sign", "-d5dN54tH2E_0-1-rgb_front.mp4") == "how2sign_-d5dN54tH2E_0-1-rgb_front-mp4"
    rng = np.random.default_rng(0)
    sample, _ = _sample(0, rng)
    sample.key = "a.b"
    with pytest.raises(ValueError, match="dots"):
        encode_sample(sample)


def test_round_trip_within_half_a_pixel_at_1920(tmp_path):
    rng = np.random.default_rng(0)
    pairs = [_sample(i, rng, paired=i % 2 == 0) for i in range(5)]
    write_shard(tmp_path / "s-000000.tar", [s for s, _ in pairs])
    read = {s.key: s for s in iter_samples([tmp_path / "s-000000.tar"])}
    assert len(read) == 5
    for sample, kp in pairs:
        got = read[sample.key]
        pixels = got.pose[..., :2].astype(np.float64) * [1920, 1080]
        kept = kp[:, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] + list(range(23, 40)) + [53] + list(range(83, 133))]
        assert np.abs(pixels - kept[..., :2]).max() <= 0.5
        assert got.meta == sample.meta
        assert got.text == sample.text


def test_writer_rolls_shards_atomically_and_deterministically(tmp_path):
    rng = np.random.default_rng(1)
    samples = [_sample(i, rng)[0] for i in range(7)]
    for out in ("a", "b"):
        with ShardWriter(tmp_path / out, prefix="syn", max_samples=3) as writer:
            for s in samples:
                writer.write(s)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["syn-000000.tar", "syn-000001.tar", "syn-000002.tar"]  # no temporary files left
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    writer = ShardWriter(tmp_path / "c")
    writer.write(samples[0])
    with pytest.raises(ValueError, match="duplicate"):
        writer.write(samples[0])


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_truncated_shard_and_nan_sample_are_skipped_counted_and_reported(tmp_path, caplog):
    rng = np.random.default_rng(2)
    good = [_sample(i, rng)[0] for i in range(4)]
    write_shard(tmp_path / "s-000000.tar", good[:2])
    # A shard with a NaN sample between two good ones, written without the writer's validation.
    with tarfile.open(tmp_path / "s-000001.tar", "w") as tar:
        for sample in (good[2], None, good[3]):
            if sample is None:
                bad = np.zeros((5, 79, 3), dtype=np.float16)
                bad[1, 2, 0] = np.nan
                buf = io.BytesIO()
                np.save(buf, bad)
                _add(tar, "bad_nan.pose.npy", buf.getvalue())
                _add(tar, "bad_nan.json", json.dumps(good[0].meta.to_json()).encode())
                _add(tar, "bad_nan.txt", b"x")
                continue
            for ext, data in encode_sample(sample).items():
                _add(tar, f"{sample.key}.{ext}", data)
    # Two shards cut short: at a tar block boundary (reads as a short archive) and inside a member.
    for name, cut in (("s-000002.tar", 0), ("s-000003.tar", 100)):
        write_shard(tmp_path / name, [_sample(10 + i, rng)[0] for i in range(3)])
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2 + cut])
    stats = ReadStats()
    with caplog.at_level("WARNING"):
        keys = [s.key for s in iter_samples(sorted(tmp_path.glob("*.tar")), stats)]
    assert set(k.key for k in good) <= set(keys) and "bad_nan" not in keys
    assert stats.rejected == 1 and stats.truncated_shards == 2 and stats.lost_to_truncation <= 2
    assert stats.samples == len(keys)
    reasons = {(e["shard"].rsplit("/", 1)[-1], e["key"]): e["reason"] for e in stats.errors}
    assert "non-finite" in reasons[("s-000001.tar", "bad_nan")]
    for name in ("s-000002.tar", "s-000003.tar"):
        assert any(shard == name and "tar" in r for (shard, _), r in reasons.items())
        assert name in caplog.text
    assert "bad_nan" in caplog.text


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _meta_with(**fields) -> bytes:
    rng = np.random.default_rng(0)
    return json.dumps({**_sample(0, rng)[0].meta.to_json(), **fields}).encode()


GOOD_POSE = np.zeros((12, 79, 3), dtype=np.float16)
# (members of one bad sample, the reason its rejection names): each would abort a whole shard read if it raised.
BAD_SAMPLES = {
    "json_list": ({"json": b"[1, 2, 3]"}, "json is a list, not an object"),
    "json_string": ({"json": b'"a string"'}, "json is a str, not an object"),
    "json_null": ({"json": b"null"}, "json is a NoneType, not an object"),
    "json_missing_fields": ({"json": b'{"dataset": "wlasl"}'}, "json is not sample metadata"),
    "label_text": ({"json": _meta_with(label="abc")}, "label 'abc'"),
    "fps_text": ({"json": _meta_with(fps="fast")}, "fps 'fast'"),
    "npy_garbled_dtype": ({"pose.npy": _npy(GOOD_POSE).replace(b"'<f2'", b"'<zz'")}, "unreadable pose.npy"),
    "npy_garbled_shape": ({"pose.npy": _npy(GOOD_POSE).replace(b"(12, 79, 3)", b"(99, 79, 3)")},
                          "unreadable pose.npy"),
    "txt_not_utf8": ({"txt": b"\xff\xfe broken"}, "unreadable txt"),
    # np.load tokenizes a header that is not a Python literal (its Python 2 fallback): tokenize.TokenError
    "npy_header_unclosed": ({"pose.npy": _npy(GOOD_POSE).replace(b"(12, 79, 3)", b"(12, 79, 3 ")},
                            "unreadable pose.npy (TokenError: EOF in multi-line statement)"),
    "npy_header_not_a_literal": ({"pose.npy": _npy(GOOD_POSE).replace(b"False", b"Fals!")},
                                 "unreadable pose.npy (ValueError: Cannot parse header"),
    "npy_cut_in_its_magic": ({"pose.npy": b"\x93NUMPY"}, "pose.npy is not a .npy file"),
    # Fortran order: numpy reads it, and allocates the array its header claims before reading a byte of it
    "npy_claims_terabytes": ({"pose.npy": _npy(np.asfortranarray(GOOD_POSE)).replace(b"(12, 79, 3)",
                                                                                     b"(99999999999, 79, 3)")},
                             "unreadable pose.npy (MemoryError: Unable to allocate"),
    "json_nested_too_deep": ({"json": b"[" * 100_000}, "unreadable json (RecursionError: maximum recursion depth"),
    "json_integer_too_long": ({"json": b'{"label": ' + b"9" * 5000 + b"}"},
                              "unreadable json (ValueError: Exceeds the limit (4300 digits)"),
}


def test_one_bad_sample_is_rejected_with_its_reason_and_the_read_goes_on(tmp_path):
    rng = np.random.default_rng(5)
    good = [_sample(i, rng)[0] for i in range(2)]
    base = {"pose.npy": _npy(GOOD_POSE), "json": _meta_with(), "txt": b"This word is book."}
    with tarfile.open(tmp_path / "s-000000.tar", "w") as tar:
        for ext, data in encode_sample(good[0]).items():
            _add(tar, f"{good[0].key}.{ext}", data)
        for key, (members, _) in BAD_SAMPLES.items():
            for ext, data in {**base, **members}.items():
                _add(tar, f"{key}.{ext}", data)
        for ext, data in encode_sample(good[1]).items():
            _add(tar, f"{good[1].key}.{ext}", data)
    stats = ReadStats()
    keys = [s.key for s in iter_samples([tmp_path / "s-000000.tar"], stats)]
    assert keys == [good[0].key, good[1].key]
    assert stats.rejected == len(BAD_SAMPLES) and stats.samples == 2 and stats.truncated_shards == 0
    reasons = {e["key"]: e["reason"] for e in stats.errors}
    for key, (_, reason) in BAD_SAMPLES.items():
        assert reason in reasons[key], (key, reasons[key])


def _webdataset_samples(path) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "__local_path__"}
            for s in wds.WebDataset(str(path), shardshuffle=False, empty_check=False)]


def _our_samples(path) -> list[dict]:
    with open(path, "rb") as f:
        return list(tar_samples(tar_members(f), str(path)))


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_reader_reads_every_tar_flavour_as_webdataset_does(tmp_path, tar_format):
    long_dir = "d" * 120  # a name over 100 bytes: a ustar prefix, a GNU long-name member or a PAX path record
    names = [f"{long_dir}/a_0.pose.npy", f"{long_dir}/a_0.json", "b_1.pose.npy", "b_1.JSON", "b_1.txt",
             "__meta__.json", "no_extension", "ünï_2.txt"]
    if tar_format == tarfile.USTAR_FORMAT:
        names.remove("ünï_2.txt")  # ustar cannot store non-ASCII names
    path = tmp_path / "flavour.tar"
    with tarfile.open(path, "w", format=tar_format) as tar:
        info = tarfile.TarInfo("a_directory")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for i, name in enumerate(names):
            size = (512, 1, 1031, 0, 300, 511, 513, 2048)[i]  # on and off block boundaries, empty
            data = bytes((7 * j + i) % 256 for j in range(size))
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1.5e9 + 0.25  # a float mtime makes PAX write a header
            tar.addfile(info, io.BytesIO(data))
    ours = _our_samples(path)
    assert ours == _webdataset_samples(path)
    assert [s["__key__"] for s in ours][:2] == [f"{long_dir}/a_0", "b_1"] and "json" in ours[1]


def test_tar_reader_reads_webdataset_tarwriter_output(tmp_path):
    path = tmp_path / "written.tar"
    with wds.TarWriter(str(path)) as sink:
        for i in range(5):
            sink.write({"__key__": f"k_{i}", "pose.npy": bytes(1000 + 511 * i), "txt": f"text {i}"})
    assert _our_samples(path) == _webdataset_samples(path)
    assert len(_our_samples(path)) == 5


def test_shards_are_read_through_webdataset_urls(tmp_path):
    rng = np.random.default_rng(5)
    samples = [_sample(i, rng)[0] for i in range(3)]
    write_shard(tmp_path / "s-000000.tar", samples)
    for url in (f"file:{tmp_path}/s-000000.tar", f"pipe:cat {tmp_path}/s-000000.tar"):
        assert [s.key for s in iter_samples([url])] == [s.key for s in samples]


def test_corrupt_header_and_duplicate_member_are_reported(tmp_path):
    rng = np.random.default_rng(4)
    samples = [_sample(i, rng)[0] for i in range(3)]
    write_shard(tmp_path / "s-000000.tar", samples)
    data = bytearray((tmp_path / "s-000000.tar").read_bytes())
    second = data.index(samples[1].key.encode())  # the first member of the second sample: break its size
    data[second + 124 : second + 136] = b"77777777777\0"
    (tmp_path / "s-000000.tar").write_bytes(bytes(data))
    with tarfile.open(tmp_path / "s-000001.tar", "w") as tar:
        for ext, payload in encode_sample(samples[2]).items():
            _add(tar, f"{samples[2].key}.{ext}", payload)
        _add(tar, f"{samples[2].key}.json", payload)
    stats = ReadStats()
    keys = [s.key for s in iter_samples([tmp_path / "s-000000.tar", tmp_path / "s-000001.tar"], stats)]
    assert keys == [samples[0].key]
    reasons = [(e["shard"].rsplit("/", 1)[-1], e["key"], e["reason"]) for e in stats.errors]
    assert reasons == [("s-000000.tar", "", "unreadable tar (TarFormatError: not a tar header (checksum mismatch))"),
                       ("s-000001.tar", samples[2].key, "two members with extension 'json'")]
    assert stats.truncated_shards == 1 and stats.rejected == 1 and stats.samples == 1


def test_metadata_fields_from_a_newer_writer_are_ignored():
    rng = np.random.default_rng(6)
    meta = _sample(0, rng)[0].meta
    assert SampleMeta.from_json({**meta.to_json(), "new_field": 1}) == meta == SampleMeta.from_json(meta.to_json())


def test_manifest_and_summary(tmp_path):
    rng = np.random.default_rng(3)
    samples = [_sample(i, rng, paired=i != 1)[0] for i in range(3)]
    assert write_manifest((manifest_row(s, "s-000000.tar") for s in samples), tmp_path / "manifest.parquet") == 3
    rows = read_manifest(tmp_path / "manifest.parquet").to_pylist()
    assert [r["key"] for r in rows] == [s.key for s in samples]
    assert rows[0]["frames"] == 12 and rows[0]["text_length"] == len("This word is book.")
    assert rows[1]["paired"] is False and rows[1]["text_length"] == 0
    write_summary(tmp_path / "summary.json", {"samples": 3, "text": "ü"})
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")) == {"samples": 3, "text": "ü"}


def test_bytes_read_are_the_tar_blocks_read(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "s-000000.tar"
    write_shard(path, [_sample(i, rng, paired=i % 2 == 0)[0] for i in range(4)])
    stats = ReadStats()
    assert len(list(iter_samples([path], stats))) == 4
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    # Every header and padded member, then the first block of the end-of-archive marker; the rest of the file is
    # zeros (the second marker block and the padding to tarfile's record size) that the reader leaves unread.
    assert stats.bytes_read == sum(512 + -(-m.size // 512) * 512 for m in members) + 512
    assert path.stat().st_size - 20 * 512 < stats.bytes_read <= path.stat().st_size
    partial = ReadStats()
    next(iter_samples([path], partial))  # a reader that stops early has read only what it gave (and a header)
    assert 0 < partial.bytes_read < stats.bytes_read / 2


def names(paths: list[str]) -> list[str]:
    return [p.rsplit("/", 1)[-1] for p in paths]


def test_shards_holding_follow_the_manifest_and_keep_what_it_does_not_list(tmp_path):
    rng = np.random.default_rng(8)
    sample = _sample(0, rng)[0]
    for name in ("a-000000.tar", "a-000001.tar", "a-000002.tar"):
        write_shard(tmp_path / "shards" / name, [sample])
    rows = [manifest_row(sample, "a-000000.tar"), {**manifest_row(sample, "a-000001.tar"), "split": "dev"}]
    write_manifest(rows, tmp_path / "manifest.parquet")  # a-000002.tar is not listed: it is kept
    pattern = [str(tmp_path / "shards" / "*.tar")]
    assert names(shards_holding(pattern, "wlasl", "train")) == ["a-000000.tar", "a-000002.tar"]
    assert names(shards_holding(pattern, "", "dev")) == ["a-000001.tar", "a-000002.tar"]
    assert names(shards_holding(pattern, "other", "dev")) == ["a-000002.tar"]
    (tmp_path / "manifest.parquet").rename(tmp_path / "shards" / "manifest.parquet")  # beside the shards
    assert names(shards_holding(pattern, "wlasl", "train")) == ["a-000000.tar", "a-000002.tar"]
    (tmp_path / "shards" / "manifest.parquet").unlink()  # no manifest: every shard
    assert names(shards_holding(pattern, "wlasl", "train")) == ["a-000000.tar", "a-000001.tar", "a-000002.tar"]


@pytest.mark.parametrize("digit, reason", [
    (b"x", "unreadable PAX header (invalid literal for int() with base 10: b'xxx')"),
    (b"0", "unreadable PAX header (record length 0 at byte 0)"),  # a length of 0 would read the record forever
])
def test_a_garbled_pax_header_loses_its_shard_not_the_read(tmp_path, digit, reason):
    rng = np.random.default_rng(7)
    samples = [_sample(i, rng)[0] for i in range(2)]
    with tarfile.open(tmp_path / "s-000000.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for ext, data in encode_sample(samples[0]).items():
            _add(tar, f"{'d' * 120}/{samples[0].key}.{ext}", data)  # a name over 100 bytes: a PAX path record
    data = (tmp_path / "s-000000.tar").read_bytes()
    length = data.index(b" path=")  # the record's length is the first bytes of the PAX header's data, at 512
    assert length - 512 == 3
    (tmp_path / "s-000000.tar").write_bytes(data[:512] + digit * 3 + data[length:])
    write_shard(tmp_path / "s-000001.tar", samples[1:])
    stats = ReadStats()
    keys = [s.key for s in iter_samples([tmp_path / "s-000000.tar", tmp_path / "s-000001.tar"], stats)]
    assert keys == [samples[1].key]
    assert [(e["shard"].rsplit("/", 1)[-1], e["reason"]) for e in stats.errors] == [
        ("s-000000.tar", f"unreadable tar (TarFormatError: {reason})")]
