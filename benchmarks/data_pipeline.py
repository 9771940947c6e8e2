"""Data pipeline at scale: every data step, at two corpus sizes, beside the plain tools.

A synthetic parallel corpus (the demo generator's sentences, :func:`iter_pairs`, streamed
to disk; the files are named ``en``/``de`` so that the Moses en/de rules apply) is packed
into the five WMT'14 En-De archives and run through the real steps, each as the workflow
runs it: a subprocess of its CLI (or, where a CLI does two steps, of the function the CLI
calls), ``--workers`` = this run's usable cores, WMT'14 En-De's settings:

* ``prepare``: ``admin.data.prepare --dataset wmt14_en_de`` (extract, normalize,
  remove non-printing, tokenize -a, clean 1-80 ratio 9, newstest2014 SGM);
* ``tokenize``: ``admin.data.tokenize --normalize-punct --aggressive`` (the demo's step);
* ``clean``: :func:`admin.data.corpus.clean_corpus` of the tokenized train pair;
* ``bpe-learn``: :func:`admin.data.bpe.learn_codes`, 32764 merges, on prepare's train;
* ``bpe-apply``: ``admin.data.bpe --codes`` (the bpe rule is bpe-learn + bpe-apply);
* ``binarize``: ``admin.data.binarize`` (``fairseq-preprocess --joined-dictionary``).

The references run on the same input with the same options: the sacremoses CLI
(``normalize tokenize -a``, one call per file), subword-nmt's ``learn-bpe`` (on ``cat
train.en train.de``) and ``apply-bpe`` (per file), ``fairseq-preprocess``.

Per step: sentences/s (lines read, both sides, over wall time from spawn to exit), peak
resident memory (``os.wait4``'s ``ru_maxrss``: the largest single process among the step
and the children it reaped), bytes written (``ru_oublock``: its own and its reaped
children's writes, scratch files included), and the growth of each from the small size
to the large one (a small launcher process spawns each step and reads its rusage).
Memory that streams stays flat while time and bytes grow with the corpus.
"""

from __future__ import annotations

import filecmp
import itertools
import math
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from benchmarks.core import REPO, SHARED_DATA, VENV_BIN, Context, Figure, Result, Target, fmt

NAME = "data_pipeline"
SIZES = (250_000, 1_000_000)
QUICK_SIZES = (2_000, 8_000)
DATASET = "wmt14_en_de"
SRC, TGT = "en", "de"
LANGS = (SRC, TGT)
SPLITS = ("train", "valid", "test")
SEED = 1  # the same seed at both sizes: the small corpus is the large one's head
CLEAN = (1, 80, 9.0)  # clean-corpus-n.perl ... 1 80 (default ratio 9), as wmt14.EN_DE_CLEAN
WMT_PATH = ("prepare", "bpe-learn", "bpe-apply", "binarize")  # what paper_wmt14_* runs
# WMT'14 train pairs before cleaning (Hugging Face's wmt14 dataset card: de-en, fr-en)
WMT_PAIRS = {"wmt14_en_de": 4_508_785, "wmt14_en_fr": 40_836_876}
NEWSTEST = SHARED_DATA / "wmt14_newstest2014_de_en"
FLAT = 1.25  # a streaming step's peak RSS may grow this much from the small size to the large

# The two steps without a CLI of their own: the functions the tokenize and bpe CLIs call.
CLEAN_CODE = (
    "import sys; from admin.data.corpus import clean_corpus; a = sys.argv[1:]; "
    "clean_corpus(*a[:4], int(a[4]), int(a[5]), float(a[6]))"
)
LEARN_CODE = (
    "import sys; from pathlib import Path; from admin.data.bpe import learn_codes; "
    "a = sys.argv[1:]; learn_codes([Path(a[0]), Path(a[1])], int(a[2]), Path(a[3]), int(a[4]))"
)
# Linux charges a child the peak RSS of the image it exec'd from: spawned from this process
# (torch imported: 200+ MiB) every step would read as at least that.  This launcher, a bare
# interpreter (about 9 MiB, the floor of every peak), spawns the step and reports its wait4
# rusage: peak RSS of it and the children it reaped (KiB), and ru_oublock, the blocks it
# and they wrote (Linux: write_bytes / 512, scratch files deleted later included).
LAUNCH = (
    "import os, sys, time; t = time.perf_counter(); "
    "pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ); "
    "_, status, ru = os.wait4(pid, 0); t = time.perf_counter() - t; "
    "open(sys.argv[1], 'w').write(f'{t} {ru.ru_maxrss} {512 * ru.ru_oublock} '"
    "f'{os.waitstatus_to_exitcode(status)}')"
)
# subword-nmt counts words on several cores only when reading a named file, not stdin.
REF_LEARN = (
    'cat "$1" "$2" > "$3" && "$4" learn-bpe -s "$5" --num-workers "$6" -i "$3" -o "$7"; '
    'rc=$?; rm -f "$3"; exit $rc'
)


