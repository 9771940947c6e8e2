"""The datasets the paper uses: their archives (URLs, mirrors, sizes, digests) and recipes.

Every archive carries the size and the digest(s) that a public source states for it, with
the source named in ``Archive.source`` (repository, file, commit).  A download checks the
size the server announces before it fetches the body, and the size and every digest after
(see :mod:`admin.data.download`).  The sources:

* WMT training archives (europarl-v7, commoncrawl, UN, news-commentary v9 and v12,
  giga-fren 10^9): size and sha256 from tensorflow/datasets
  ``tensorflow_datasets/url_checksums/wmt{13,14,15,17}_translate.txt`` (lines ``URL SIZE
  SHA256``, commit 90b66237ad09c9e5b9b1bc61b646db7b1fb0713c; the same figures at
  333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5), and md5 from awslabs/sockeye
  ``contrib/autopilot/tasks.py`` (``RAW_FILES``, commit
  7a1f3f7e1c5b46c11a0b234cdeba7252aa8c9a1f).  Both check their downloads against these
  figures, for the URLs ``http://www.statmt.org/wmtNN/...`` and
  ``http://data.statmt.org/wmt17/translation-task/...``.  Our URLs are the same paths on
  the same sites: ``statmt.org`` is the bare name of ``www.statmt.org`` (fairseq's and
  Transformer-Clinic's scripts spell it that way), and the ``https://`` URLs are the same
  hosts over TLS.
* WMT ``dev.tgz`` (wmt17) and ``test-full.tgz`` (wmt14): md5 from mjpost/sacrebleu
  ``sacrebleu/dataset/__init__.py`` ("wmt17/dev", "wmt14/full"; v2.6.0, commit
  2277caccfc7b956671a6a09f1646f62250034157), for exactly our primary URLs; Sockeye's
  ``RAW_FILES["wmt17_dev"]`` gives the same md5 for dev.tgz.  **No public source states
  their size** (tensorflow/datasets and HuggingFace datasets take newstest2013/2014 from
  the wmt19 ``dev.tgz`` instead; sacrebleu and Sockeye record md5 only), so the size is
  recorded in the lock file on first download, together with the sha256.
* Multi30k: each raw ``.gz`` file is a blob of the official repository
  (github.com/multi30k/dataset, ``data/task1/raw/``, added in commit
  c9be912dc05a3ebf9ae5bb5f7f58c1791cda43ab, 2018-01-17, unchanged since); git states its
  size and blob id, and the sha256 is that of the blob's bytes (see
  ``../shared/data/multi30k_task1_de_en/SOURCE.md``).
* IWSLT'14 ``de-en.tgz`` (fairseq's mirror of the WIT3 2014-01 release): **no public
  source publishes a digest or a size for it.**  fairseq's ``prepare-iwslt14.sh`` and its
  issues give none; tensorflow/datasets, HuggingFace datasets, sacrebleu and Sockeye have
  no IWSLT'14 entry; WIT3's own URL is dead.  (A personal fork, vkhangpham/fairseq at
  commit 252e2dca5cd6700138bae0ea4aded7bef9918386, commits a copy as
  ``examples/translation/orig/de-en.tgz``, git blob
  aa8c3f40f8836f1d43701448f94fe7e230082b4c, but its bytes and size are not retrievable, and
  a fork is no authority on the mirror.)  Its sha256 and size are recorded in the lock file
  on first download.

The lock file (``config/checksums.lock.json`` by default, committed by users) holds the
sha256 and size of every archive whose sha256 or size is not published: the ones above,
and archives users add themselves.  Every later download, offline copy or existing file
is verified against it.  User mirrors (``--mirror``) serve the same file names, so the
registry's figures apply to them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from admin.common.errors import AdminError


@dataclass(frozen=True)
class Archive:
    """One downloadable file.  ``urls`` are tried in order (the first is the primary).

    ``size`` (bytes), ``sha256`` and ``md5`` are the published figures, None where no public
    source states one; ``source`` names where each comes from, or says that none exists.
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    source: str = ""
    size: int | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    src: str
    tgt: str
    archives: tuple[Archive, ...]
    bpe_merges: int
    description: str
    # clean-corpus-n applied *after* BPE to train and valid: (ratio, min, max); En-Fr only
    post_bpe_clean: tuple[float, int, int] | None = None
    # the recipe lowercases the text: sacreBLEU scores against the (cased) raw references
    # case-insensitively, as the paper's tokenized BLEU does
    lowercased: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def archive(self, filename: str) -> Archive:
        for archive in self.archives:
            if archive.filename == filename:
                return archive
        raise KeyError(filename)


_STATMT = ("http://statmt.org", "https://www.statmt.org")
_DATA_STATMT = ("http://data.statmt.org", "https://data.statmt.org")


def _statmt(path: str) -> tuple[str, ...]:
    return tuple(f"{base}/{path}" for base in _STATMT)


def _data_statmt(path: str) -> tuple[str, ...]:
    return tuple(f"{base}/{path}" for base in _DATA_STATMT)


