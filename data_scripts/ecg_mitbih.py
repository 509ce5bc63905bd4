"""Build the ECG beat set (MIT-BIH Arrhythmia Database, 4 classes) that `minimal.data.ecg.load_ecg` reads.

    python data_scripts/ecg_mitbih.py                   # writes minimal/data/embedded/ecg_mitbih.{npz,json}
    python data_scripts/ecg_mitbih.py --raw-dir DIR --out /tmp/ecg.npz --seed 0

Raw records (NNN.hea, NNN.dat, NNN.atr for the 48 records) are taken from --raw-dir, else from $MINIMAL_MITDB, else
from the project's shared folder `../shared/data/mitdb`, else downloaded from PhysioNet into ~/.cache/minimal/mitdb.
Every raw file is checked against the SHA-256 list below before use (header files are hashed with line endings
normalised to LF, since PhysioNet serves them with CRLF and some copies use LF).

Preprocessing (the Bauer et al. 2019 setup used by the paper):
1. Signal: both leads in the record's order, in physical units: (digital - baseline) / gain, mV. Channel 0 is MLII
   and channel 1 is V1 (or V2, V4, V5) in 45 records; 102 and 104 have V5, V2 and 114 has V5, MLII.
2. Resampling 360 Hz -> 180 Hz with `scipy.signal.resample_poly(signal, 1, 2)` (polyphase FIR low-pass at the new
   Nyquist frequency, Kaiser window, no delay), applied to the whole record.
3. Beats: every reference annotation of type N, L, R or V (labels 0, 1, 2, 3). The R-peak sample s at 360 Hz is
   sample s // 2 at 180 Hz; the window is the 100 samples [s // 2 - 50, s // 2 + 50), so the peak sits at index 50.
   Beats whose window would cross the start or end of the record are dropped.
4. Normalisation, per beat and per channel: subtract the window's own mean (removes the baseline offset and slow
   wander), divide by the standard deviation of that channel over the whole resampled record (puts patients and
   leads on one scale, but keeps a beat's amplitude relative to the patient's usual beats, and never blows up a
   flat, noisy window the way a per-beat standard deviation would).
5. Class balance: every class is subsampled (without replacement, fixed seed) to the size of the rarest class.
6. Storage: int16 with scale 1/256 (value = stored / 256). In every record 1/256 of the channel's standard deviation
   (at most 1.14 mV) is smaller than one ADC step (1/200 mV), so the quantisation loses nothing the recording had.
The .npz holds x (beats, 100, 2) int16, x_scale, y (int8 label), record (int16 record number) and peak_sample
(int32 R-peak sample at 360 Hz, to find the beat in the raw record); the .json beside it holds its SHA-256, the
class counts before and after balancing, and this provenance. How the beats become the network's input currents
(the ecg task's delay line, 2 leads -> 8 channels) is done when they are loaded, in minimal/data/ecg.py, so this
file stays the plain beats.

Data: MIT-BIH Arrhythmia Database v1.0.0 (PhysioNet), Open Data Commons Attribution License v1.0. Moody GB, Mark RG.
The impact of the MIT-BIH Arrhythmia Database. IEEE Eng in Med and Biol 20(3):45-50 (2001). Goldberger AL et al.
PhysioBank, PhysioToolkit, and PhysioNet. Circulation 101(23):e215-e220 (2000).
"""
import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # lets `python data_scripts/ecg_mitbih.py` import `minimal` without installing it

from minimal.data.common import DataNotFoundError  # noqa: E402
from minimal.data.ecg import CLASSES, EMBEDDED_PATH, balance_classes, class_counts  # noqa: E402
from minimal.data.wfdb import read_annotations, read_record  # noqa: E402
from minimal.io import atomic_save_json, atomic_save_npz, atomic_write_bytes, sha256_of_file  # noqa: E402

PHYSIONET_URL = "https://physionet.org/files/mitdb/1.0.0/"
CACHE_DIR = Path.home() / ".cache" / "minimal" / "mitdb"
SHARED_DIR = REPO_ROOT.parent / "shared" / "data" / "mitdb"
SOURCE_FS = 360
DOWNSAMPLE = 2  # 360 Hz -> 180 Hz
HALF_WINDOW = 50  # the window is 2 * HALF_WINDOW = 100 samples at 180 Hz
X_SCALE = 1 / 256