@dataclass(frozen=True)
class Usage:
    seconds: float
    peak_kib: int
    written: int  # bytes

    def __add__(self, other: Usage) -> Usage:
        """Processes run one after the other: times and bytes add up, memory does not."""
        return Usage(
            self.seconds + other.seconds,
            max(self.peak_kib, other.peak_kib),
            self.written + other.written,
        )


@dataclass(frozen=True)
class Measured:
    pairs: int
    step: str
    tool: str
    sentences: int
    usage: Usage
    output: int  # bytes the step leaves on disk


Call = tuple[list[str], Path | None, Path | None]  # argv, stdin file, stdout file


def label(pairs: int) -> str:
    if pairs % 1_000_000 == 0:
        return f"{pairs // 1_000_000}M"
    return f"{pairs // 1000}k" if pairs % 1000 == 0 else str(pairs)


def count_lines(paths: Sequence[Path]) -> int:
    from admin.data.textio import count_lines as lines_of

    return sum(lines_of(path) for path in paths)


def disk_bytes(paths: Sequence[Path]) -> int:
    files = [q for p in paths for q in ([p] if p.is_file() else p.rglob("*")) if q.is_file()]
    return sum(q.stat().st_size for q in files)


def write_corpus(raw: Path, counts: dict[str, int]) -> None:
    """``raw/{split}.{en,de}``, streamed: the demo generator keeps every pair (and a set of
    them) in memory to make them unique; here duplicates stay, as in crawled corpora."""
    from admin.data.demo_corpus import iter_pairs

    raw.mkdir(parents=True)
    for split, n in counts.items():
        with (
            open(raw / f"{split}.{SRC}", "w", encoding="utf-8", newline="\n") as src,
            open(raw / f"{split}.{TGT}", "w", encoding="utf-8", newline="\n") as tgt,
        ):
            for pair in itertools.islice(iter_pairs(SEED, split), n):
                src.write(pair.src + "\n")
                tgt.write(pair.tgt + "\n")


def write_sgm(text: Path, sgm: Path, kind: str, lang: str) -> None:
    with open(text, encoding="utf-8") as inp, open(sgm, "w", encoding="utf-8") as out:
        out.write(f'<{kind}set setid="newstest2014" srclang="any" trglang="{lang}">\n')
        out.write(f'<doc sysid="{kind}" docid="synthetic" origlang="{SRC}">\n')
        for number, line in enumerate(inp, start=1):
            text = escape(line.removesuffix("\n"))
            out.write(f'<seg id="{number}">{text}</seg>\n')
        out.write(f"</doc>\n</{kind}set>\n")


def write_archives(raw: Path, dest: Path) -> None:
    """The archives ``admin.data.prepare`` reads for WMT'14 En-De, made of ``raw``: all train
    pairs in Europarl (Common Crawl and News Commentary empty), valid as newstest2013,
    test as the newstest2014 SGM pair."""
    from admin.data.wmt14 import EN_DE_TRAIN

    dest.mkdir(parents=True)
    sgm = {f"test-full/newstest2014-deen-src.{SRC}.sgm": ("src", SRC),
           f"test-full/newstest2014-deen-ref.{TGT}.sgm": ("ref", TGT)}  # fmt: skip
    for member, (kind, lang) in sgm.items():
        write_sgm(raw / f"test.{lang}", dest / Path(member).name, kind, lang)
    (europarl, prefix), *empty = EN_DE_TRAIN
    archives: dict[str, dict[str, Path | None]] = {
        europarl: {f"{prefix}.{lang}": raw / f"train.{lang}" for lang in LANGS},
        **{name: {f"{pre}.{lang}": None for lang in LANGS} for name, pre in empty},
        "dev.tgz": {f"dev/newstest2013.{lang}": raw / f"valid.{lang}" for lang in LANGS},
        "test-full.tgz": {member: dest / Path(member).name for member in sgm},
    }
    for name, members in archives.items():
        # level 1: packing is set-up, not measured; unpacking costs about the same
        with tarfile.open(dest / name, "w:gz", compresslevel=1) as tar:
            for member, source in members.items():
                if source is None:
                    tar.addfile(tarfile.TarInfo(member))  # an empty file
                else:
                    tar.add(source, arcname=member)
    for member in sgm:
        (dest / Path(member).name).unlink()


