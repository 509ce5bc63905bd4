"""Tests of minimal/data/speech.py (MFCC pipeline, WAV reading, speaker split, loader, cache) and its data script."""
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from scipy.io import wavfile

from minimal.data import speech
from minimal.data.common import DataNotFoundError

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = Path(os.environ.get("MINIMAL_SPEECH_SAMPLE", REPO.parent / "shared" / "data" / "speech_commands"))
needs_sample = pytest.mark.skipif(not speech.has_speech_data(SAMPLE_DIR),
                                  reason=f"Speech Commands sample not found at {SAMPLE_DIR}")


def tone(frequency, seconds=1.0, amplitude=0.5):
    """A pure sine of the given frequency at 16 kHz."""
    t = np.arange(int(seconds * speech.SAMPLE_RATE)) / speech.SAMPLE_RATE
    return amplitude * np.sin(2 * np.pi * frequency * t)


def write_wav(path, samples, rate=speech.SAMPLE_RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, samples)
    return path


def make_fake_dataset(root, speakers=("aaaa0001", "bbbb0002", "cccc0003"), rng=None):
    """One short random int16 clip per (word, speaker) under root/<word>/<speaker>_nohash_0.wav."""
    rng = rng or np.random.default_rng(0)
    for word in speech.CLASSES:
        for speaker in speakers:
            samples = rng.integers(-3000, 3000, size=4000, dtype=np.int16)
            write_wav(root / word / f"{speaker}_nohash_0.wav", samples)
    return root


# ---------------------------------------------------------------- framing and spectrum

def test_hann_window_is_the_periodic_hann():
    np.testing.assert_allclose(speech.hann_window(480), scipy.signal.get_window("hann", 480), atol=1e-12)


def test_frame_signal_gives_98_windowed_frames_of_480_with_hop_160():
    signal = np.random.default_rng(0).normal(size=16000)
    frames = speech.frame_signal(signal)
    assert frames.shape == (98, 480)
    window = speech.hann_window(480)
    for k in (0, 1, 50, 97):
        np.testing.assert_allclose(frames[k], signal[160 * k:160 * k + 480] * window)


def test_frame_signal_works_on_a_batch_of_clips():
    signals = np.random.default_rng(1).normal(size=(3, 16000))
    frames = speech.frame_signal(signals)
    assert frames.shape == (3, 98, 480)
    np.testing.assert_allclose(frames[2], speech.frame_signal(signals[2]))


@pytest.mark.parametrize("frequency, expected_bin", [(1000.0, 32), (2500.0, 80)])
def test_power_spectrum_peaks_at_the_tone_bin(frequency, expected_bin):
    power = speech.power_spectrum(speech.frame_signal(tone(frequency)))
    assert power.shape == (98, 257)
    assert np.all(np.argmax(power, axis=-1) == expected_bin)   # bin k is k * 16000 / 512 Hz


# ---------------------------------------------------------------- mel filters

def test_mel_scale_is_the_htk_formula():
    hz = np.array([0.0, 20.0, 700.0, 1000.0, 8000.0])
    np.testing.assert_allclose(speech.hz_to_mel(hz), 2595 * np.log10(1 + hz / 700))
    np.testing.assert_allclose(speech.mel_to_hz(speech.hz_to_mel(hz)), hz, atol=1e-9)


def test_filter_edges_span_20_to_8000_hz_equally_spaced_in_mel():
    edges = speech.mel_filter_edges()
    assert len(edges) == 42
    np.testing.assert_allclose([edges[0], edges[-1]], [20.0, 8000.0])
    mel_steps = np.diff(2595 * np.log10(1 + edges / 700))
    assert np.all(mel_steps > 0)
    np.testing.assert_allclose(mel_steps, mel_steps[0])


def test_filters_are_triangles_with_peak_one_at_their_centres():
    edges = speech.mel_filter_edges()
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    for m in range(40):
        rising = speech.triangular_filters(np.linspace(left[m], centre[m], 11), edges)[m]
        falling = speech.triangular_filters(np.linspace(centre[m], right[m], 11), edges)[m]
        np.testing.assert_allclose(rising, np.linspace(0, 1, 11), atol=1e-12)    # straight up to 1 at the centre
        np.testing.assert_allclose(falling, np.linspace(1, 0, 11), atol=1e-12)   # straight down to 0
    grid = np.linspace(0, 8000, 20001)
    filters = speech.triangular_filters(grid, edges)
    outside = (grid[None, :] < left[:, None]) | (grid[None, :] > right[:, None])
    assert np.all(filters[outside] == 0) and filters.max() <= 1


