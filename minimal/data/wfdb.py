"""A small NumPy reader for PhysioNet WFDB records: headers (.hea), format-212 signals (.dat), MIT annotations (.atr).

A WFDB record `NNN` is three files:

* `NNN.hea` — text. The first non-comment line is the *record line* `name n_signals fs n_samples`; then one
  *signal line* per signal: `file format gain(baseline)/units adc_resolution adc_zero initial_value checksum
  block_size description` (fields after `format` may be missing; `(baseline)` and `/units` are optional).
  Lines starting with `#` are comments.
* `NNN.dat` — the samples, interleaved frame by frame (signal 0 sample 0, signal 1 sample 0, signal 0 sample 1,
  ...). In *format 212* each pair of consecutive 12-bit two's-complement values is packed into 3 bytes:

      byte 0 = low 8 bits of value A
      byte 1 = high 4 bits of value A (low nibble) | high 4 bits of value B (high nibble)
      byte 2 = low 8 bits of value B

* `NNN.atr` — reference annotations in *MIT format*: a stream of 16-bit little-endian words, each holding a
  6-bit code (top bits) and a 10-bit number (bottom bits). Codes below 59 are annotations (beat types and others,
  see ANNOTATION_SYMBOLS; the 10 bits are the time since the previous annotation, in samples). Codes 59..63 are
  pseudo-annotations that modify the stream (see `read_annotations`). The word 0 ends the file.

The header stores, per signal, the first sample (`initial_value`) and the 16-bit sum of all samples
(`checksum`); `read_record` checks both, so a truncated or corrupted .dat file is caught.

Reference: the WFDB library (G. Moody et al., PhysioNet), `ecgcodes.h`, `annot.c`, `signal.c`; and
https://www.physionet.org/physiotools/wag/header-5.htm, signal-5.htm, annot-5.htm.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minimal.data.common import DataNotFoundError

# Annotation code -> mnemonic, as in the WFDB library (`ecgcodes.h`, `annot.c`). Codes 42..49 are user-defined.
ANNOTATION_SYMBOLS = {
    0: " ",   # NOTQRS    not a QRS (not used in files)
    1: "N",   # NORMAL    normal beat
    2: "L",   # LBBB      left bundle branch block beat
    3: "R",   # RBBB      right bundle branch block beat
    4: "a",   # ABERR     aberrated atrial premature beat
    5: "V",   # PVC       premature ventricular contraction
    6: "F",   # FUSION    fusion of ventricular and normal beat
    7: "J",   # NPC       nodal (junctional) premature beat
    8: "A",   # APC       atrial premature contraction
    9: "S",   # SVPB      premature or ectopic supraventricular beat
    10: "E",  # VESC      ventricular escape beat
    11: "j",  # NESC      nodal (junctional) escape beat
    12: "/",  # PACE      paced beat
    13: "Q",  # UNKNOWN   unclassifiable beat
    14: "~",  # NOISE     signal quality change
    16: "|",  # ARFCT     isolated QRS-like artifact
    18: "s",  # STCH      ST change
    19: "T",  # TCH       T-wave change
    20: "*",  # SYSTOLE
    21: "D",  # DIASTOLE
    22: '"',  # NOTE      comment annotation
    23: "=",  # MEASURE   measurement annotation
    24: "p",  # PWAVE     P-wave peak
    25: "B",  # BBB       left or right bundle branch block
    26: "^",  # PACESP    non-conducted pacer spike
    27: "t",  # TWAVE     T-wave peak
    28: "+",  # RHYTHM    rhythm change (the new rhythm is in the aux text, e.g. "(AFIB")
    29: "u",  # UWAVE     U-wave peak
    30: "?",  # LEARN
    31: "!",  # FLWAV     ventricular flutter wave
    32: "[",  # VFON      start of ventricular flutter/fibrillation
    33: "]",  # VFOFF     end of ventricular flutter/fibrillation
    34: "e",  # AESC      atrial escape beat
    35: "n",  # SVESC     supraventricular escape beat
    36: "@",  # LINK      link to external data
    37: "x",  # NAPC      non-conducted P-wave (blocked APC)
    38: "f",  # PFUS      fusion of paced and normal beat
    39: "(",  # WFON      waveform onset
    40: ")",  # WFOFF     waveform end
    41: "r",  # RONT      R-on-T premature ventricular contraction
}

# Pseudo-annotation codes of the MIT annotation format.
SKIP = 59  # the next 4 bytes are a 32-bit time step (high 16-bit word first)
NUM = 60   # set the `number` field of this and the following annotations (signed byte)
SUB = 61   # set the `subtype` field of the preceding annotation (signed byte)
CHN = 62   # set the `channel` field of this and the following annotations (unsigned byte)
AUX = 63   # auxiliary text for the preceding annotation: low 8 bits = length, then the bytes, padded to even


@dataclass(frozen=True)
class SignalSpec:
    """One signal line of a header. `physical = (digital - baseline) / gain` in `units`."""
    file_name: str
    format: int
    gain: float
    baseline: int
    units: str
    adc_resolution: int
    adc_zero: int
    initial_value: int | None  # first sample, if the header gives it
    checksum: int | None       # 16-bit signed sum of all samples, if the header gives it
    block_size: int
    description: str


@dataclass(frozen=True)
class Header:
    """A parsed .hea file."""
    record_name: str
    n_signals: int
    fs: float
    n_samples: int
    signals: tuple


@dataclass(frozen=True)
class Record:
    """A record's header and its digital samples, shape (n_samples, n_signals), int16."""
    header: Header
    digital: np.ndarray

    def physical(self) -> np.ndarray:
        """The samples in physical units (e.g. mV), float64, shape (n_samples, n_signals)."""
        gain = np.array([spec.gain for spec in self.header.signals])
        baseline = np.array([spec.baseline for spec in self.header.signals])
        return (self.digital - baseline) / gain