def spawn(ctx: Context, call: Call, log: Path) -> Usage:
    """One process through :data:`LAUNCH`: its wall time, peak RSS and bytes written."""
    argv, stdin, stdout = call
    report = log.with_name("usage.txt")
    with ExitStack() as files:
        err = files.enter_context(open(log, "ab"))
        fin = files.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL
        fout = files.enter_context(open(stdout, "wb")) if stdout else err
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCH, str(report), *argv]
        subprocess.run(launcher, stdin=fin, stdout=fout, stderr=err, cwd=REPO, env=ctx.env())
    seconds, peak, written, status = report.read_text().split()
    report.unlink()
    if int(status) != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{Path(argv[0]).name} {argv[1:3]} failed ({status}):\n{tail}")
    return Usage(float(seconds), int(peak), int(written))


def words_per_line(lines: Iterable[str]) -> float:
    """Mean whitespace-separated words per line."""
    words = count = 0
    for line in lines:
        words += len(line.split())
        count += 1
    return words / count


def measure_size(ctx: Context, pairs: int, work: Path) -> tuple[list[Measured], list[str], float]:
    """Every step (ours, then the reference) on a fresh corpus of ``pairs`` train pairs."""
    from admin.data.corpus import chain_files
    from admin.data.registry import get_dataset
    from admin.data.wmt14 import TEST_SEGMENTS

    counts = {"train": pairs, "valid": 500 if ctx.quick else 3000, "test": TEST_SEGMENTS}
    raw, archives, log = work / "raw", work / "archives", work / "steps.log"
    began = time.perf_counter()
    write_corpus(raw, counts)
    write_archives(raw, archives)
    notes = [f"{label(pairs)}: corpus and archives made in {time.perf_counter() - began:.0f} s"]
    synthetic_wpl = words_per_line(chain_files([raw / f"train.{lang}" for lang in LANGS]))
    py, workers = sys.executable, str(ctx.cores)
    sw, merges = str(VENV_BIN / "subword-nmt"), str(get_dataset(DATASET).bpe_merges)
    d = {name: work / name for name in ("prep", "tok", "clean", "bpe", "bin")}
    r = {name: work / f"ref-{name}" for name in ("tok", "bpe", "bin")}
    r["tok"].mkdir()
    r["bpe"].mkdir()
    files = [f"{split}.{lang}" for split in SPLITS for lang in LANGS]
    train = [f"train.{lang}" for lang in LANGS]
    measured: list[Measured] = []

    def run(step: str, tool: str, inputs: list[Path], outputs: list[Path], *calls: Call) -> None:
        sentences = count_lines(inputs)  # before: a step may write next to its input
        usage = spawn(ctx, calls[0], log)
        for call in calls[1:]:  # a reference run once per file: one after the other
            usage += spawn(ctx, call, log)
        measured.append(Measured(pairs, step, tool, sentences, usage, disk_bytes(outputs)))

    raw_all = [raw / f for f in files]
    run("prepare", "ours", raw_all, [d["prep"]],
        ([py, "-m", "admin.data.prepare", "--dataset", DATASET, "--archives", str(archives),
          "--out", str(d["prep"]), "--workers", workers], None, None))  # fmt: skip
    run("tokenize", "ours", raw_all, [d["tok"]],
        ([py, "-m", "admin.data.tokenize", "--src", SRC, "--tgt", TGT, "--in", str(raw),
          "--out", str(d["tok"]), "--normalize-punct", "--aggressive", "--workers", workers],
         None, None))  # fmt: skip
    run("tokenize", "sacremoses", raw_all, [r["tok"]], *(
        ([str(VENV_BIN / "sacremoses"), "-l", f.split(".")[1], "-j", workers, "-q",
          "normalize", "tokenize", "-a", "-x"], raw / f, r["tok"] / f) for f in files
    ))  # fmt: skip
    d["clean"].mkdir()
    run("clean", "ours", [d["tok"] / f for f in train], [d["clean"]],
        ([py, "-c", CLEAN_CODE, *(str(d["tok"] / f) for f in train),
          *(str(d["clean"] / f) for f in train), *map(str, CLEAN)], None, None))  # fmt: skip
    prep_train = [d["prep"] / f for f in train]
    codes, ref_codes = work / "code", work / "ref-code"
    run("bpe-learn", "ours", prep_train, [codes],
        ([py, "-c", LEARN_CODE, *map(str, prep_train), merges, str(codes), workers],
         None, None))  # fmt: skip
    run("bpe-learn", "subword-nmt", prep_train, [ref_codes],
        (["sh", "-c", REF_LEARN, "sh", *map(str, prep_train), str(work / "ref-joined"), sw,
          merges, workers, str(ref_codes)], None, None))  # fmt: skip
    prep_all = [d["prep"] / f for f in files]
    run("bpe-apply", "ours", prep_all, [d["bpe"]],
        ([py, "-m", "admin.data.bpe", "--src", SRC, "--tgt", TGT, "--in", str(d["prep"]),
          "--out", str(d["bpe"]), "--codes", str(codes), "--workers", workers],
         None, None))  # fmt: skip
    run("bpe-apply", "subword-nmt", prep_all, [r["bpe"]], *(
        ([sw, "apply-bpe", "-c", str(codes), "--num-workers", workers,
          "-i", str(d["prep"] / f), "-o", str(r["bpe"] / f)], None, None) for f in files
    ))  # fmt: skip
    bpe_all = [d["bpe"] / f for f in files]
    run("binarize", "ours", bpe_all, [d["bin"]],
        ([py, "-m", "admin.data.binarize", "--src", SRC, "--tgt", TGT, "--in", str(d["bpe"]),
          "--out", str(d["bin"]), "--workers", workers], None, None))  # fmt: skip
    run("binarize", "fairseq-preprocess", bpe_all, [r["bin"]],
        ([str(VENV_BIN / "fairseq-preprocess"), "--source-lang", SRC, "--target-lang", TGT,
          *(x for s in SPLITS for x in (f"--{s}pref", str(d["bpe"] / s))),
          "--destdir", str(r["bin"]), "--joined-dictionary", "--workers", workers],
         None, None))  # fmt: skip

    # The whole WMT path, the README's data preparation: its time, peak and bytes.
    path = [m for m in measured if m.tool == "ours" and m.step in WMT_PATH]
    total = path[0].usage
    for m in path[1:]:
        total += m.usage
    output = sum(m.output for m in path)
    measured.append(Measured(pairs, "+".join(WMT_PATH), "ours", path[0].sentences, total, output))

    # The same bytes as the reference, or the speed comparison would be unfair.
    bins = [f"{s}.{SRC}-{TGT}.{lang}.bin" for s in SPLITS for lang in LANGS]
    same = {
        "tokenize": filecmp.cmpfiles(d["tok"], r["tok"], files, shallow=False)[0],
        "bpe-learn": [codes.name] if filecmp.cmp(codes, ref_codes, shallow=False) else [],
        "bpe-apply": filecmp.cmpfiles(d["bpe"], r["bpe"], files, shallow=False)[0],
        "binarize": filecmp.cmpfiles(d["bin"], r["bin"], bins, shallow=False)[0],
    }
    with open(codes, encoding="utf-8") as handle:
        learned = sum(1 for line in handle if not line.startswith("#version"))
    notes.append(
        f"{label(pairs)}: outputs byte-identical to the reference's: "
        + ", ".join(
            f"{step} {len(ok)}/{1 if step == 'bpe-learn' else len(files)}"
            for step, ok in same.items()
        )  # fmt: skip
        + f"; clean kept {count_lines([d['clean'] / train[0]])} of {pairs} pairs; "
        f"{learned} of {merges} merges learned"
        + (" (no pair left that occurs twice)" if learned < int(merges) else "")
    )
    return measured, notes, synthetic_wpl