def test_mel_filterbank_samples_the_triangles_at_the_fft_bins():
    filterbank = speech.mel_filterbank()
    assert filterbank.shape == (40, 257)
    bins = np.arange(257) * 16000 / 512
    np.testing.assert_allclose(filterbank, speech.triangular_filters(bins, speech.mel_filter_edges()))
    assert np.all(filterbank.max(axis=1) > 0.5)    # no filter falls between bins


@pytest.mark.parametrize("band", [5, 15, 25, 35])
def test_log_mel_of_a_tone_is_largest_in_the_band_centred_on_it(band):
    frequency = speech.mel_filter_edges()[band + 1]
    power = speech.power_spectrum(speech.frame_signal(tone(frequency)))
    energies = speech.log_mel(power, speech.mel_filterbank())
    assert energies.shape == (98, 40)
    assert np.all(np.argmax(energies, axis=-1) == band)


def test_log_mel_equals_the_weighted_sum_formula():
    power = np.random.default_rng(4).random((2, 3, 257))
    filterbank = speech.mel_filterbank()
    expected = np.empty((2, 3, 40))
    for clip in range(2):
        for frame in range(3):
            for band in range(40):
                expected[clip, frame, band] = np.log(np.sum(filterbank[band] * power[clip, frame]) + 1e-6)
    np.testing.assert_allclose(speech.log_mel(power, filterbank, epsilon=1e-6), expected, rtol=1e-12)


def test_log_mel_of_silence_is_log_epsilon():
    energies = speech.log_mel(np.zeros((2, 257)), speech.mel_filterbank())
    np.testing.assert_allclose(energies, np.log(speech.LOG_EPSILON))


# ---------------------------------------------------------------- DCT and the whole pipeline

def direct_dct_ii(values, n_coefficients):
    """Orthonormal DCT-II of each row, written as the plain cosine sum."""
    n_rows, n_bands = values.shape
    result = np.zeros((n_rows, n_coefficients))
    for row in range(n_rows):
        for j in range(n_coefficients):
            total = 0.0
            for m in range(n_bands):
                total += values[row, m] * np.cos(np.pi * j * (2 * m + 1) / (2 * n_bands))
            scale = np.sqrt(1 / n_bands) if j == 0 else np.sqrt(2 / n_bands)
            result[row, j] = scale * total
    return result


def test_mfcc_equals_the_direct_cosine_sum():
    values = np.random.default_rng(2).normal(size=(3, 8))
    np.testing.assert_allclose(speech.mfcc(values, n_coefficients=5), direct_dct_ii(values, 5), atol=1e-12)
    np.testing.assert_allclose(speech.mfcc(values, n_coefficients=8), direct_dct_ii(values, 8), atol=1e-12)


def test_speech_features_shape_dtype_and_batch_consistency():
    signals = np.stack([tone(440.0), tone(3000.0, amplitude=0.1), np.zeros(16000)])
    features = speech.speech_features(signals)
    assert features.shape == (3, 98, 40) and features.dtype == np.float32
    assert np.all(np.isfinite(features))
    np.testing.assert_allclose(features[1], speech.speech_features(signals[1]), rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------- reading WAV files

def test_short_clip_is_padded_with_zeros_at_the_end(tmp_path):
    samples = np.arange(1, 8001, dtype=np.int16)
    clip = speech.load_clip(write_wav(tmp_path / "short.wav", samples))
    assert clip.shape == (16000,)
    np.testing.assert_allclose(clip[:8000], samples / 32768)
    assert np.all(clip[8000:] == 0)


def test_long_clip_is_trimmed_to_the_first_second(tmp_path):
    samples = np.random.default_rng(3).integers(-20000, 20000, size=20000, dtype=np.int16)
    clip = speech.load_clip(write_wav(tmp_path / "long.wav", samples))
    np.testing.assert_allclose(clip, samples[:16000] / 32768)


@pytest.mark.parametrize("rate, samples, message", [
    (8000, np.zeros(8000, dtype=np.int16), "sample rate 8000 Hz, expected 16000"),
    (16000, np.zeros(16000, dtype=np.float32), "expected 16-bit PCM"),
    (16000, np.zeros((16000, 2), dtype=np.int16), "expected mono"),
])
def test_wrong_wav_format_is_refused_naming_the_file(tmp_path, rate, samples, message):
    path = write_wav(tmp_path / "odd.wav", samples, rate=rate)
    with pytest.raises(ValueError, match=message) as error:
        speech.read_wav(path)
    assert "odd.wav" in str(error.value)


def test_unreadable_wav_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match="broken.wav"):
        speech.read_wav(path)


