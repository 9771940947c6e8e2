"""The datasets the paper uses: their archives (URLs, mirrors, checksums) and recipes.

Checksums.  Where a public source states an archive's digest it is recorded here, with
the source named beside it:

* Multi30k: the sha256 of each raw ``.gz`` file is that of the blob in the official
  repository (github.com/multi30k/dataset, ``data/task1/raw/``, unchanged since
  commit c9be912d, 2018-01-17); see ``../shared/data/multi30k_task1_de_en/SOURCE.md``.
* WMT ``dev.tgz`` (wmt17) and ``test-full.tgz`` (wmt14): the md5 that sacrebleu 2.6.0
  lists for the same URLs (``sacrebleu/dataset/__init__.py``, "wmt17/dev", "wmt14/full").

No public source we could find states digests for the IWSLT'14 ``de-en.tgz`` (fairseq
mirror) or the big WMT training archives.  For those, the first download records the
sha256 in the lock file (``config/checksums.lock.json`` by default), which users commit;
every later download or offline copy is verified against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from admin.common.errors import AdminError


@dataclass(frozen=True)
class Archive:
    """One downloadable file.  ``urls`` are tried in order (the first is the primary)."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    source: str = ""  # where the known checksum comes from


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


def _statmt(path: str) -> tuple[str, ...]:
    return tuple(f"{base}/{path}" for base in _STATMT)


EUROPARL_V7 = Archive(
    "training-parallel-europarl-v7.tgz", _statmt("wmt13/training-parallel-europarl-v7.tgz")
)
COMMONCRAWL = Archive(
    "training-parallel-commoncrawl.tgz", _statmt("wmt13/training-parallel-commoncrawl.tgz")
)
TEST_FULL = Archive(
    "test-full.tgz",
    _statmt("wmt14/test-full.tgz"),
    md5="a8cd784e006feb32ac6f3d9ec7eb389a",
    source="sacrebleu 2.6.0 dataset list, 'wmt14/full'",
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
    archives=(
        EUROPARL_V7,
        COMMONCRAWL,
        Archive(
            "training-parallel-nc-v12.tgz",
            (
                "http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
                "https://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
            ),
        ),
        Archive(
            "dev.tgz",
            (
                "http://data.statmt.org/wmt17/translation-task/dev.tgz",
                "https://data.statmt.org/wmt17/translation-task/dev.tgz",
            ),
            md5="9b1aa63c1cf49dccdd20b962fe313989",
            source="sacrebleu 2.6.0 dataset list, 'wmt17/dev'",
        ),
        TEST_FULL,
    ),
    bpe_merges=32764,
    description="WMT'14 En-De as Transformer-Clinic pre-process/wmt14en-de.sh",
)

WMT14_EN_FR = Dataset(
    name="wmt14_en_fr",
    src="en",
    tgt="fr",
    archives=(
        EUROPARL_V7,
        COMMONCRAWL,
        Archive("training-parallel-un.tgz", _statmt("wmt13/training-parallel-un.tgz")),
        Archive("training-parallel-nc-v9.tgz", _statmt("wmt14/training-parallel-nc-v9.tgz")),
        Archive("training-giga-fren.tar", _statmt("wmt10/training-giga-fren.tar")),
        TEST_FULL,
    ),
    bpe_merges=40000,
    post_bpe_clean=(1.5, 1, 250),
    description="WMT'14 En-Fr as Transformer-Clinic pre-process/wmt14en-fr.sh",
)

_MULTI30K_RAW = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
_MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
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
            source="blob in github.com/multi30k/dataset data/task1/raw (commit c9be912d)",
        )
        for name, digest in _MULTI30K_SHA256.items()
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
