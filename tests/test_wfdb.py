"""Tests of the WFDB reader: small records written here by hand, and (when present) the real MIT-BIH records."""
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from minimal.data.common import DataNotFoundError
from minimal.data.wfdb import (AUX, CHN, NUM, SKIP, SUB, annotation_symbol, decode_format_212, parse_header,
                               read_annotations, read_record, signed_byte, sum_16bit)

REPO_ROOT = Path(__file__).resolve().parent.parent
MITDB = Path(os.environ.get("MINIMAL_MITDB", REPO_ROOT / ".." / "shared" / "data" / "mitdb"))
needs_mitdb = pytest.mark.skipif(not (MITDB / "100.hea").is_file(), reason=f"MIT-BIH records not found in {MITDB}")


# ----- writers for tiny WFDB files (the inverse of the reader) -----

def encode_format_212(values) -> bytes:
    """Pack 12-bit two's-complement values into format 212: pairs (A, B) -> A_lo, A_hi | B_hi << 4, B_lo."""
    unsigned = np.asarray(values, dtype=np.int64) & 0xFFF
    padded = np.append(unsigned, 0) if unsigned.size % 2 else unsigned
    first, second = padded[0::2], padded[1::2]
    triplets = np.stack([first & 0xFF, (first >> 8) | ((second >> 8) << 4), second & 0xFF], axis=1)
    return triplets.astype(np.uint8).tobytes()[:(3 * unsigned.size + 1) // 2]


def write_record(folder: Path, name: str, digital: np.ndarray, fs=360, gain=200, baseline=1024, checksums=None):
    """Write `name.hea` and `name.dat` (format 212) for int samples of shape (n_samples, n_signals)."""
    n_samples, n_signals = digital.shape
    (folder / f"{name}.dat").write_bytes(encode_format_212(digital.reshape(-1)))
    checksums = checksums or [sum_16bit(digital[:, i]) for i in range(n_signals)]
    lines = [f"{name} {n_signals} {fs} {n_samples}"]
    for i in range(n_signals):
        lines.append(f"{name}.dat 212 {gain} 11 {baseline} {digital[0, i]} {checksums[i]} 0 lead {i}")
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n# a comment line\n")
    return folder / name


def annotation(code, time_step):
    """The word of one annotation: 6-bit code, 10-bit time step since the previous one."""
    return [(code << 10) | time_step]


def skip(time_step):
    """A SKIP record: its word, then the 32-bit step as two words, high 16 bits first."""
    unsigned = time_step & 0xFFFFFFFF
    return [SKIP << 10, unsigned >> 16, unsigned & 0xFFFF]


def modifier(code, value):
    """A NUM / SUB / CHN word."""
    return [(code << 10) | value]


def aux(text: str):
    """An AUX record: length in the low bits, then the bytes, padded to an even count, as little-endian words."""
    payload = text.encode("ascii")
    padded = payload + b"\0" * (len(payload) % 2)
    return [(AUX << 10) | len(payload)] + np.frombuffer(padded, dtype="<u2").tolist()


def write_annotations(path: Path, words):
    """Write the words (plus the terminating 0 word) as an MIT annotation file."""
    np.array(list(words) + [0], dtype="<u2").tofile(path)
    return path


# ----- format 212 -----

def test_decode_212_known_bytes():
    # A = 0x123, B = -1 (0xFFF): bytes 0x23, 0xF1, 0xFF
    assert decode_format_212(np.array([0x23, 0xF1, 0xFF], dtype=np.uint8), 2).tolist() == [0x123, -1]
    assert decode_format_212(np.array([0x00, 0x08, 0x00], dtype=np.uint8), 1).tolist() == [-2048]


@pytest.mark.parametrize("n_values", [1, 2, 7, 1000])
def test_212_round_trip(n_values):
    values = np.random.default_rng(n_values).integers(-2048, 2048, n_values)
    values[0] = -2048
    raw = np.frombuffer(encode_format_212(values), dtype=np.uint8)
    assert raw.size == (3 * n_values + 1) // 2
    np.testing.assert_array_equal(decode_format_212(raw, n_values), values)


def test_decode_212_too_few_bytes():
    with pytest.raises(ValueError, match="bytes"):
        decode_format_212(np.zeros(4, dtype=np.uint8), 4)


# ----- headers and records -----

def test_parse_header_fields_and_defaults():
    header = parse_header(
        "# leading comment\r\n"
        "rec 3 250/125 1000 10:00:00\r\n"
        "rec.dat 212 400(12)/uV 12 0 -5 123 0 ECG lead II\r\n"
        "rec.dat 212 0 11 7\r\n"
        "rec.dat 212\r\n")
    assert (header.record_name, header.n_signals, header.fs, header.n_samples) == ("rec", 3, 250.0, 1000)
    first, second, third = header.signals
    assert (first.gain, first.baseline, first.units, first.adc_resolution, first.adc_zero) == (400.0, 12, "uV", 12, 0)
    assert (first.initial_value, first.checksum, first.block_size, first.description) == (-5, 123, 0, "ECG lead II")
    assert (second.gain, second.baseline, second.units, second.initial_value) == (200.0, 7, "mV", None)
    assert (third.gain, third.baseline, third.checksum, third.description) == (200.0, 0, None, "")


def test_record_round_trip(tmp_path):
    digital = np.random.default_rng(0).integers(-2048, 2048, (501, 2))
    record = read_record(write_record(tmp_path, "r1", digital, fs=360, gain=200, baseline=1024))
    assert record.header.fs == 360 and record.header.n_samples == 501
    np.testing.assert_array_equal(record.digital, digital)
    np.testing.assert_allclose(record.physical(), (digital - 1024) / 200)


def test_record_checksum_mismatch_names_the_record(tmp_path):
    digital = np.random.default_rng(1).integers(-2048, 2048, (100, 2))
    path = write_record(tmp_path, "bad7", digital, checksums=[sum_16bit(digital[:, 0]), 1234])
    with pytest.raises(DataNotFoundError, match="bad7.*checksum"):
        read_record(path)


def test_record_corrupted_sample_is_caught(tmp_path):
    digital = np.random.default_rng(2).integers(-2000, 2000, (100, 2))
    path = write_record(tmp_path, "r2", digital)
    raw = bytearray((tmp_path / "r2.dat").read_bytes())
    raw[30] ^= 0x01
    (tmp_path / "r2.dat").write_bytes(bytes(raw))
    with pytest.raises(DataNotFoundError, match="r2"):
        read_record(path)


def test_record_truncated_or_missing_signal_file(tmp_path):
    path = write_record(tmp_path, "r3", np.zeros((100, 2), dtype=np.int64))
    (tmp_path / "r3.dat").write_bytes((tmp_path / "r3.dat").read_bytes()[:-10])
    with pytest.raises(DataNotFoundError, match="r3.*truncated"):
        read_record(path)
    (tmp_path / "r3.dat").unlink()
    with pytest.raises(DataNotFoundError, match="not found"):
        read_record(path)


def test_sum_16bit_wraps_to_signed():
    assert sum_16bit(np.array([32767, 1])) == -32768
    assert sum_16bit(np.array([-32768, -1])) == 32767


# ----- annotations -----

def test_symbol_table():
    expected = {0: " ", 1: "N", 2: "L", 3: "R", 4: "a", 5: "V", 6: "F", 7: "J", 8: "A", 9: "S", 10: "E", 11: "j",
                12: "/", 13: "Q", 14: "~", 16: "|", 28: "+", 31: "!", 37: "x", 38: "f", 41: "r", 45: "[45]"}
    assert {code: annotation_symbol(code) for code in expected} == expected


def test_annotations_with_every_record_kind(tmp_path):
    words = (annotation(28, 18) + aux("(AFIB")              # rhythm change at 18, odd-length text
             + annotation(1, 300) + modifier(SUB, 2)         # N at 318, subtype 2
             + annotation(5, 1023) + modifier(CHN, 1)        # V at 1341 on channel 1
             + skip(100_000) + annotation(2, 5)              # L at 101346, channel 1 kept
             + modifier(NUM, 7)                              # number 7 from this L on
             + annotation(3, 1) + aux("(N")                  # R at 101347, even-length text
             + annotation(45, 2))                            # a user-defined code at 101349
    end_then_junk = [0, 0x1234]  # nothing after the 0 word may be read
    annotations = read_annotations(write_annotations(tmp_path / "x.atr", words + end_then_junk))
    assert annotations.sample.tolist() == [18, 318, 1341, 101346, 101347, 101349]
    assert annotations.symbol.tolist() == ["+", "N", "V", "L", "R", "[45]"]
    assert annotations.code.tolist() == [28, 1, 5, 2, 3, 45]
    assert annotations.subtype.tolist() == [0, 2, 0, 0, 0, 0]
    assert annotations.channel.tolist() == [0, 0, 1, 1, 1, 1]
    assert annotations.number.tolist() == [0, 0, 0, 7, 7, 7]
    assert annotations.aux == ("(AFIB", "", "", "", "(N", "")


def test_annotation_subtype_is_a_signed_byte_hand_made_bytes(tmp_path):
    """Little-endian 16-bit words, each written out as its two bytes (low byte first):

        2C 05   0x052C = code 1 (N) << 10 | time step 300
        FF F7   0xF7FF = code 61 (SUB) << 10 | 0x3FF: the low byte 0xFF is the subtype, −1 as a signed char
                (the WFDB library writes subtype −1 as its 10 low bits, 0x3FF)
        05 F4   0xF405 = SUB, subtype 5
        0A 14   0x140A = code 5 (V) << 10 | time step 10
        80 F6   0xF680 = SUB 0x280: low byte 0x80 = −128
        FE F3   0xF3FE = code 60 (NUM) << 10 | 0x3FE: number −2 (also a signed char)
        FF F8   0xF8FF = code 62 (CHN) << 10 | 0xFF: channel 255 (an unsigned char)
        01 04   0x0401 = N, time step 1: keeps number −2 and channel 255, subtype back to 0
        7F F4   0xF47F = SUB, subtype 127
        00 00   end of file
    """
    raw = bytes.fromhex("2C05 FFF7 05F4 0A14 80F6 FEF3 FFF8 0104 7FF4 0000")
    (tmp_path / "s.atr").write_bytes(raw)
    annotations = read_annotations(tmp_path / "s.atr")
    assert annotations.sample.tolist() == [300, 310, 311]
    assert annotations.symbol.tolist() == ["N", "V", "N"]
    assert annotations.subtype.tolist() == [5, -128, 127]  # the later SUB of one annotation wins
    assert annotations.number.tolist() == [0, -2, -2]
    assert annotations.channel.tolist() == [0, 255, 255]
    only_noise = read_annotations(write_annotations(tmp_path / "n.atr", annotation(14, 7) + modifier(SUB, 0x3FF)))
    assert only_noise.symbol.tolist() == ["~"] and only_noise.subtype.tolist() == [-1]


def test_signed_byte():
    assert [signed_byte(v) for v in (0, 1, 127, 128, 255, 0x3FF, 0x301, 0x17F)] == [0, 1, 127, -128, -1, -1, 1, 127]


def test_annotations_skip_is_signed_and_file_may_start_with_skip(tmp_path):
    words = skip(70_000) + annotation(1, 0) + skip(-69_000) + annotation(5, 10)
    annotations = read_annotations(write_annotations(tmp_path / "y.atr", words))
    assert annotations.sample.tolist() == [70_000, 1_010]


def test_annotations_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="not found"):
        read_annotations(tmp_path / "missing.atr")
    with pytest.raises(DataNotFoundError, match="before any annotation"):
        read_annotations(write_annotations(tmp_path / "a.atr", modifier(SUB, 1) + annotation(1, 5)))
    np.array(annotation(1, 5) + [SKIP << 10, 0], dtype="<u2").tofile(tmp_path / "b.atr")
    with pytest.raises(DataNotFoundError, match="truncated"):
        read_annotations(tmp_path / "b.atr")