_TFDS = (
    "size and sha256: tensorflow/datasets tensorflow_datasets/url_checksums/{file} "
    "(commit 90b66237ad09c9e5b9b1bc61b646db7b1fb0713c), line {url}"
)
_SOCKEYE = (
    "md5: awslabs/sockeye contrib/autopilot/tasks.py "
    "(commit 7a1f3f7e1c5b46c11a0b234cdeba7252aa8c9a1f), RAW_FILES[{key!r}]"
)
_SACREBLEU = (
    "md5: mjpost/sacrebleu sacrebleu/dataset/__init__.py "
    "(v2.6.0, commit 2277caccfc7b956671a6a09f1646f62250034157), {key!r}"
)
_SAME_STATMT = (
    "published for {url}; our URLs are the same path on the same site "
    "(statmt.org is the bare name of www.statmt.org; https is the same host over TLS)"
)
_SAME_DATA_STATMT = "published for {url}; our https URL is the same host and path over TLS"


def _wmt_training(
    filename: str,
    urls: tuple[str, ...],
    *,
    published_url: str,
    size: int,
    sha256: str,
    md5: str,
    tfds_file: str,
    sockeye_key: str,
) -> Archive:
    same = _SAME_DATA_STATMT if "data.statmt.org" in published_url else _SAME_STATMT
    source = "; ".join(
        (
            _TFDS.format(file=tfds_file, url=published_url),
            _SOCKEYE.format(key=sockeye_key),
            same.format(url=published_url),
        )
    )
    return Archive(filename, urls, sha256=sha256, md5=md5, source=source, size=size)


EUROPARL_V7 = _wmt_training(
    "training-parallel-europarl-v7.tgz",
    _statmt("wmt13/training-parallel-europarl-v7.tgz"),
    published_url="http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz",
    size=657632379,
    sha256="0224c7c710c8a063dfd893b0cc0830202d61f4c75c17eb8e31836103d27d96e7",
    md5="c52404583294a1b609e56d45b2ed06f5",
    tfds_file="wmt14_translate.txt",
    sockeye_key="europarl_v7",
)
COMMONCRAWL = _wmt_training(
    "training-parallel-commoncrawl.tgz",
    _statmt("wmt13/training-parallel-commoncrawl.tgz"),
    published_url="http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz",
    size=918311367,
    sha256="c7a74e2ea01ac6c920123108627e35278d4ccb5701e15428ffa34de86fa3a9e5",
    md5="7e0acbe86b0d7816300e14650f5b2bd4",
    tfds_file="wmt14_translate.txt",
    sockeye_key="common_crawl_wmt13",
)
NEWS_COMMENTARY_V12 = _wmt_training(
    "training-parallel-nc-v12.tgz",
    _data_statmt("wmt17/translation-task/training-parallel-nc-v12.tgz"),
    published_url="http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
    size=168591139,
    sha256="2b45f30ef1d550d302fd17dd3a5cbe19134ccc4c2cf50c2dae534aee600101a2",
    md5="fc6b83b809347e64f511d291e4bc8731",
    tfds_file="wmt17_translate.txt",
    sockeye_key="news_commentary_v12",
)
UN = _wmt_training(
    "training-parallel-un.tgz",
    _statmt("wmt13/training-parallel-un.tgz"),
    published_url="http://www.statmt.org/wmt13/training-parallel-un.tgz",
    size=2365634246,
    sha256="29141b5c1eba149a94f7a59d3b1a834b2e47fe0f8758d68dcd77a3d3f497ee47",
    md5="bb25a213ba9140023e4cc82c778bef53",
    tfds_file="wmt15_translate.txt",
    sockeye_key="un_wmt13",
)
NEWS_COMMENTARY_V9 = _wmt_training(
    "training-parallel-nc-v9.tgz",
    _statmt("wmt14/training-parallel-nc-v9.tgz"),
    published_url="http://www.statmt.org/wmt14/training-parallel-nc-v9.tgz",
    size=80418416,
    sha256="cb8953f292298e6877ae433c98912b927cb0766b303f4540512ddd286c748485",
    md5="92e42b68f9d3c2ae9722e6d1c2623e21",
    tfds_file="wmt14_translate.txt",
    sockeye_key="news_commentary_v9",
)
GIGA_FREN = _wmt_training(
    "training-giga-fren.tar",
    _statmt("wmt10/training-giga-fren.tar"),
    published_url="http://www.statmt.org/wmt10/training-giga-fren.tar",
    size=2595102720,
    sha256="3ff8319f6919393520559bfbc7ad6a747ec81b3abc7be9993b338d4b017b4d9a",
    md5="0b12e20027d5b5f0dfcca290c72c8953",
    tfds_file="wmt15_translate.txt",
    sockeye_key="giga_fren_wmt10",
)
NO_PUBLISHED_SIZE = (
    "size: no public source states it (tensorflow/datasets and HuggingFace datasets use "
    "the wmt19 dev.tgz instead; sacrebleu and Sockeye record md5 only), so the lock file "
    "records it, with the sha256, on first download"
)
DEV_WMT17 = Archive(
    "dev.tgz",
    _data_statmt("wmt17/translation-task/dev.tgz"),
    md5="9b1aa63c1cf49dccdd20b962fe313989",
    source="; ".join(
        (
            _SACREBLEU.format(key="wmt17/dev"),
            "the same md5 in " + _SOCKEYE.format(key="wmt17_dev").removeprefix("md5: "),
            _SAME_DATA_STATMT.format(url="http://data.statmt.org/wmt17/translation-task/dev.tgz"),
            NO_PUBLISHED_SIZE,
        )
    ),
)
TEST_FULL = Archive(
    "test-full.tgz",
    _statmt("wmt14/test-full.tgz"),
    md5="a8cd784e006feb32ac6f3d9ec7eb389a",
    source="; ".join(
        (
            _SACREBLEU.format(key="wmt14/full"),
            "published for http://statmt.org/wmt14/test-full.tgz, our primary URL; the https "
            "URL is the same path on www.statmt.org, the same site",
            NO_PUBLISHED_SIZE,
        )
    ),
)