# SHA-256 of each raw file (header files hashed with LF line endings), file name -> digest.
RAW_SHA256 = {name: digest for digest, name in (line.split() for line in """
    8d8a5349fb16638ebbf649f1779d12e96d91b736b2aafe59db43719ae583d471  100.atr
    b2ea3c250e56e48f4b7b90697832b8ecd1afa1e0bb31f2dcfea4ed6e1075a639  100.dat
    8a061f897ee046d8e5db731015e5d4ab02214d4bbbb528f1d095dd04410894b0  100.hea
    441cdd6486cfdf4c53e344d1048ab81296773e7058d53069022adc68543a0663  101.atr
    698d1ea6f472d23ca50317c72c96cda2698badd8578220ed0380cdf241e39006  101.dat
    b1ae53d0b43d9180c88e5e7a3f546f0581fdbcd7dba4f4ae6ef577dca9f330da  101.hea
    24e29031c081806ff6d4ec20fb386e28d8f885f0dca5f74dc29c881e8b196d09  102.atr
    2b56039f9ece83b53511e0fc24e95f23b90712c8017fe4d915e040e78713c38e  102.dat
    e0151b1565f897ccc25e43d216e138d0e2eb2fe49dd91359a31caa97786f241d  102.hea
    392ce37fbc7e89b3f14998e197a844f23cce6a3db6edaa71b4b49bf3ca5b6596  103.atr
    f7994f0bd196730779998b4bddf26cb47f396599fb370a08b5cb29a3ac4d555d  103.dat
    d4984a5995488b93f788bc04f35a49144ea0306db7edc538c78d2e962113ed7d  103.hea
    4f945bef6a4e30b588d7ebdb0763f5294322aa5632b4bb128ee140c7035463c9  104.atr
    aeb19bd805996167c6edd8f1b1a659486c0cbad101f06f1426548784d9634354  104.dat
    55af3a78deda90d0024893816467d6f9a9c78b5ca0c6e2548c105e8080e5d871  104.hea
    278d534c1ad952a6d41db963b6b2b00be070d8dd5fa66545caa5c18edcc36497  105.atr
    fcd0153dfea69c749194bb73de7db124588857cfa2f6aecb72754894c8afde02  105.dat
    66e64fbd71338594a011fdf797ff010a2888501bf49fbbdeb6b4a1678b2e4910  105.hea
    585347e6d1bd3ad89cdb52cb80945878a5e51026d81f871a376bb6e13936f7fa  106.atr
    c017bc18b95b1f970bca143a044ee5d54168648b541e47aa656f2737a59c1202  106.dat
    102cb762581cb77d5efdbea4e90b0f934fc26fed9a51dad7a8dfa68fa97f612a  106.hea
    559453fc0454d2aa2b744224fd301007b8e41585c6b6f239709c8c2cdbe207f4  107.atr
    ea2254006bb0503926bfb7f6ca3ccf0b3e1ae6bfa8f5eb702bab5d8e960af728  107.dat
    a4e4276a15ea90b4c8251d76a851020779bf362bb4133f53a0ca4a7775033203  107.hea
    ea227008ac3bc4ada87807117909e77ae0643d5a8bc09f32b9096a35f140cbf3  108.atr
    229a4ef62679dc5c6ea781bfbaec2bd784151fc9f9517f4cdecd533a9431eb20  108.dat
    47e63fc60430addf07667984da6daff72660a38e511c0b2f7531ad17ef851e45  108.hea
    2eef456587bab17263a126063321c040affa29bc4ccfdf2a2bc7fe50709fa1b8  109.atr
    267afd6ced7a1fd5a8bcd21fcc2b83287e37e3ef57f32e8a0fe39a6e021951cd  109.dat
    7208cd44ee68fb6e77136848dc1c1487db2ae5d98d5c7c4e29b0e8963b22537f  109.hea
    372ed78bb0bbe7d5d9dc7e676c03d72530729775b5cfa94501485329fc47b8cb  111.atr
    8372d98ae59fbfd023502a9d0fc03fb5383083da92584b964484e18593e08485  111.dat
    bebc628f7b6b8a30081cbafaeb7b0c0e58f750b60a5b08ec9e2161db8a1433ea  111.hea
    69cf7ee24d65a5430162ae9b6452be9d4855c2af47f91976b7f02038ea115002  112.atr
    3c7af9758687314255b5d946a58d9509d53ecf2a300230684fa8ecf00b774bdb  112.dat
    7bf21977705ee1ae5be21df15fef8358100559228340c635a8173a0dfc273f29  112.hea
    39527d597a246410d2c16f062600c73271a73a7503d49cafd1d17508af4cd432  113.atr
    f5509b71dabaaa11c53f687ee17aab0071bce3d471e2ab77c71a6434f5b7aacf  113.dat
    e694de6b00dd838c39752e678f6cd8d9e95f75aacce0cfbb602de09e1f6261bf  113.hea
    5280acb082b654d64944137987a00fbc2105b3a3fcdda75d0bf11d4644e40d9f  114.atr
    2ae83463edcfec256b79ce93716dcb40f289bacbe9e5e7a66cd00d0a31099d4b  114.dat
    213091d5e43e59c4296fdf32f4f7d61393d749d1b7fd742fba5d7d13ca097c1e  114.hea
    4980667b19b7a637729d40762f071b483d69f5431db818cbddc9a8ae64cc4da2  115.atr
    34185efe9889608c76ebfbf5a467d3457970c6d11b77a2bf81b94bcf46e07c41  115.dat
    cb5c8454946aac80a38678bcd43b786137da38b0f6fdd18c11751dfe8a758098  115.hea
    abd31e2c878073e67319d5a6fa34923fe117cca02e5c80318378405c853ccbef  116.atr
    0ab38cfca76d816673213dcd570504bb3ab02ef76d51540fd7a6075bc580ad85  116.dat
    abd163b332fbd593df547010c2775ce743146959ea4e1ee3208f1a20919298be  116.hea
    232beaacf4a4eb4b6d2f2242f01ecae3d2842be1dd0afe890037ae050f91ce63  117.atr
    2ce7de6f20baf4cfef0369f9a13fa53784d18e2da78c11afa1e4c55e8ad1900e  117.dat
    6b2f428fdc06641651973b991cbb60137b8fe4016619abb7749e18c7c9f21fc5  117.hea
    77afd5400648d128223d5029a49c442f5abd65ba997f732489cb8eed39d71551  118.atr
    66ea4b70b7d64abd0f49089ae1b8f0f577664c46e5b29ac23b291934e063df15  118.dat
    0e599358ace9eb4c08dcf785207fe919d548a6b341f00365fa7d610fef6631bd  118.hea
    fd919c8ea20eed4a22fb37984977f30ce48d382eefd2d90934bf947a88e0fd7b  119.atr
    02a286a28e69b441568add915f16a2856b22bab893bf8729ee9654411ed3a5aa  119.dat
    acdbdf5437750b298e8b635e04cecb6fb219926609a5ee3ff1f931cf24018b21  119.hea
    dbda472aa08eeb6bbbf775b8123e466a7ee57638caecd156407de3141c9fa71c  121.atr
    679f374a7b2557fed04a4bc5648301ce9bdd38e5a4f13b2e63ebbcf7cb3fb482  121.dat
    a8d690caadf58a00a12b7003b7ed778f183ea3c3f594c12339356de5095c13ce  121.hea
    34966d92a94c72126253c0297407cff78e53be1f72c6814e28676bcda8be90de  122.atr
    a700c794bfe23565603d75dc5706915f5436e522802d260e758683d11f5b9e13  122.dat
    2e71e51b382dbd2fdd9d1ee1d12334d3f1046cc30277144f1854816178a85777  122.hea
    061bfd2590fd9d6040d32741a19697491dedb65cbbc5b3865a5c50d49f52d709  123.atr
    8a685a846b82d72aac4dd86171ad0fe5b19c0bd9ce51ddc1e6f015f73b2d8c3a  123.dat
    fbec02ee5b3c6afaafcb442b85a042bb59a7c11fbea989969dd7d16279746a0e  123.hea
    f9c8cac368f1f6ba8895ae47f5771c82597374c1e6b030385ca2eb186454677c  124.atr
    296988e49d2653eb499ad0b17c46826b4296b7eaf94df3f76f1ba2dcdf6bc48b  124.dat
    388e273267e3835a2882104ed034ea63106e2dfb97c2b52779fbf60e4003e1eb  124.hea
    f9624a11696760427d75314a78c31f89ca3c446af855890c8f8b66cddd8b3a3f  200.atr
    a9e203b3807b9fcd3647cde03444437cb8eec7f5128a8eb413edafb394272e0f  200.dat
    0891911f50ddf74a0f521da8482ff3486258e36c67296e59f4b6b9b5a7a031b8  200.hea
    df1276b6c6952b177ec6eea2be3edc7a96888454107a3ee56be880b0afaf6f35  201.atr
    16610ae46eff900794597503d15af4572a8b1518f18dbed2843b7e68c81f3898  201.dat
    d980941e703b5e22da99738575bc7532dbeb0241e99890a9038a415933102989  201.hea
    16d59e44564844c39a648164580a69e71f1657e951e6ad121b64eb1a11db037d  202.atr
    0c990e4142de6be898de4b21bd6e6705cd567e5d97cb731a994dc5aee9c7142d  202.dat
    8cc9d9129591297adab6509376037792c64671204d6e9b57c3c7d4cea9032446  202.hea
    2573f948e54a538983a44bf946e3e61cdda60e898b4c65ca8559b57c4877c706  203.atr
    5ba7d2237fc838438efd8bb0a3baeffc5de2e70c76e3ab7e401e811ad82f43e0  203.dat
    1d6e7c949345ced3dff554f63600d96601f59f49877a4e33b27025b93c6bbac5  203.hea
    0ae55e31175b9ba36e09c3b556b15e3e70f254936a2634d5ff341dfb86a74ea9  205.atr
    8a513c39e6d9a1d732de0b3909a87aa1fcfd4bd55ab5f59a5b810967d252af36  205.dat
    96bcbcd8ccc1e4a5d9e61a7a6666a1fd76df7774c65e1d6b6611f08ffe3beaf6  205.hea
    cceb64d68033a277d2d5669458d49258295102dd3e20614a0ca7d63b67009404  207.atr
    139f99250366fbf347cba4d8ea1fbe788f98cb1b93b70f50ccba70122d908605  207.dat
    66f9d13a38a15569ccbb346e5b200661974ed81a68ef2c61a9e45bef57cc8489  207.hea
    33878519ee34d00cb233fdb15b11c2b8da0b0aea2e643d31b07105cc3392edf4  208.atr
    22873623623c44ee413a5b60cacb15d4af2723734836fb3ae45d9ff96bdb36e7  208.dat
    8eb881c2ab7dbe24292c9d07c0ecd81ff3da08baba764c0f0409c33171db4c1c  208.hea
    c0697b176e7caf49e34f93e28eaeeff7167e2de380a8698f6cb3fb3a5fcb1c84  209.atr
    e2516dd126ea85529d9a0e8442fef5d880a492d41f0692a76e648c8437f15c5f  209.dat
    62507e17883fa2af3310e09cfaf0b593d52b69aed2a86f25a30098fe08a54de3  209.hea
    5a46bef3d185c903b1ce099a988898fc829cea7e6c5bc1984532efd694fa8db6  210.atr
    76e971fba03c0ae2ab261c7446240987ecde82f45dad1d4f36e290b950eb464b  210.dat
    5c4f18ae669f44872b138e194ae7833061716ace2d214d4d192a8d245907e745  210.hea
    dc4d0bec7e3ced82f67ef9d5264bcdb3d167c2214125eb04891040fbbb340816  212.atr
    6b63d3e20c40073be852e8121196d5de2ede502168fcb6c10ca5af841418cc5c  212.dat
    6e9b1b19bc1873cda8a193ca7a981e703d57c5e0c00f7531e4bcac72c4cdd124  212.hea
    44349e22176aad3f688ca9a62f283a993927a0b9ef6d97f473cde3b16cfabc9a  213.atr
    0cb13cd9299b0ab68f8f3064b2ab72f853d155abb277b68daef0a26cbc173b0d  213.dat
    681cd440d1366c902f807933ceee920534296c4b77a6494614be1caf3bd95815  213.hea
    09c588b0623f6dc6138928ce2006f294c4ef3da143eec2cdba6eddb9b1597214  214.atr
    a886b1ceb56e950858dedf5b56d3fdb5f26aef3667f8effcb880c1c000ee0cd3  214.dat
    ebc01f5f233c81a3bd8b116f244e5c7d38d037dcca87f3d8ed61ebc79faea36b  214.hea
    94968307b89eb0be766cbb88617f08571ed41b3b25b294d19a72b7ffd2525aee  215.atr
    9e28799b5733a2d60470653e6f6ca26610143303233a1b7559cff54e2ad26ef9  215.dat
    4356a24edda70120a78a44089cd077b887e0e2489278961a45e5cbf4cafaa227  215.hea
    196ad0989b837b5d51784e13bef1242549ca7266f0da21743f208302e3e3f5e1  217.atr
    de29975a2a476eaa1a3f07b90134cec70830b2d7932b213354ba175914a6040a  217.dat
    572ad4c339583b1ea842df8db52b482b42a8a1ec3fcadb7964320dd3363c93f2  217.hea
    271928544ce78772669c50b26cf4de163a53f5b90187b5d8080928def79f0e6a  219.atr
    7fc27b77e313aaa40da9f39783f8fb29a6a910be148e67463e5093793644751a  219.dat
    7478213d56afd32442080354f2ccdf1a5d8f043f7a26e09bbfd8adcc99f4abcb  219.hea
    9cf9f330823e2a9850d51a7fce1f8ecfe5bb84e80e89412bd9f4de6a67f9ccc7  220.atr
    c01ca1a76fb3a89e96134a08f2e5aa6e760eda59ea9086ba8aaa13ba0cca9cff  220.dat
    e3e99399a16980896b14a3b028951ef79a951f4740bf7bc7b4df7e89946e130f  220.hea
    92549b966cc17bcf2edf00a97237d1e350a761d9ffe20065b5ed303848aad7ae  221.atr
    274d17c6a35f7adcbb10a59ea34350e5ad299c2d69e4fa579d8863213e1fe9ae  221.dat
    d8bebc8f9655439d19492c938c680179897b68bce8ed6282036990b0539f60d0  221.hea
    a0206b778a9f073d451023e802e52059754648e83fe1dc669395b4884ccad356  222.atr
    0510bf39ed2925a83debd249492bdfe77c575148376aaabeba4c7b7a2451ac5d  222.dat
    7608a25243da4dbe7380ad2b7ea5bc8aabcaf9cce04082d0f4f843c76945a391  222.hea
    beaa5cb3eb5fb64a5f9e1dfcac9297f9564b379c9c354cbf8f9f927d9b81ccf1  223.atr
    1d42aa9e13f7349287ae5f0f00b40078c01aadd39e2cad1001ab42d3b7484594  223.dat
    5e5e64181991d53da846bb46d15e87eafe654b2904f66d18e19827a1632a77de  223.hea
    7e08ee90f668800fb3e1a66193fb8f8b4b91c3ec2f52f384756bab826e019d1d  228.atr
    b2421f15447772bb7a38f5073e4e07d5d9be50d875441a4a0821c9e22b78fdac  228.dat
    9f2cb51c92db90250c73feabd06e1c18a0e7332b13a7a98a93875efdb7ca49d3  228.hea
    403d0d4842ba7135b1e14b9e5c50cba214753a0e17bf979090b2c6a8018f7eae  230.atr
    fba09ea54d9caa342c54c46e0df247335345b02444f7d15162906adfef55d057  230.dat
    b5a3bd7df0f3680d5de81c21556baa84a8ca14c47dc6f7acd062c8ef727add36  230.hea
    b82cc005618eab81b3a246ca5c5a61903f3c0f40c191d7fb953adf054ea691de  231.atr
    7d4f56d6c4b1d50322154381c1d8761457c2f2696973e915a3c19d8a5b789595  231.dat
    5338256625ee5888c14b69da436e69fbe3300d5bb5eddc1f6f92dbe6057a2371  231.hea
    be0e236cb883c669128da01beae0ec0efc39fdfaa5c1e878a3cef5443db8c934  232.atr
    3d74a21f848766c9607bc5eead7e4b2655f09586adb5561f02fd8fcb0e9da6d0  232.dat
    6e98177475d87cc08bdf6914195a50e3d78737d3e4f74638f7bbac959dec7945  232.hea
    c9ce42ecefa9a92e2ec69f9d237d8a53c67c60b31a25d579356ea8910bcc368a  233.atr
    6ccd6b1fa0cafc052369e7ec0a99cc6c3b56b3c12afff26db800c55a826211b4  233.dat
    f17382aef5011990e3d0a0e3f6ab0b164d21f2e8c3873cd2a0cf3288e7b07bec  233.hea
    e829a3e4131fbe9420c1740bfb5000b3f4f64a2b40aa5f739ed6420f75be6785  234.atr
    89f826307bfc91a554021da87c17b88b843ed3d26aa9ea237fc6f7c8af00da6d  234.dat
    c1fed4ab000cc750ba8f2e11496bf7b152892a230473f97214a3ff4d94e02791  234.hea
""".strip().splitlines())}
RECORDS = tuple(sorted({int(name.split(".")[0]) for name in RAW_SHA256}))