@dataclass(frozen=True)
class Annotations:
    """The annotations of one annotation file, one entry per annotation (pseudo-annotations are folded in)."""
    sample: np.ndarray   # int64, sample index of each annotation
    code: np.ndarray     # int64, annotation code (see ANNOTATION_SYMBOLS)
    symbol: np.ndarray   # str, mnemonic of each code ("N", "L", "R", "V", "+", ...)
    subtype: np.ndarray  # int64, -128..127 (a signed byte in WFDB; MIT-BIH: -1 marks an unreadable noise '~')
    channel: np.ndarray  # int64, 0..255
    number: np.ndarray   # int64, -128..127
    aux: tuple           # str per annotation ("" when absent), e.g. rhythm labels like "(N"


def parse_header(text: str) -> Header:
    """Parse the text of a .hea file (single-segment records only)."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError("header has no record line")
    record_fields = lines[0].split()
    if len(record_fields) < 4:
        raise ValueError(f"record line {lines[0]!r} needs 'name n_signals fs n_samples'")
    name, n_signals = record_fields[0], int(record_fields[1])
    if "/" in name:
        raise ValueError(f"record {name}: multi-segment records are not supported")
    fs = float(record_fields[2].split("/")[0].split("(")[0])
    n_samples = int(record_fields[3])
    signal_lines = lines[1:1 + n_signals]
    if len(signal_lines) != n_signals:
        raise ValueError(f"record {name}: header announces {n_signals} signals but has {len(signal_lines)} lines")
    return Header(name, n_signals, fs, n_samples, tuple(parse_signal_line(line) for line in signal_lines))


def parse_signal_line(line: str) -> SignalSpec:
    """Parse one signal line; missing trailing fields get the WFDB defaults."""
    fields = line.split(maxsplit=8)
    file_name, format_field = fields[0], fields[1]
    data_format = int(format_field.split("x")[0].split(":")[0].split("+")[0])
    adc_zero = int(fields[4]) if len(fields) > 4 else 0
    gain, baseline, units = parse_gain_field(fields[2] if len(fields) > 2 else "", default_baseline=adc_zero)
    return SignalSpec(
        file_name=file_name,
        format=data_format,
        gain=gain,
        baseline=baseline,
        units=units,
        adc_resolution=int(fields[3]) if len(fields) > 3 else 0,
        adc_zero=adc_zero,
        initial_value=int(fields[5]) if len(fields) > 5 else None,
        checksum=int(fields[6]) if len(fields) > 6 else None,
        block_size=int(fields[7]) if len(fields) > 7 else 0,
        description=fields[8] if len(fields) > 8 else "",
    )


def parse_gain_field(field: str, default_baseline: int):
    """Split `gain(baseline)/units` into (gain, baseline, units). Gain 0 or missing means 200 (WFDB default)."""
    gain_text, _, units = field.partition("/")
    baseline = default_baseline
    if "(" in gain_text:
        gain_text, baseline_text = gain_text.split("(")
        baseline = int(baseline_text.rstrip(")"))
    gain = float(gain_text) if gain_text else 0.0
    return (gain if gain != 0 else 200.0), baseline, (units or "mV")


def read_header(record_path) -> Header:
    """Read `<record_path>.hea` (record_path is the path without extension)."""
    header_file = Path(f"{record_path}.hea")
    if not header_file.is_file():
        raise DataNotFoundError(f"WFDB header {header_file} not found")
    return parse_header(header_file.read_text(encoding="ascii", errors="replace"))


def decode_format_212(raw: np.ndarray, n_values: int) -> np.ndarray:
    """Unpack `n_values` 12-bit two's-complement values from format-212 bytes `raw` (uint8). Returns int16."""
    n_bytes = (3 * n_values + 1) // 2  # an odd final value takes 2 bytes
    if raw.size < n_bytes:
        raise ValueError(f"format-212 data has {raw.size} bytes, {n_bytes} needed for {n_values} values")
    padded = np.zeros(3 * ((n_values + 1) // 2), dtype=np.int32)
    padded[:n_bytes] = raw[:n_bytes]
    triplets = padded.reshape(-1, 3)
    first = triplets[:, 0] | ((triplets[:, 1] & 0x0F) << 8)
    second = triplets[:, 2] | ((triplets[:, 1] & 0xF0) << 4)
    unsigned = np.stack([first, second], axis=1).reshape(-1)[:n_values]
    return np.where(unsigned >= 2048, unsigned - 4096, unsigned).astype(np.int16)


def sum_16bit(samples: np.ndarray) -> int:
    """The WFDB checksum: the sum of the samples as a signed 16-bit integer (wrapping around)."""
    total = int(np.sum(samples, dtype=np.int64))
    return (total + 32768) % 65536 - 32768


def read_record(record_path) -> Record:
    """Read header and signals of a format-212 record, checking the header's initial values and checksums.

    Raises DataNotFoundError (naming the record) if a file is missing or a check fails.
    """
    header = read_header(record_path)
    folder = Path(record_path).parent
    digital = np.zeros((header.n_samples, header.n_signals), dtype=np.int16)
    for file_name in dict.fromkeys(spec.file_name for spec in header.signals):  # each signal file once, in order
        indices = [i for i, spec in enumerate(header.signals) if spec.file_name == file_name]
        digital[:, indices] = read_signal_file(folder / file_name, header, indices)
    check_signals(header, digital)
    return Record(header, digital)


def read_signal_file(path: Path, header: Header, indices) -> np.ndarray:
    """Decode one .dat file holding the signals `indices` of `header`; shape (n_samples, len(indices))."""
    formats = {header.signals[i].format for i in indices}
    if formats != {212}:
        raise ValueError(f"record {header.record_name}: only format 212 is supported, {path.name} has {formats}")
    if not path.is_file():
        raise DataNotFoundError(f"record {header.record_name}: signal file {path} not found")
    raw = np.fromfile(path, dtype=np.uint8)
    try:
        values = decode_format_212(raw, header.n_samples * len(indices))
    except ValueError as error:
        raise DataNotFoundError(f"record {header.record_name}: {path.name} is truncated ({error})") from None
    return values.reshape(header.n_samples, len(indices))


def check_signals(header: Header, digital: np.ndarray):
    """Compare each signal's first sample and 16-bit sum with the header; raise DataNotFoundError on mismatch."""
    for i, spec in enumerate(header.signals):
        if spec.initial_value is not None and len(digital) and digital[0, i] != spec.initial_value:
            raise DataNotFoundError(
                f"record {header.record_name}, signal {i} ({spec.description}): first sample {digital[0, i]} "
                f"!= header initial value {spec.initial_value}; the signal file is corrupt")
        if spec.checksum is not None and sum_16bit(digital[:, i]) != spec.checksum:
            raise DataNotFoundError(
                f"record {header.record_name}, signal {i} ({spec.description}): checksum {sum_16bit(digital[:, i])} "
                f"!= header checksum {spec.checksum}; the signal file is corrupt")


def annotation_symbol(code: int) -> str:
    """Mnemonic of an annotation code; undefined codes are shown as `[code]` like the WFDB library does."""
    return ANNOTATION_SYMBOLS.get(code, f"[{code}]")


def read_annotations(path) -> Annotations:
    """Read an MIT-format annotation file (e.g. `100.atr`).

    Walks the 16-bit words: an annotation word adds its 10-bit time step and starts a new annotation; SKIP adds a
    32-bit step (for gaps > 1023 samples); SUB and AUX attach to the annotation before them; NUM and CHN set a field
    that later annotations keep until changed, as in the WFDB library. Of their 10 bits only the low byte counts:
    signed for SUB and NUM, unsigned for CHN (see `signed_byte`). A 0 word (or the end of the data) stops.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"annotation file {path} not found")
    words = np.fromfile(path, dtype="<u2").tolist()
    fields = {"sample": [], "code": [], "subtype": [], "channel": [], "number": [], "aux": []}
    time, channel, number, position = 0, 0, 0, 0
    while position < len(words) and words[position] != 0:
        code, value = words[position] >> 10, words[position] & 0x3FF
        position += 1
        if code == SKIP:
            if position + 2 > len(words):
                raise DataNotFoundError(f"annotation file {path} is truncated inside a SKIP record")
            time += int32_from_pdp11_words(words[position], words[position + 1])
            position += 2
            continue
        if code < SKIP:  # a real annotation
            time += value
            for name, item in zip(fields, (time, code, 0, channel, number, "")):
                fields[name].append(item)
            continue
        if not fields["code"]:
            raise DataNotFoundError(f"annotation file {path} is corrupt: pseudo-annotation {code} comes "
                                    f"before any annotation")
        if code == SUB:
            fields["subtype"][-1] = signed_byte(value)
        elif code == CHN:
            channel = fields["channel"][-1] = value & 0xFF
        elif code == NUM:
            number = fields["number"][-1] = signed_byte(value)
        elif code == AUX:
            length = value & 0xFF
            n_words = (length + 1) // 2
            text = np.array(words[position:position + n_words], dtype="<u2").tobytes()[:length]
            fields["aux"][-1] = text.decode("latin-1").rstrip("\0")
            position += n_words
    return Annotations(
        sample=np.array(fields["sample"], dtype=np.int64),
        code=np.array(fields["code"], dtype=np.int64),
        symbol=np.array([annotation_symbol(code) for code in fields["code"]], dtype=str),
        subtype=np.array(fields["subtype"], dtype=np.int64),
        channel=np.array(fields["channel"], dtype=np.int64),
        number=np.array(fields["number"], dtype=np.int64),
        aux=tuple(fields["aux"]),
    )


def signed_byte(value: int) -> int:
    """The low 8 bits of a SUB or NUM field as a two's-complement byte: 0x3FF -> -1, 0x07 -> 7.

    The WFDB library keeps subtype and number in a `signed char` (channel in an `unsigned char`). Writing, it
    stores the 10 low bits of that char sign-extended, so subtype -1 (e.g. an unreadable-noise `~` in MIT-BIH)
    is on disk as 0x3FF = 1023; reading, it assigns the 10 bits to the char again, which keeps the low byte.
    """
    low = value & 0xFF
    return low - 256 if low >= 128 else low


def int32_from_pdp11_words(high: int, low: int) -> int:
    """Join two 16-bit words (high word first, "PDP-11 order") into a signed 32-bit integer."""
    unsigned = (high << 16) | low
    return unsigned - (1 << 32) if unsigned >= (1 << 31) else unsigned