IWSLT14_DE_EN = Dataset(
    name="iwslt14_de_en",
    src="de",
    tgt="en",
    archives=(
        Archive(
            "de-en.tgz",
            (
                # The WIT3 URL of the original script is dead; fairseq's mirror is what
                # everyone uses now.
                "https://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz",
                "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz",
                "https://wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz",
            ),
            source=(
                "no public source publishes a digest or a size for this archive: fairseq "
                "(examples/translation/prepare-iwslt14.sh, its issues) gives none, and "
                "tensorflow/datasets, HuggingFace datasets, sacrebleu and Sockeye have no "
                "IWSLT'14 entry; the lock file records its sha256 and size on first download"
            ),
        ),
    ),
    bpe_merges=10000,
    description="IWSLT'14 De-En as fairseq examples/translation/prepare-iwslt14.sh",
    lowercased=True,
)

WMT14_EN_DE = Dataset(
    name="wmt14_en_de",
    src="en",
    tgt="de",
    archives=(EUROPARL_V7, COMMONCRAWL, NEWS_COMMENTARY_V12, DEV_WMT17, TEST_FULL),
    bpe_merges=32764,
    description="WMT'14 En-De as Transformer-Clinic pre-process/wmt14en-de.sh",
)

WMT14_EN_FR = Dataset(
    name="wmt14_en_fr",
    src="en",
    tgt="fr",
    archives=(EUROPARL_V7, COMMONCRAWL, UN, NEWS_COMMENTARY_V9, GIGA_FREN, TEST_FULL),
    bpe_merges=40000,
    post_bpe_clean=(1.5, 1, 250),
    description="WMT'14 En-Fr as Transformer-Clinic pre-process/wmt14en-fr.sh",
)

_MULTI30K_RAW = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
# name: (size in bytes, git blob id, sha256 of the blob's bytes), as committed in
# c9be912dc05a3ebf9ae5bb5f7f58c1791cda43ab and unchanged at the repository's HEAD
_MULTI30K_BLOBS = {
    "train.de.gz": (
        637044,
        "3869154c6298e22b3dc9ed3b17fd45bf00276b94",
        "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    ),
    "train.en.gz": (
        568929,
        "8226b4b333656238e113284cf738778e1287b52e",
        "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    ),
    "val.de.gz": (
        24681,
        "0907cab7a248be8e15ac418d517343899351db18",
        "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    ),
    "val.en.gz": (
        21650,
        "8eb30ab9e5edd301e4c94330713c88513dd43dbc",
        "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    ),
    "test_2016_flickr.de.gz": (
        22890,
        "96b762cc43d913a5d23e5ec65acbc58a50d0a9b8",
        "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    ),
    "test_2016_flickr.en.gz": (
        21077,
        "c3c1142a4d12fa9d7736c81dca0dcea51975477e",
        "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    ),
}

MULTI30K_DE_EN = Dataset(
    name="multi30k_de_en",
    src="de",
    tgt="en",
    archives=tuple(
        Archive(
            name,
            (
                f"{_MULTI30K_RAW}/{name}",
                f"https://github.com/multi30k/dataset/raw/master/data/task1/raw/{name}",
            ),
            sha256=digest,
            source=(
                f"size and sha256: git blob {blob} of multi30k/dataset data/task1/raw/{name} "
                "(commit c9be912dc05a3ebf9ae5bb5f7f58c1791cda43ab, unchanged on master, which "
                "both URLs serve); the sha256 is that of the blob's bytes"
            ),
            size=size,
        )
        for name, (size, blob, digest) in _MULTI30K_BLOBS.items()
    ),
    bpe_merges=8000,
    description="Multi30k task 1 De-En (train / val / test_2016_flickr), our recipe",
    lowercased=True,
    extra={"splits": {"train": "train", "valid": "val", "test": "test_2016_flickr"}},
)

DATASETS: dict[str, Dataset] = {
    d.name: d for d in (IWSLT14_DE_EN, WMT14_EN_DE, WMT14_EN_FR, MULTI30K_DE_EN)
}


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise AdminError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        ) from None