# ----- the real MIT-BIH records -----

@needs_mitdb
def test_mitdb_record_100_signals():
    record = read_record(MITDB / "100")
    assert (record.header.fs, record.header.n_samples, record.header.n_signals) == (360.0, 650000, 2)
    assert [spec.description for spec in record.header.signals] == ["MLII", "V5"]
    assert record.digital.shape == (650000, 2)
    np.testing.assert_allclose(record.physical()[0], [-0.145, -0.065])


@needs_mitdb
@pytest.mark.parametrize("record, expected", [
    ("100", {"N": 2239, "A": 33, "V": 1}),
    ("109", {"L": 2492, "V": 38}),
    ("111", {"L": 2123}),
    ("118", {"R": 2166}),
    ("119", {"N": 1543, "V": 444}),
    ("207", {"L": 1457, "R": 86}),
    ("212", {"N": 923, "R": 1825}),
    ("214", {"L": 2003}),
    ("231", {"N": 314, "R": 1254}),
    ("233", {"V": 831}),
])
def test_mitdb_beat_counts(record, expected):
    counts = Counter(read_annotations(MITDB / f"{record}.atr").symbol.tolist())
    assert {symbol: counts[symbol] for symbol in expected} == expected


@needs_mitdb
def test_mitdb_unreadable_noise_has_subtype_minus_one():
    """MIT-BIH marks 8 noise annotations '~' as unreadable with subtype −1 (stored as SUB 0x3FF, the 10-bit word
    0xF7FF, in records 101, 105, 203, 208, 210). No subtype of MIT-BIH falls outside −1..9."""
    expected = {"101": 1, "105": 4, "203": 1, "208": 1, "210": 1}
    found, subtypes = {}, set()
    for path in sorted(MITDB.glob("*.atr")):
        annotations = read_annotations(path)
        subtypes.update(annotations.subtype.tolist())
        minus_one = annotations.subtype == -1
        if minus_one.any():
            found[path.stem] = int(minus_one.sum())
            assert set(annotations.symbol[minus_one].tolist()) == {"~"}
        # an independent count: the raw SUB words 0xF7FF in the file
        assert int(np.sum(np.fromfile(path, dtype="<u2") == 0xF7FF)) == int(minus_one.sum())
    assert found == expected
    assert subtypes == set(range(-1, 10))


@needs_mitdb
def test_mitdb_total_beat_counts():
    records = sorted(path.stem for path in MITDB.glob("*.atr"))
    counts = Counter()
    for record in records:
        counts.update(read_annotations(MITDB / f"{record}.atr").symbol.tolist())
    assert len(records) == 48
    assert {symbol: counts[symbol] for symbol in "NLRV"} == {"N": 75052, "L": 8075, "R": 7259, "V": 7130}
