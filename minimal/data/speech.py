"""Speech Commands (Warden 2018): six spoken words as MFCC sequences of 98 frames x 40 coefficients.

The data set holds one-second 16 kHz recordings of short words, one word per clip, in folders named after the
word: `<root>/<word>/<speakerhash>_nohash_<n>.wav`. The paper uses six words, labelled in this order:

    yes=0, no=1, up=2, down=3, left=4, right=5

Each clip becomes a (time, feature) = (98, 40) array in five small stages, each its own function below:

    waveform (16000,) --frame_signal--> (98, 480) --power_spectrum--> (98, 257)
        --log_mel (mel_filterbank)--> (98, 40) --mfcc--> (98, 40)

All stages work on any leading axes, so a whole batch of clips goes through in one call (no loop over frames).

Splits are by speaker, so no voice is both trained on and tested on. Computing the features of all (over 20 000)
clips takes a while, so `load_speech` caches them in an .npz file next to the data and reuses it while the feature
parameters and the list of clips are unchanged. Get the data with `python data_scripts/speech_commands.py`.
"""
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.io import wavfile
from tqdm import tqdm

from minimal.data.common import DataNotFoundError, Split, TaskData
from minimal.io import atomic_save_npz, load_npz

CLASSES = ("yes", "no", "up", "down", "left", "right")
DOWNLOAD_HINT = "run `python data_scripts/speech_commands.py`"

SAMPLE_RATE = 16000        # Hz; every Speech Commands clip is recorded at 16 kHz
CLIP_SAMPLES = 16000       # 1 s; shorter clips are padded with zeros at the end, longer ones trimmed
INT16_SCALE = 32768.0      # int16 samples / 32768 -> floats in [-1, 1)
FRAME_LENGTH = 480         # 30 ms analysis window
HOP_LENGTH = 160           # 10 ms between window starts
N_FFT = 512                # each 480-sample frame is zero-padded to 512 points; bins are 16000/512 = 31.25 Hz apart
N_MELS = 40
F_MIN = 20.0               # Hz; lowest filter edge: the bottom of human hearing, so DC is left out
F_MAX = 8000.0             # Hz; highest filter edge: the Nyquist frequency, so the filters cover the whole spectrum
LOG_EPSILON = 1e-6         # added before the log: just above the band energy of int16 rounding noise (2e-8..2e-7),
                           # so digital silence gives a finite floor log(1e-6) = -13.8 instead of -inf
N_MFCC = 40
N_FRAMES = 1 + (CLIP_SAMPLES - FRAME_LENGTH) // HOP_LENGTH   # 98

# Everything the cached features depend on. A cache made with other values is stale and gets recomputed.
# Bump "version" whenever the feature code changes in a way these numbers do not capture.
FEATURE_PARAMS = {
    "version": 1,
    "sample_rate": SAMPLE_RATE, "clip_samples": CLIP_SAMPLES, "int16_scale": INT16_SCALE,
    "window": "hann (periodic)", "frame_length": FRAME_LENGTH, "hop_length": HOP_LENGTH, "n_fft": N_FFT,
    "mel_scale": "htk", "n_mels": N_MELS, "f_min": F_MIN, "f_max": F_MAX, "log_epsilon": LOG_EPSILON,
    "dct": "type-II orthonormal", "n_mfcc": N_MFCC,
}
CACHE_NAME = "mfcc_features.npz"
SPLIT_NAMES = ("train", "val", "test")


# ---------------------------------------------------------------- reading clips

def read_wav(path) -> np.ndarray:
    """Read a 16 kHz, 16-bit, mono WAV file as an int16 array; anything else is refused with the file's name."""
    try:
        rate, samples = wavfile.read(path)
    except ValueError as error:
        raise ValueError(f"{path}: not a readable WAV file ({error})") from error
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz")
    if samples.dtype != np.int16:
        raise ValueError(f"{path}: samples are {samples.dtype}, expected 16-bit PCM (int16)")
    if samples.ndim != 1:
        raise ValueError(f"{path}: {samples.shape[1]} channels, expected mono")
    return samples


def fix_length(samples: np.ndarray, length=CLIP_SAMPLES) -> np.ndarray:
    """Trim the end off, or append zeros, so that exactly `length` samples remain."""
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