# ---------------------------------------------------------------- speaker split

def fake_clips(n_speakers=20, clips_per_speaker=3):
    return [f"{speech.CLASSES[i % 6]}/{speaker:08x}_nohash_{i}.wav"
            for speaker in range(n_speakers) for i in range(clips_per_speaker)]


def speakers_by_split(clips, splits):
    return {name: {speech.speaker_of(c) for c, s in zip(clips, splits) if s == name} for name in speech.SPLIT_NAMES}


def test_speaker_of_reads_the_prefix_and_refuses_other_names():
    assert speech.speaker_of("yes/0a7c2a8d_nohash_3.wav") == "0a7c2a8d"
    with pytest.raises(ValueError, match="nohash"):
        speech.speaker_of("yes/recording.wav")


def test_hashed_split_keeps_speakers_apart_80_10_10():
    clips = fake_clips()
    splits = speech.hashed_speaker_splits(clips, seed=0)
    groups = speakers_by_split(clips, splits)
    assert [len(groups[name]) for name in speech.SPLIT_NAMES] == [16, 2, 2]
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    speech.check_speakers_disjoint(clips, splits)


def test_hashed_split_is_deterministic_and_depends_on_the_seed():
    clips = fake_clips()
    assert speech.hashed_speaker_splits(clips, seed=0) == speech.hashed_speaker_splits(clips, seed=0)
    assert any(speech.hashed_speaker_splits(clips, seed=s) != speech.hashed_speaker_splits(clips, seed=0)
               for s in (1, 2, 3))


