"""Download CIFAR-10 (binary version), check it, and save its six batch files atomically.

    python data_scripts/cifar10.py                                     # into ~/.cache/minimal/cifar-10-batches-bin
    python data_scripts/cifar10.py --out DIR
    python data_scripts/cifar10.py --archive cifar-10-binary.tar.gz    # use an archive you already have

Steps: download the archive to a temporary file -> check its size, MD5 and SHA-256 -> read the six batch files
out of it (by name, so nothing is ever extracted to a path the archive chooses) and check that each is 10 000
whole records -> write them into the output folder, each atomically, plus cifar10.json with their SHA-256 sums.
Nothing is written unless every check passes.

The binary version is used because the "python version" of CIFAR-10 is made of pickles, and we never load those.
The data set is by Alex Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009),
https://www.cs.toronto.edu/~kriz/cifar.html.
"""
import argparse
import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.request

from tqdm import tqdm

# Let `python data_scripts/cifar10.py` work from a checkout, without `pip install -e .`.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from minimal.data.cifar10 import FOLDER_NAME, IMAGES_PER_FILE, TEST_FILE, TRAIN_FILES, parse_records  # noqa: E402
from minimal.data.common import DataNotFoundError  # noqa: E402
from minimal.io import atomic_save_json, atomic_write_bytes  # noqa: E402

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
# None of these values comes from a download of ours (this script was written without internet access). The MD5
# is the one published on the CIFAR page; the size and SHA-256 are those other public projects record for the
# same archive (e.g. in TensorFlow Datasets' checksums for cifar10).
ARCHIVE_SIZE = 170_052_171
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
BATCH_FILES = TRAIN_FILES + (TEST_FILE,)
SUMS_FILE = "cifar10.json"

DEFAULT_OUT = os.path.join("~", ".cache", "minimal", FOLDER_NAME)


class ChecksumError(ValueError):
    """The archive or a file in it is not the official one (damaged, truncated, or a different file)."""


def file_digests(path, chunk_size=1 << 20):
    """(size in bytes, MD5, SHA-256) of a file, read in chunks."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            md5.update(chunk)
            sha256.update(chunk)
    return os.path.getsize(path), md5.hexdigest(), sha256.hexdigest()


def verify_archive(path):
    """Raise ChecksumError unless the archive has exactly the official size, MD5 and SHA-256."""
    size, md5, sha256 = file_digests(path)
    for what, found, expected in (("size", size, ARCHIVE_SIZE), ("MD5", md5, ARCHIVE_MD5),
                                  ("SHA-256", sha256, ARCHIVE_SHA256)):
        if found != expected:
            raise ChecksumError(f"{path}: {what} is {found}, expected {expected} (incomplete or wrong download?)")


def read_batch_files(archive):
    """{file name: bytes} of the six batch files in the archive, each checked to be IMAGES_PER_FILE records."""
    wanted = {f"{FOLDER_NAME}/{name}": name for name in BATCH_FILES}
    payloads = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name in wanted and member.isfile():
                with tar.extractfile(member) as source:
                    payloads[wanted[member.name]] = check_batch(source.read(), member.name)
    missing = [name for name in wanted if wanted[name] not in payloads]
    if missing:
        raise ChecksumError(f"{archive} has no {', '.join(missing)}")
    return payloads


def check_batch(payload, name):
    """`payload` if it is IMAGES_PER_FILE whole records with labels 0..9, else raise ChecksumError."""
    try:
        _, labels = parse_records(payload, name)
    except DataNotFoundError as error:
        raise ChecksumError(str(error)) from None
    if len(labels) != IMAGES_PER_FILE:
        raise ChecksumError(f"{name} holds {len(labels)} images, expected {IMAGES_PER_FILE}")
    return payload


def fetch_and_verify(archive=None, url=URL):
    """The verified batch files {name: bytes} of `archive`, or of a fresh download from `url` when it is None."""
    if archive is not None:
        verify_archive(archive)
        return read_batch_files(archive)
    with tempfile.TemporaryDirectory(prefix="cifar10-download-") as folder:
        path = os.path.join(folder, "cifar-10-binary.tar.gz")
        print(f"downloading {url}", flush=True)
        download(url, path)
        return fetch_and_verify(path)


def save(payloads, out_dir):
    """Write each file atomically into `out_dir`, then SUMS_FILE: the archive's checksums and each file's SHA-256."""
    for name, payload in payloads.items():
        atomic_write_bytes(os.path.join(out_dir, name), payload)
    sums = {"source": URL, "archive_md5": ARCHIVE_MD5, "archive_sha256": ARCHIVE_SHA256,
            "sha256": {name: hashlib.sha256(payload).hexdigest() for name, payload in payloads.items()}}
    atomic_save_json(os.path.join(out_dir, SUMS_FILE), sums)


def download(url, destination):
    """Stream `url` into the file `destination` with a progress bar."""
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as f:
        size = int(response.headers.get("Content-Length", 0)) or None
        with tqdm(total=size, unit="B", unit_scale=True, desc="download") as progress:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
                progress.update(len(chunk))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Download CIFAR-10 (binary version, 163 MB), verify its checksums, save the six batch files.")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"folder to write the six .bin files into (default: {DEFAULT_OUT}, "
                             "where minimal.data.cifar10 looks)")
    parser.add_argument("--archive", help="use this cifar-10-binary.tar.gz instead of downloading it")
    parser.add_argument("--url", default=URL, help="where to download the archive from (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = os.path.expanduser(args.out)
    try:
        payloads = fetch_and_verify(args.archive, args.url)
    except (ChecksumError, OSError, tarfile.TarError) as error:   # OSError: also a failed download
        print(f"error: {error}; nothing was written to {out_dir}", file=sys.stderr)
        return 1
    try:
        save(payloads, out_dir)
    except OSError as error:
        print(f"error: cannot write into {out_dir} ({error})", file=sys.stderr)
        return 1
    print(f"verified and saved {len(payloads)} files and {SUMS_FILE} in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