def load_clip(path) -> np.ndarray:
    """One clip as CLIP_SAMPLES float64 samples in [-1, 1)."""
    return fix_length(read_wav(path)) / INT16_SCALE


# ---------------------------------------------------------------- features, one stage per function

def hann_window(length=FRAME_LENGTH) -> np.ndarray:
    """Periodic Hann window  w[n] = 0.5 - 0.5 cos(2 pi n / N),  n = 0 .. N-1.

    "Periodic" (divide by N, not N-1) is the usual form for spectral analysis; it equals
    scipy.signal.get_window("hann", N).
    """
    n = np.arange(length)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def frame_signal(signal: np.ndarray, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH) -> np.ndarray:
    """Cut the last axis into overlapping windowed frames: (..., T) -> (..., n_frames, frame_length).

    frame[k, n] = signal[k * hop + n] * w[n],  k = 0 .. n_frames-1,  n_frames = 1 + (T - frame_length) // hop.
    No padding and no centring: the first frame starts at sample 0 and the last one ends inside the signal
    (16000 samples -> 98 frames; frame 97 covers samples 15520 .. 15999).
    """
    windows = np.lib.stride_tricks.sliding_window_view(signal, frame_length, axis=-1)
    return windows[..., ::hop_length, :] * hann_window(frame_length)


def power_spectrum(frames: np.ndarray, n_fft=N_FFT) -> np.ndarray:
    """Power of each frequency bin: (..., frame_length) -> (..., n_fft // 2 + 1).

    P[k] = | sum_{n=0}^{n_fft-1} x[n] exp(-2 pi i k n / n_fft) |^2,  k = 0 .. n_fft/2,
    where x is the frame zero-padded to n_fft points. Bin k is the frequency k * sample_rate / n_fft.
    """
    spectrum = scipy.fft.rfft(frames, n=n_fft, axis=-1)
    return spectrum.real ** 2 + spectrum.imag ** 2


def hz_to_mel(hz):
    """HTK mel scale: m = 2595 log10(1 + f / 700). Roughly linear below 1 kHz, logarithmic above."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=float) / 700.0)


def mel_to_hz(mel):
    """Inverse of hz_to_mel: f = 700 (10^(m / 2595) - 1)."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=float) / 2595.0) - 1.0)


def mel_filter_edges(n_mels=N_MELS, f_min=F_MIN, f_max=F_MAX) -> np.ndarray:
    """n_mels + 2 frequencies (Hz), equally spaced on the mel scale from f_min to f_max.

    Filter m rises from edges[m] to its peak at edges[m + 1] and falls back to zero at edges[m + 2], so
    neighbouring filters overlap by half and the centres edges[1 : n_mels + 1] are equally spaced in mel.
    """
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))


