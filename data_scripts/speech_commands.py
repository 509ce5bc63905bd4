"""Download Speech Commands v0.02, keep the six words the paper uses, and precompute their MFCC features.

    python data_scripts/speech_commands.py                     # ~2.4 GB download into ~/.cache/minimal/speech_commands
    python data_scripts/speech_commands.py --archive speech_commands_v0.02.tar.gz   # use an archive you already have
    python data_scripts/speech_commands.py --out /data/speech_commands --force      # elsewhere / replace

Steps: download to a temporary file -> check its size and SHA-256 -> extract yes/ no/ up/ down/ left/ right/,
validation_list.txt, testing_list.txt and LICENSE into a temporary folder -> rename that folder to the output
folder (so a half-extracted data set is never seen) -> compute the feature cache with minimal.data.speech.

The data set is by Pete Warden (Google), "Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition",
arXiv:1804.03209, licensed CC BY 4.0; its LICENSE file is kept next to the clips.
"""
import argparse
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # lets the script run from a checkout, uninstalled
from minimal.data.speech import CLASSES, has_speech_data, load_speech, speech_dir_candidates  # noqa: E402
from minimal.io import sha256_of_file  # noqa: E402

URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
# What is verified: the archive's exact size in bytes and its SHA-256. Neither value comes from a download of
# ours (this script was written without internet access). The SHA-256 is the one torchaudio's SPEECHCOMMANDS
# loader checks (its _CHECKSUMS table); the same hash and the size appear in TensorFlow Datasets' checksums for
# speech_commands as quoted by other public projects, and the size in ESPnet's speechcommands recipe.
# Plain http is fine: the hash, not the transport, vouches for the bytes.
ARCHIVE_SIZE = 2_428_923_189
ARCHIVE_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"
KEPT_FILES = ("validation_list.txt", "testing_list.txt", "LICENSE")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=speech_dir_candidates()[0],
                        help="output folder (default: %(default)s; $MINIMAL_DATA/speech_commands when set)")
    parser.add_argument("--archive", type=Path,
                        help="use this already downloaded speech_commands_v0.02.tar.gz instead of downloading")
    parser.add_argument("--url", default=URL, help="where to download the archive from (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-features", action="store_true", help="skip precomputing the MFCC feature cache")
    return parser.parse_args(argv)


def download(url: str, destination: Path):
    """Stream `url` into `destination` with a progress bar."""
    with urllib.request.urlopen(url) as response, open(destination, "wb") as file:
        size = int(response.headers.get("Content-Length", 0)) or None
        with tqdm(total=size, unit="B", unit_scale=True, desc="download") as progress:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                file.write(chunk)
                progress.update(len(chunk))


def verify_archive(path: Path, size=ARCHIVE_SIZE, sha256=ARCHIVE_SHA256):
    """Raise ValueError unless the file has exactly the expected size and SHA-256."""
    actual_size = path.stat().st_size
    if actual_size != size:
        raise ValueError(f"{path} has {actual_size} bytes, expected {size} (incomplete or wrong download?)")
    print(f"checking the SHA-256 of {path} ...")
    actual_sha256 = sha256_of_file(path)
    if actual_sha256 != sha256:
        raise ValueError(f"{path} has SHA-256 {actual_sha256}, expected {sha256} (corrupt or wrong file)")


def kept_name(member_name: str):
    """The relative path to extract an archive member to, or None to skip it.

    Kept: 'word/<file>.wav' for the six words, and the files in KEPT_FILES. The word must be one of CLASSES and
    the file name may not contain '/', so no member can land outside the output folder.
    """
    name = member_name.removeprefix("./")
    if name in KEPT_FILES:
        return name
    word, _, file_name = name.partition("/")
    if word in CLASSES and file_name.endswith(".wav") and "/" not in file_name:
        return name
    return None


def extract_subset(archive: Path, out: Path):
    """Extract the kept members of `archive` into a temporary folder next to `out`, then rename it to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tqdm(tar, desc="extract", unit=" files"):
                name = kept_name(member.name)
                if name is None or not member.isfile():
                    continue
                target = staging / name
                target.parent.mkdir(exist_ok=True)
                with tar.extractfile(member) as source:
                    target.write_bytes(source.read())
        if not has_speech_data(staging):
            raise ValueError(f"{archive} lacks wav files for some of the words {', '.join(CLASSES)}")
        if out.exists():
            shutil.rmtree(out)   # only reached with --force, or for an empty folder (see fetch_and_extract)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def fetch_and_extract(args, out: Path):
    """Get the archive (download or --archive), verify it, and extract the six words into `out`."""
    if out.exists() and any(out.iterdir()) and not has_speech_data(out):
        raise ValueError(f"{out} exists and is not a Speech Commands folder; empty it or choose another --out")
    if args.archive is not None:
        verify_archive(args.archive)
        extract_subset(args.archive, out)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".download-") as folder:
        archive = Path(folder) / "speech_commands_v0.02.tar.gz"
        print(f"downloading {args.url}")
        download(args.url, archive)
        verify_archive(archive)
        extract_subset(archive, out)


def main(argv=None):
    args = parse_args(argv)
    out = args.out.expanduser()
    try:
        if has_speech_data(out) and not args.force:
            print(f"{out} already holds the data; skipping the download (--force replaces it)")
        else:
            fetch_and_extract(args, out)
        if not args.no_features:
            task = load_speech(out)
            print(f"features cached in {task.info['cache']}")
            print(f"clips per split {task.info['counts']}, split: {task.info['split_rule']}")
    except (OSError, ValueError) as error:
        sys.exit(f"speech_commands.py: {error}")


if __name__ == "__main__":
    main()