def test_official_lists_are_used_when_present(tmp_path):
    clips = ["yes/aaaa0001_nohash_0.wav", "no/aaaa0001_nohash_0.wav",
             "yes/bbbb0002_nohash_0.wav", "up/cccc0003_nohash_1.wav"]
    (tmp_path / "validation_list.txt").write_text("yes/bbbb0002_nohash_0.wav\nstop/bbbb0002_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("up/cccc0003_nohash_1.wav\n")
    splits, rule = speech.assign_splits(tmp_path, clips, seed=0)
    assert splits == ["train", "train", "val", "test"]
    assert "official" in rule


def test_official_lists_that_mix_a_speaker_are_refused(tmp_path):
    clips = ["yes/aaaa0001_nohash_0.wav", "no/aaaa0001_nohash_0.wav"]
    (tmp_path / "validation_list.txt").write_text("yes/aaaa0001_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("")
    with pytest.raises(ValueError, match="speaker aaaa0001"):
        speech.assign_splits(tmp_path, clips, seed=0)


# ---------------------------------------------------------------- finding the data

def test_missing_data_raises_one_line_naming_the_script(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMAL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataNotFoundError) as error:
        speech.load_speech()
    message = str(error.value)
    assert "\n" not in message
    assert "python data_scripts/speech_commands.py" in message
    assert str(tmp_path / "data" / "speech_commands") in message
    assert str(tmp_path / "home" / ".cache" / "minimal" / "speech_commands") in message


def test_explicit_folder_without_data_is_not_replaced_by_another(tmp_path):
    with pytest.raises(DataNotFoundError, match="nowhere"):
        speech.find_speech_dir(tmp_path / "nowhere")


def test_minimal_data_environment_variable_is_searched(tmp_path, monkeypatch):
    make_fake_dataset(tmp_path / "speech_commands")
    monkeypatch.setenv("MINIMAL_DATA", str(tmp_path))
    assert speech.find_speech_dir() == tmp_path / "speech_commands"


# ---------------------------------------------------------------- the loader and its cache

def total_clips(task):
    return len(task.train) + len(task.val) + len(task.test)


def test_cache_is_recomputed_when_the_parameters_or_the_clips_change(tmp_path, monkeypatch):
    root = make_fake_dataset(tmp_path / "speech_commands")
    first = speech.load_speech(root)
    assert (root / speech.CACHE_NAME).exists() and total_clips(first) == 18
    calls = []
    original = speech.compute_features

    def counting_compute_features(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(speech, "compute_features", counting_compute_features)
    speech.load_speech(root)
    assert len(calls) == 0                                   # cache current: reused
    monkeypatch.setattr(speech, "FEATURE_PARAMS", {**speech.FEATURE_PARAMS, "version": -1})
    second = speech.load_speech(root)
    assert len(calls) == 1                                   # other parameters: recomputed
    np.testing.assert_array_equal(second.train.x, first.train.x)
    write_wav(root / "yes" / "dddd0004_nohash_0.wav", np.zeros(100, dtype=np.int16))
    third = speech.load_speech(root)
    assert len(calls) == 2 and total_clips(third) == 19      # one clip more: recomputed


@needs_sample
def test_real_sample_loads_and_the_second_load_uses_the_cache(tmp_path, monkeypatch):
    task = speech.load_speech(SAMPLE_DIR, seed=0, cache_dir=tmp_path)
    splits = (task.train, task.val, task.test)
    assert sum(len(split) for split in splits) == 60
    for split in splits:
        assert split.x.shape[1:] == (98, 40) and split.x.dtype == np.float32
        assert np.all(np.isfinite(split.x))
        assert split.y.dtype == np.int64 and set(split.y) <= set(range(6))
    assert np.bincount(np.concatenate([split.y for split in splits]), minlength=6).tolist() == [10] * 6
    assert task.classes == ("yes", "no", "up", "down", "left", "right")
    assert task.info["counts"] == {"train": len(task.train), "val": len(task.val), "test": len(task.test)}
    assert (tmp_path / speech.CACHE_NAME).exists()

    def must_not_run(*args, **kwargs):
        raise AssertionError("features were recomputed although the cache is current")

    monkeypatch.setattr(speech, "compute_features", must_not_run)
    again = speech.load_speech(SAMPLE_DIR, seed=0, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.train.x, task.train.x)
    np.testing.assert_array_equal(again.test.y, task.test.y)


@needs_sample
def test_real_sample_split_keeps_speakers_apart():
    clips = speech.list_clips(SAMPLE_DIR)
    splits, _ = speech.assign_splits(SAMPLE_DIR, clips, seed=0)
    groups = speakers_by_split(clips, splits)
    assert sum(len(group) for group in groups.values()) == len(set().union(*groups.values())) == 20
    assert all(groups.values())


# ---------------------------------------------------------------- the data script

def load_script():
    path = REPO / "data_scripts" / "speech_commands.py"
    spec = importlib.util.spec_from_file_location("speech_commands_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_to_tar(tar, name, payload):
    member = tarfile.TarInfo(name)
    member.size = len(payload)
    tar.addfile(member, io.BytesIO(payload))


def wav_bytes(n_samples=1600):
    buffer = io.BytesIO()
    wavfile.write(buffer, 16000, np.zeros(n_samples, dtype=np.int16))
    return buffer.getvalue()


def test_script_help_works():
    result = subprocess.run([sys.executable, str(REPO / "data_scripts" / "speech_commands.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--archive" in result.stdout and "--out" in result.stdout


def test_script_extracts_only_the_six_words_lists_and_license(tmp_path):
    script = load_script()
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for word in speech.CLASSES + ("stop", "_background_noise_"):
            add_to_tar(tar, f"./{word}/aaaa0001_nohash_0.wav", wav_bytes())
        for name in ("validation_list.txt", "testing_list.txt", "LICENSE", "README.md"):
            add_to_tar(tar, f"./{name}", b"text\n")
        add_to_tar(tar, "./yes/../../escape.wav", wav_bytes())
    out = tmp_path / "cache" / "speech_commands"
    script.extract_subset(archive, out)
    kept = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    expected = sorted([f"{word}/aaaa0001_nohash_0.wav" for word in speech.CLASSES]
                      + ["validation_list.txt", "testing_list.txt", "LICENSE"])
    assert kept == expected
    assert not (tmp_path / "escape.wav").exists()
    assert [path.name for path in out.parent.iterdir()] == ["speech_commands"]   # no temporary folder left


def test_script_refuses_an_archive_of_the_wrong_size(tmp_path):
    script = load_script()
    archive = tmp_path / "speech_commands_v0.02.tar.gz"
    archive.write_bytes(b"too short")
    with pytest.raises(ValueError, match="expected 2428923189"):
        script.verify_archive(archive)
