"""How fast is the demo corpus made, and how well does a small stock Transformer learn it on CPU?

Generates the corpus, tokenizes it with sacremoses (``en`` rules, cased), learns joint BPE with
subword-nmt, binarizes with ``fairseq-preprocess --joined-dictionary``, trains fairseq's stock
``transformer`` on CPU for a fixed wall-clock budget, decodes the test set with
``fairseq-generate`` and prints BLEU (fairseq's, on BPE-removed tokenized text) and sacreBLEU
(on detokenized text) beside the timings. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_demo_corpus.py --minutes 2 --layers 2 --dim 128
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sacrebleu
from sacremoses import MosesDetokenizer, MosesTokenizer
from subword_nmt.apply_bpe import BPE
from subword_nmt.learn_bpe import learn_bpe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout, installed or not
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

from admin.data.demo_corpus import SPLITS, SRC_LANG, TGT_LANG, write_corpus  # noqa: E402

BIN = Path(sys.executable).parent
# fairseq checkpoints hold an argparse.Namespace; torch >= 2.6 needs it allow-listed to load them
GENERATE = (
    "from admin.common.checkpoints import allow_fairseq_checkpoints; allow_fairseq_checkpoints(); "
    "from fairseq_cli.generate import cli_main; cli_main()"
)


def tokenize(raw: Path, tok: Path) -> None:
    moses = MosesTokenizer(lang="en")  # the pipeline's fallback rules for the synthetic codes
    for split in SPLITS:
        for lang in (SRC_LANG, TGT_LANG):
            lines = (raw / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            out = [moses.tokenize(line, escape=False, return_str=True) for line in lines]
            (tok / f"{split}.{lang}").write_text("\n".join(out) + "\n", encoding="utf-8")


def bpe(tok: Path, out: Path, merges: int) -> None:
    joint = "".join((tok / f"train.{lang}").read_text() for lang in (SRC_LANG, TGT_LANG))
    codes = out / "codes"
    with open(codes, "w", encoding="utf-8") as handle:
        learn_bpe(joint.splitlines(keepends=True), handle, merges)
    with open(codes, encoding="utf-8") as handle:
        model = BPE(handle)
    for split in SPLITS:
        for lang in (SRC_LANG, TGT_LANG):
            lines = (tok / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            text = "\n".join(model.process_line(line) for line in lines) + "\n"
            (out / f"{split}.{lang}").write_text(text, encoding="utf-8")


def run(cmd: list[str], log: Path) -> float:
    start = time.monotonic()
    with open(log, "w") as handle:
        done = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        sys.exit(f"{cmd[0]} failed ({done.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    return time.monotonic() - start


def train_cmd(args: argparse.Namespace, data: Path, ckpt: Path) -> list[str]:
    layers, dim = str(args.layers), str(args.dim)
    return [
        str(BIN / "fairseq-train"), str(data), "--cpu", "--arch", "transformer",
        "--encoder-layers", layers, "--decoder-layers", layers,
        "--encoder-embed-dim", dim, "--decoder-embed-dim", dim,
        "--encoder-ffn-embed-dim", str(2 * args.dim), "--decoder-ffn-embed-dim", str(2 * args.dim),
        "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
        "--share-all-embeddings", "--dropout", "0.1",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", str(args.lr),
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(args.warmup),
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-tokens", str(args.max_tokens), "--seed", "1",
        "--stop-time-hours", f"{args.minutes / 60:.5f}", "--max-epoch", "1000",
        "--max-update", str(args.max_update),
        "--save-dir", str(ckpt), "--no-epoch-checkpoints", "--no-last-checkpoints",
        "--log-format", "simple", "--log-interval", "20", "--num-workers", "0",
        "--validate-interval-updates", "0", "--keep-best-checkpoints", "0",
    ]  # fmt: skip


def generate(data: Path, ckpt: Path) -> tuple[list[str], list[str], str, float]:
    cmd = [
        sys.executable, "-c", GENERATE, str(data), "--cpu",
        "--path", str(ckpt / "checkpoint_best.pt"),
        "--gen-subset", "test", "--beam", "5", "--batch-size", "128", "--remove-bpe",
        "--max-len-a", "1.5", "--max-len-b", "10",
    ]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.monotonic() - start
    hyps: dict[int, str] = {}
    refs: dict[int, str] = {}
    for line in done.stdout.splitlines():
        if match := re.match(r"([HT])-(\d+)\t(?:\S+\t)?(.*)$", line):
            kind, idx, text = match.groups()
            (hyps if kind == "H" else refs)[int(idx)] = text
    order = sorted(refs)
    bleu_line = next(line for line in done.stdout.splitlines() if "BLEU" in line)
    return [hyps[i] for i in order], [refs[i] for i in order], bleu_line, seconds


def last_line(log: Path, marker: str) -> str:
    lines = [line for line in log.read_text().splitlines() if marker in line]
    return lines[-1].split("|", 3)[-1].strip() if lines else f"(no line with {marker!r})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="training wall-clock budget")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument(
        "--max-update", type=int, default=0, help="also stop after N updates (0: time only)"
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--merges", type=int, default=2000, help="joint BPE merges")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_demo_"))
    raw, tok, sub, data, ckpt = (work / name for name in ("raw", "tok", "bpe", "bin", "ckpt"))
    for folder in (tok, sub):
        folder.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    start = time.monotonic()
    write_corpus(raw, args.seed)
    times["generate"] = time.monotonic() - start
    start = time.monotonic()
    tokenize(raw, tok)
    times["tokenize"] = time.monotonic() - start
    start = time.monotonic()
    bpe(tok, sub, args.merges)
    times["bpe"] = time.monotonic() - start
    times["binarize"] = run(
        [
            str(BIN / "fairseq-preprocess"),
            "--source-lang",
            SRC_LANG,
            "--target-lang",
            TGT_LANG,
            "--trainpref",
            str(sub / "train"),
            "--validpref",
            str(sub / "valid"),
            "--testpref",
            str(sub / "test"),
            "--destdir",
            str(data),
            "--joined-dictionary",
            "--workers",
            "2",
        ],  # fmt: skip
        work / "preprocess.log",
    )
    times["train"] = run(train_cmd(args, data, ckpt), work / "train.log")
    hyps, refs, fairseq_bleu, times["generate+beam5"] = generate(data, ckpt)

    detok = MosesDetokenizer(lang="en")
    raw_refs = (raw / f"test.{TGT_LANG}").read_text(encoding="utf-8").splitlines()
    sacre = sacrebleu.corpus_bleu([detok.detokenize(h.split()) for h in hyps], [raw_refs])
    exact = sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(refs)

    print(f"workdir: {work}")
    print(
        f"model: transformer {args.layers}+{args.layers} layers, dim {args.dim}, "
        f"ffn {2 * args.dim}, 4 heads, shared embeddings; adam lr {args.lr}, "
        f"warmup {args.warmup}, max-tokens {args.max_tokens}, {args.minutes} min "
        f"or {args.max_update or 'any'} updates, "
        f"{args.threads} threads; joint BPE {args.merges} merges"
    )
    print("train command:", " ".join(train_cmd(args, data, ckpt)))
    print("last training epoch:", last_line(work / "train.log", "| train | epoch"))
    print("last validation:", last_line(work / "train.log", "| valid on"))
    for step, seconds in times.items():
        print(f"time {step:>15}: {seconds:7.1f} s")
    print("fairseq:", fairseq_bleu.split("Generate test with beam=5: ")[-1])
    print(f"sacreBLEU (detokenized vs raw test): {sacre.score:.2f}")
    print(f"exact-match sentences: {100 * exact:.1f}%")


if __name__ == "__main__":
    main()