def raw_file_sha256(path: Path) -> str:
    """SHA-256 of a raw file; a header's CRLF line endings are turned into LF first."""
    payload = path.read_bytes()
    if path.suffix == ".hea":
        payload = payload.replace(b"\r\n", b"\n")
    return hashlib.sha256(payload).hexdigest()


def has_all_files(folder: Path) -> bool:
    """True if `folder` holds every raw file of the 48 records."""
    return all((folder / name).is_file() for name in RAW_SHA256)


def find_raw_dir(requested) -> Path:
    """The folder to read raw records from: --raw-dir, else $MINIMAL_MITDB, else the shared folder, else the cache."""
    if requested:
        return Path(requested)
    for candidate in (os.environ.get("MINIMAL_MITDB"), SHARED_DIR):
        if candidate and has_all_files(Path(candidate)):
            return Path(candidate)
    return CACHE_DIR


def download_missing_files(raw_dir: Path):
    """Fetch every raw file missing from `raw_dir` from PhysioNet (each written atomically)."""
    for name in RAW_SHA256:
        target = raw_dir / name
        if target.is_file():
            continue
        print(f"downloading {PHYSIONET_URL}{name}")
        try:
            with urllib.request.urlopen(PHYSIONET_URL + name, timeout=60) as response:
                atomic_write_bytes(target, response.read())
        except urllib.error.URLError as error:
            raise DataNotFoundError(f"could not download {PHYSIONET_URL}{name} ({error.reason}); put the 48 MIT-BIH "
                                    f"records in a folder and pass --raw-dir or set MINIMAL_MITDB") from None