def triangular_filters(frequencies: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Weights (len(edges) - 2, len(frequencies)) of triangles with corners (left, 0), (centre, 1), (right, 0).

    weight_m(f) = max(0, min((f - left_m) / (centre_m - left_m), (right_m - f) / (right_m - centre_m)))
    with left_m, centre_m, right_m = edges[m], edges[m + 1], edges[m + 2].
    """
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (frequencies - left) / (centre - left)
    falling = (right - frequencies) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def mel_filterbank(n_fft=N_FFT, sample_rate=SAMPLE_RATE, n_mels=N_MELS, f_min=F_MIN, f_max=F_MAX) -> np.ndarray:
    """The (n_mels, n_fft // 2 + 1) matrix of triangular mel filters, evaluated at the FFT bin frequencies.

    Filters peak at 1 (HTK style, no area normalisation). With the defaults the narrowest filter (20-113 Hz)
    still spans three 31.25 Hz bins, so no filter is empty.
    """
    bin_frequencies = scipy.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    return triangular_filters(bin_frequencies, mel_filter_edges(n_mels, f_min, f_max))


def log_mel(power: np.ndarray, filterbank: np.ndarray, epsilon=LOG_EPSILON) -> np.ndarray:
    """Log energy in each mel band: (..., n_bins) -> (..., n_mels).

    E[m] = log( sum_k H[m, k] P[k] + epsilon ),  H = filterbank. The epsilon keeps silent frames finite.
    The sum over k is np.tensordot over the last axes: the same as `power @ filterbank.T`, but one BLAS call
    for a whole batch of clips instead of a slow loop over the frames (~30x faster on our machine).
    """
    return np.log(np.tensordot(power, filterbank, axes=(-1, -1)) + epsilon)


def mfcc(log_mel_energies: np.ndarray, n_coefficients=N_MFCC) -> np.ndarray:
    """Mel-frequency cepstral coefficients: the first n_coefficients of the orthonormal DCT-II over the bands.

    c[j] = s_j sum_{m=0}^{M-1} E[m] cos(pi j (2m + 1) / (2M)),  s_0 = sqrt(1/M),  s_j = sqrt(2/M) for j > 0,
    where M is the number of mel bands. c[0] tracks loudness, higher j ever finer detail of the spectral shape.
    """
    return scipy.fft.dct(log_mel_energies, type=2, norm="ortho", axis=-1)[..., :n_coefficients]


def speech_features(signals: np.ndarray) -> np.ndarray:
    """All stages in a row: float waveforms (..., 16000) -> float32 MFCCs (..., 98, 40)."""
    power = power_spectrum(frame_signal(signals))
    return mfcc(log_mel(power, mel_filterbank())).astype(np.float32)


# ---------------------------------------------------------------- finding the clips

def speech_dir_candidates() -> list:
    """Where the data is looked for, in order: $MINIMAL_DATA/speech_commands, then ~/.cache/minimal/speech_commands."""
    candidates = [Path.home() / ".cache" / "minimal" / "speech_commands"]
    if os.environ.get("MINIMAL_DATA"):
        candidates.insert(0, Path(os.environ["MINIMAL_DATA"]) / "speech_commands")
    return candidates


def has_speech_data(folder: Path) -> bool:
    """True when every one of the six word folders exists and holds at least one .wav file."""
    return all(any((folder / word).glob("*.wav")) for word in CLASSES)


def find_speech_dir(data_dir=None) -> Path:
    """The folder holding yes/ no/ up/ down/ left/ right/: `data_dir` if given, else the first candidate with them."""
    candidates = [Path(data_dir).expanduser()] if data_dir is not None else speech_dir_candidates()
    for folder in candidates:
        if has_speech_data(folder):
            return folder
    looked = ", ".join(str(folder) for folder in candidates)
    raise DataNotFoundError(f"Speech Commands not found: no folders {'/'.join(CLASSES)} with .wav files "
                            f"in {looked}; {DOWNLOAD_HINT}")


def list_clips(root: Path) -> list:
    """Relative paths 'word/file.wav' of every clip of the six words: words in CLASSES order, files sorted."""
    return [f"{word}/{path.name}" for word in CLASSES for path in sorted((root / word).glob("*.wav"))]


def compute_features(root: Path, clips: list, batch_size=128) -> np.ndarray:
    """MFCCs (len(clips), 98, 40) float32 of the given clips, a batch of clips at a time, with a progress bar."""
    features = np.empty((len(clips), N_FRAMES, N_MFCC), dtype=np.float32)
    with tqdm(total=len(clips), desc="Speech Commands MFCCs", unit="clip") as progress:
        for start in range(0, len(clips), batch_size):
            batch = clips[start:start + batch_size]
            signals = np.stack([load_clip(root / clip) for clip in batch])
            features[start:start + len(batch)] = speech_features(signals)
            progress.update(len(batch))
    return features


def params_fingerprint() -> str:
    """FEATURE_PARAMS as a canonical JSON string, the form stored in (and compared against) the cache."""
    return json.dumps(FEATURE_PARAMS, sort_keys=True)


def cached_features(root: Path, clips: list, cache_path: Path) -> np.ndarray:
    """Features from `cache_path` when it matches the clips and FEATURE_PARAMS; else compute and (re)write it."""
    if cache_path.exists():
        stored = load_npz(cache_path)
        if str(stored["feature_params"]) == params_fingerprint() and stored["clips"].tolist() == clips:
            return stored["x"]
    features = compute_features(root, clips)
    try:
        atomic_save_npz(cache_path, {"x": features, "clips": np.array(clips),
                                     "feature_params": np.array(params_fingerprint())}, compressed=False)
    except OSError as error:
        warnings.warn(f"could not write the feature cache {cache_path} ({error}); pass cache_dir= to put it elsewhere")
    return features


# ---------------------------------------------------------------- splitting by speaker

def speaker_of(clip: str) -> str:
    """The speaker id of a clip: the part of '<speakerhash>_nohash_<n>.wav' before '_nohash_'."""
    name = Path(clip).name
    if "_nohash_" not in name:
        raise ValueError(f"{clip}: file name is not '<speaker>_nohash_<n>.wav', so its speaker is unknown")
    return name.split("_nohash_")[0]


def official_splits(root: Path, clips: list) -> list:
    """Split of each clip from the data set's own validation_list.txt / testing_list.txt; unlisted clips train."""
    validation = set((root / "validation_list.txt").read_text().split())
    testing = set((root / "testing_list.txt").read_text().split())
    return ["val" if clip in validation else "test" if clip in testing else "train" for clip in clips]


def hashed_speaker_splits(clips: list, seed: int) -> list:
    """Split of each clip from an 80/10/10 division of the speakers, fixed by `seed`.

    The speakers are sorted by SHA-256("<seed>:<speaker>"), a shuffle that is the same on every machine and
    Python version; the first 80% of them train, the next 10% validate, the rest test. All clips of one
    speaker follow their speaker.
    """
    speakers = sorted({speaker_of(clip) for clip in clips},
                      key=lambda speaker: hashlib.sha256(f"{seed}:{speaker}".encode()).hexdigest())
    train_end, val_end = round(0.8 * len(speakers)), round(0.9 * len(speakers))
    split_of_speaker = {speaker: "train" if rank < train_end else "val" if rank < val_end else "test"
                        for rank, speaker in enumerate(speakers)}
    return [split_of_speaker[speaker_of(clip)] for clip in clips]


def check_speakers_disjoint(clips: list, splits: list):
    """Raise ValueError naming a speaker that appears in more than one split."""
    split_of_speaker = {}
    for clip, split in zip(clips, splits):
        first = split_of_speaker.setdefault(speaker_of(clip), split)
        if first != split:
            raise ValueError(f"speaker {speaker_of(clip)} is in both the {first} and the {split} split")


def assign_splits(root: Path, clips: list, seed: int) -> tuple:
    """(split name per clip, description of the rule used): the official lists if both exist, else the hash."""
    if (root / "validation_list.txt").exists() and (root / "testing_list.txt").exists():
        splits, rule = official_splits(root, clips), "official validation_list.txt / testing_list.txt"
    else:
        splits = hashed_speaker_splits(clips, seed)
        rule = f"speakers ranked by sha256(seed:speaker), 80/10/10, seed={seed}"
    check_speakers_disjoint(clips, splits)
    return splits, rule


# ---------------------------------------------------------------- the loader

def load_speech(data_dir=None, seed=0, cache=True, cache_dir=None) -> TaskData:
    """Speech Commands, six words, as MFCCs: x float32 (N, 98, 40) (time, feature), y int64 in 0..5.

    data_dir:  folder with the word folders; default: search speech_dir_candidates().
    seed:      fixes the speaker split when the official lists are absent (ignored otherwise).
    cache:     reuse / write the feature cache `mfcc_features.npz`.
    cache_dir: where that cache lives; default: the data folder itself.
    """
    root = find_speech_dir(data_dir)
    clips = list_clips(root)
    labels = np.array([CLASSES.index(clip.split("/")[0]) for clip in clips], dtype=np.int64)
    splits, rule = assign_splits(root, clips, seed)
    masks = {name: np.array(splits) == name for name in SPLIT_NAMES}
    cache_path = Path(cache_dir if cache_dir is not None else root) / CACHE_NAME
    features = cached_features(root, clips, cache_path) if cache else compute_features(root, clips)
    info = {
        "data_dir": str(root),
        "cache": str(cache_path) if cache else None,
        "split_rule": rule,
        "counts": {name: int(mask.sum()) for name, mask in masks.items()},
        "class_counts": {name: np.bincount(labels[mask], minlength=len(CLASSES)).tolist()
                         for name, mask in masks.items()},
        "speakers": {name: len({speaker_of(clip) for clip, split in zip(clips, splits) if split == name})
                     for name in SPLIT_NAMES},
        "feature_params": dict(FEATURE_PARAMS),
    }
    return TaskData(*(Split(features[masks[name]], labels[masks[name]]) for name in SPLIT_NAMES),
                    classes=CLASSES, source=f"Speech Commands (Warden 2018, CC BY 4.0) in {root}", info=info)