def projections(
    measured: list[Measured], small: int, large: int, scale_words: dict[str, float], cores: int
) -> tuple[list[Figure], str]:
    """Each WMT step of ours at a dataset's full size: its time, peak RSS and disk fitted
    as ``value(n) = value(large) * (n / large) ** k`` through the two measured sizes, with
    ``n`` in words (``scale_words``: the dataset's train words over the large corpus's).
    Time is taken as at least linear (k >= 1: start-up makes the small size's time
    relatively large), memory as measured (k >= 0), disk as linear (a BPE code file, the
    same size at both sizes, as fixed)."""
    by_key = {(m.pairs, m.step): m for m in measured if m.tool == "ours"}
    figs: list[Figure] = []
    rows = [
        f"| dataset | step | hours ({cores} cores) | peak RSS (MiB) | left on disk (GiB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    span = math.log(large / small)
    for dataset, scale in scale_words.items():
        total_s, total_peak, total_disk = 0.0, 0.0, 0.0
        for step in WMT_PATH:
            big, little = by_key[large, step], by_key[small, step]
            k_time = max(1.0, math.log(big.usage.seconds / little.usage.seconds) / span)
            k_mem = max(0.0, math.log(big.usage.peak_kib / little.usage.peak_kib) / span)
            seconds = big.usage.seconds * scale**k_time
            peak = big.usage.peak_kib / 1024 * scale**k_mem
            # text and binaries grow with the corpus; a code file (its merges) does not
            fixed = big.output < 1.5 * little.output
            disk = big.output * (1 if fixed else scale) / 2**30
            total_s += seconds
            total_peak = max(total_peak, peak)
            total_disk += disk
            rows.append(f"| {dataset} | {step} | {fmt(seconds / 3600)} | {fmt(peak)} "
                        f"| {fmt(disk)} |")  # fmt: skip
        rows.append(f"| {dataset} | all four | {fmt(total_s / 3600)} | {fmt(total_peak)} "
                    f"| {fmt(total_disk)} |")  # fmt: skip
        figs += [
            Figure(NAME, f"{dataset} at full size (projected): data preparation, {cores} cores",
                   [total_s / 3600], "h"),
            Figure(NAME, f"{dataset} at full size (projected): peak RSS of one process",
                   [total_peak], "MiB"),
            Figure(NAME, f"{dataset} at full size (projected): data left on disk",
                   [total_disk], "GiB"),
        ]  # fmt: skip
    return figs, "\n".join(rows)


def figures(measured: list[Measured], small: int, large: int) -> list[Figure]:
    figs = []
    for m in measured:
        head = f"{label(m.pairs)} pairs: {m.step}, {m.tool}"
        figs += [
            Figure(NAME, f"{head}: speed", [m.sentences / m.usage.seconds], "sent/s"),
            Figure(NAME, f"{head}: peak RSS", [m.usage.peak_kib / 1024], "MiB"),
            Figure(NAME, f"{head}: written", [m.usage.written / 2**20], "MiB"),
        ]
    by_key = {(m.pairs, m.step, m.tool): m for m in measured}
    span = f"{label(small)}→{label(large)}"
    for (pairs, step, tool), big in by_key.items():
        if pairs != large or (small, step, tool) not in by_key:
            continue
        little = by_key[small, step, tool]
        flat = Target("<=", FLAT) if tool == "ours" else None
        figs += [
            Figure(NAME, f"{step}, {tool}: time growth {span}",
                   [big.usage.seconds / little.usage.seconds], "x"),
            Figure(NAME, f"{step}, {tool}: peak RSS growth {span}",
                   [big.usage.peak_kib / little.usage.peak_kib], "x", flat),
            Figure(NAME, f"{step}, {tool}: written growth {span}",
                   [big.usage.written / max(1, little.usage.written)], "x"),
        ]  # fmt: skip
    return figs


def table(measured: list[Measured]) -> str:
    rows = [
        "| pairs | step | tool | sentences | s | sent/s | peak RSS (MiB) | written (MiB) "
        "| left on disk (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in measured:
        u = m.usage
        cells = [label(m.pairs), m.step, m.tool, str(m.sentences), fmt(u.seconds),
                 fmt(m.sentences / u.seconds), fmt(u.peak_kib / 1024), fmt(u.written / 2**20),
                 fmt(m.output / 2**20)]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run(ctx: Context) -> Result:
    small, large = QUICK_SIZES if ctx.quick else SIZES
    measured: list[Measured] = []
    notes = [
        f"train pairs {label(small)} and {label(large)} (+ valid, + the 3003 newstest2014 "
        f"test pairs), WMT'14 En-De settings, --workers / -j / --num-workers {ctx.cores} "
        "(this run's usable cores) for ours and the references; each step once per size, ours "
        "first; sentences = lines the step reads, both sides; the large size has "
        f"{large / small:g}x the train pairs: a linear step's time and bytes grow about that "
        "much (less at small sizes, where start-up dominates), a streaming step's memory 1x",
        "peak RSS is the largest single process of the step (wait4 ru_maxrss over the step "
        "and the children it reaped), not their sum: a node running N workers holds up to "
        "about N+1 of them; joblib's workers (sacremoses -j) may exit unreaped and go "
        "uncounted, but its main process holds every line (sacremoses/cli.py reads stdin "
        "into a list)",
        "written = wait4 ru_oublock x 512 (= /proc/<pid>/io write_bytes: scratch files "
        "deleted later included); each step is spawned by a bare-interpreter launcher "
        "whose ~9 MiB is the floor of every peak RSS; "
        "`left on disk` in the details is what the step's outputs take afterwards",
        "the references cannot match: prepare (the reference is Transformer-Clinic's "
        "wmt14en-de.sh of Moses Perl scripts, not installed) and clean (clean-corpus-n.perl, "
        "not installed) have none; sacremoses has no remove-non-printing step (prepare has) "
        "and runs one process per file, and splits no line-final period after a "
        "non-breaking prefix (ours, as tokenizer.perl since Moses 9fc964da, does: the "
        "tokenize files that differ); ours bpe = bpe-learn + bpe-apply in two processes "
        "(the bpe rule runs both in one); binarize's reference is the same fairseq-preprocess "
        "call without our line-count check and wrapper process",
    ]
    synthetic_wpl = 0.0
    for pairs in (small, large):
        work = ctx.workdir / f"{NAME}-{pairs}"
        work.mkdir(parents=True)
        try:
            got, size_notes, synthetic_wpl = measure_size(ctx, pairs, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # at 1M pairs, about a GB
        measured += got
        notes += size_notes
    from admin.data.sgm import read_segments

    newstest = sorted(NEWSTEST.glob("*.sgm"))
    real_wpl = words_per_line(seg for path in newstest for seg in read_segments(path))
    scale = {name: n * real_wpl / (large * synthetic_wpl) for name, n in WMT_PAIRS.items()}
    proj, proj_table = projections(measured, small, large, scale, ctx.cores)
    full = ", ".join(f"{name} {n:,} pairs" for name, n in WMT_PAIRS.items())
    notes.append(
        f"projected to the full WMT'14 train sets ({full}, Hugging Face's wmt14 dataset "
        "card, before cleaning) in words: "
        f"the synthetic corpus has {synthetic_wpl:.1f} words per line, newstest2014 "
        f"({len(newstest)} SGM files in {NEWSTEST.name}, the only WMT text here; its news "
        f"sentences stand in for the train sets' lengths) {real_wpl:.1f}; each step's value "
        "fitted through the two sizes as a power of the size (time at least linear, disk "
        "linear); on this run's cores: prepare, bpe-apply and binarize spread lines over "
        "--workers (up to that many times faster on a node with more cores, not measured "
        "here), bpe-learn's merge loop runs on one core; WMT'14 En-Fr's own merge count "
        "and post-BPE clean are not modelled"
    )  # fmt: skip
    details = table(measured) + "\n\nProjected to the full train sets:\n\n" + proj_table
    return Result(figures(measured, small, large) + proj, notes, details)