def verify_raw_files(raw_dir: Path):
    """Raise DataNotFoundError naming every raw file whose SHA-256 is not the expected one."""
    bad = [name for name, digest in RAW_SHA256.items() if raw_file_sha256(raw_dir / name) != digest]
    if bad:
        raise DataNotFoundError(f"raw MIT-BIH files in {raw_dir} fail their SHA-256 check: {', '.join(bad)}; "
                                f"delete them and run again to download fresh copies")


def extract_beats(record_path):
    """The N/L/R/V beats of one record, preprocessed as in steps 1-4 of the module docstring.

    Returns x (beats, 100, 2) float32, y (beats,) int64 labels, and the R-peak sample of each beat at 360 Hz.
    """
    record = read_record(record_path)
    if record.header.fs != SOURCE_FS:
        raise ValueError(f"record {record.header.record_name} is sampled at {record.header.fs} Hz, not {SOURCE_FS}")
    signal = resample_poly(record.physical(), 1, DOWNSAMPLE, axis=0)
    annotations = read_annotations(f"{record_path}.atr")
    is_beat = np.isin(annotations.symbol, CLASSES)
    peaks = annotations.sample[is_beat]
    labels = np.array([CLASSES.index(symbol) for symbol in annotations.symbol[is_beat]], dtype=np.int64)
    centres = peaks // DOWNSAMPLE
    inside = (centres >= HALF_WINDOW) & (centres + HALF_WINDOW <= len(signal))
    windows = signal[centres[inside, None] + np.arange(-HALF_WINDOW, HALF_WINDOW)]
    windows = (windows - windows.mean(axis=1, keepdims=True)) / signal.std(axis=0)
    return windows.astype(np.float32), labels[inside], peaks[inside]


