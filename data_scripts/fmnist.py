"""Download the four Fashion-MNIST files, check them against hard-coded SHA-256 checksums, and save them atomically.

    python data_scripts/fmnist.py                 # into ~/.cache/minimal/fashion-mnist (where the loader looks)
    python data_scripts/fmnist.py --out DIR

On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` gives the same data without a download.

What we check: the SHA-256 of each file's *decompressed* content (the IDX bytes), not of the .gz file itself. The
Debian package re-wrote the gzip headers (file name and time stamp removed), so its .gz files differ from the
downloads byte for byte, yet both decompress to exactly the same data. For reference, the downloads themselves have

    file                          official MD5 (upstream README)     SHA-256 of the .gz
    train-images-idx3-ubyte.gz    8d4fb7e6c68d591d4c3dfef9ec88bf0d   3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84
    train-labels-idx1-ubyte.gz    25c81989df183df01b3e8a0aad5dffbe   a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845
    t10k-images-idx3-ubyte.gz     bef4ecab320f06d8554ea6380940ec79   346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073
    t10k-labels-idx1-ubyte.gz     bb300cfdad3c16e7a12a480ee83cd310   67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5

All four files are downloaded and checked before any is written: a bad download leaves the output folder untouched.
"""
import argparse
import gzip
import hashlib
import os
import sys
import urllib.request
import zlib

# Let `python data_scripts/fmnist.py` work from a checkout, without `pip install -e .`.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from minimal.data.fmnist import FILE_NAMES  # noqa: E402
from minimal.io import atomic_write_bytes  # noqa: E402

MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",   # the AWS mirror of the official README
)

# SHA-256 of the decompressed IDX content of each file (same for the official downloads and Debian's copies).
CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
assert set(CONTENT_SHA256) == set(FILE_NAMES.values())

DEFAULT_OUT = os.path.join("~", ".cache", "minimal", "fashion-mnist")


class ChecksumError(ValueError):
    """A downloaded file is not the official one (damaged, truncated, or a different file)."""


def verify(name, payload):
    """Raise ChecksumError unless `payload` (the bytes of a .gz file) decompresses to the official content of `name`."""
    if name not in CONTENT_SHA256:
        raise ValueError(f"unknown file {name!r}; expected one of {', '.join(CONTENT_SHA256)}")
    try:
        content = gzip.decompress(payload)
    except (EOFError, OSError, zlib.error) as error:
        raise ChecksumError(f"{name}: not a valid gzip file ({error})") from error
    digest = hashlib.sha256(content).hexdigest()
    if digest != CONTENT_SHA256[name]:
        raise ChecksumError(f"{name}: SHA-256 of its content is {digest}, expected {CONTENT_SHA256[name]}")


def verify_and_save(payloads, out_dir):
    """Check every {file name: bytes} in `payloads`, then write them all atomically into `out_dir`.

    Nothing is written (and nothing existing is deleted) unless every file passes. Returns the written paths.
    """
    for name, payload in payloads.items():
        verify(name, payload)
    paths = []
    for name, payload in payloads.items():
        path = os.path.join(out_dir, name)
        atomic_write_bytes(path, payload)
        paths.append(path)
    return paths


def download(name, timeout=60):
    """The bytes of file `name` from the first mirror that answers (no checking here: see `verify`)."""
    errors = []
    for mirror in MIRRORS:
        try:
            with urllib.request.urlopen(mirror + name, timeout=timeout) as response:
                return response.read()
        except OSError as error:   # URLError, HTTPError and timeouts are all OSErrors
            errors.append(f"{mirror + name}: {error}")
    raise ConnectionError(f"could not download {name} ({'; '.join(errors)})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Download Fashion-MNIST (4 files, ~30 MB), verify SHA-256 checksums, save atomically.")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"folder to write the four .gz files into (default: {DEFAULT_OUT}, "
                             "where minimal.data.fmnist looks)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = os.path.expanduser(args.out)
    try:
        payloads = {}
        for name in FILE_NAMES.values():
            print(f"downloading {name} ...", flush=True)
            payloads[name] = download(name)
        paths = verify_and_save(payloads, out_dir)
    except (ChecksumError, ConnectionError) as error:
        print(f"error: {error}; nothing was written to {out_dir}", file=sys.stderr)
        return 1
    print(f"verified and saved {len(paths)} files in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