def extract_all_beats(raw_dir, records=RECORDS) -> dict:
    """Beats of all `records`, concatenated: {"x", "y", "record", "peak_sample"}."""
    parts = {"x": [], "y": [], "record": [], "peak_sample": []}
    for number in records:
        x, y, peaks = extract_beats(Path(raw_dir) / str(number))
        print(f"record {number}: {class_counts(y)}")
        for name, array in zip(parts, (x, y, np.full(len(y), number), peaks)):
            parts[name].append(array)
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def balance_beats(beats: dict, seed: int) -> dict:
    """Subsample every class to the size of the rarest one (fixed seed), keeping the original order."""
    keep = balance_classes(np.arange(len(beats["y"])), beats["y"], np.random.default_rng(seed))
    return {name: array[keep] for name, array in beats.items()}


def quantise(beats: dict) -> dict:
    """The arrays as stored in the .npz: x as int16 multiples of X_SCALE, small integer types elsewhere."""
    stored_x = np.round(beats["x"] / X_SCALE)
    if np.abs(stored_x).max() > np.iinfo(np.int16).max:
        raise ValueError(f"a beat value exceeds the int16 range at scale {X_SCALE}")
    return {"x": stored_x.astype(np.int16), "x_scale": np.float32(X_SCALE), "y": beats["y"].astype(np.int8),
            "record": beats["record"].astype(np.int16), "peak_sample": beats["peak_sample"].astype(np.int32)}


def save_beat_set(beats: dict, counts_before: dict, seed: int, out_path: Path) -> dict:
    """Write the .npz and the .json (SHA-256, counts, provenance) beside it; returns the JSON document."""
    atomic_save_npz(out_path, quantise(beats))
    description = {
        "file": out_path.name,
        "sha256": sha256_of_file(out_path),
        "size_bytes": out_path.stat().st_size,
        "classes": list(CLASSES),
        "counts_before_balancing": counts_before,
        "counts": class_counts(beats["y"]),
        "records": sorted(set(beats["record"].tolist())),
        "seed": seed,
        "preprocessing": {
            "signal": "both leads, physical units (digital - baseline) / gain, mV",
            "resampling": "360 Hz -> 180 Hz, scipy.signal.resample_poly(signal, 1, 2, axis=0) on the whole record",
            "window": "100 samples at 180 Hz, [s//2 - 50, s//2 + 50) for the R-peak sample s at 360 Hz; "
                      "beats whose window crosses the record's start or end are dropped",
            "normalisation": "per beat and channel: minus the window mean, divided by the channel's standard "
                             "deviation over the whole resampled record",
            "balancing": "every class subsampled without replacement to the rarest class, "
                         "numpy default_rng(seed)",
            "storage": f"x int16, value = stored * x_scale with x_scale = {X_SCALE}",
        },
        "source": {
            "database": "MIT-BIH Arrhythmia Database v1.0.0, PhysioNet",
            "url": "https://physionet.org/content/mitdb/1.0.0/",
            "license": "Open Data Commons Attribution License v1.0",
            "citations": [
                "Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. "
                "IEEE Eng in Med and Biol 20(3):45-50 (2001)",
                "Goldberger AL et al. PhysioBank, PhysioToolkit, and PhysioNet: components of a new research "
                "resource for complex physiologic signals. Circulation 101(23):e215-e220 (2000)",
            ],
        },
        "built_by": "data_scripts/ecg_mitbih.py",
    }
    atomic_save_json(out_path.with_suffix(".json"), description)
    return description


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build the 4-class MIT-BIH ECG beat set (npz + json).")
    parser.add_argument("--raw-dir", help="folder with the raw NNN.hea/.dat/.atr files (default: $MINIMAL_MITDB, "
                                          f"{SHARED_DIR}, or download into {CACHE_DIR})")
    parser.add_argument("--out", type=Path, default=EMBEDDED_PATH, help=f"output .npz (default: {EMBEDDED_PATH})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the class balancing (default: 0)")
    args = parser.parse_args(argv)
    raw_dir = find_raw_dir(args.raw_dir)
    if not has_all_files(raw_dir):
        download_missing_files(raw_dir)
    verify_raw_files(raw_dir)
    beats = extract_all_beats(raw_dir)
    description = save_beat_set(balance_beats(beats, args.seed), class_counts(beats["y"]), args.seed, args.out)
    print(f"beats per class before balancing: {description['counts_before_balancing']}")
    print(f"wrote {args.out} ({description['size_bytes'] / 1e6:.1f} MB), beats per class: {description['counts']}")


if __name__ == "__main__":
    try:
        main()
    except DataNotFoundError as error:
        sys.exit(f"error: {error}")
