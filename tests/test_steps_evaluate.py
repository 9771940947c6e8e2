"""admin.evaluate: the real fairseq-generate on the averaged tiny model, every test
sentence translated, BLEU as fairseq computes it, sacreBLEU, compound splitting."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import sacrebleu

from admin.common import run_folder as rf
from admin.common.errors import AdminError
from admin.evaluate import compound_split, fairseq_bleu, generate_hparams, parse_generate
from tests import steps_support
from tests.conftest import VENV_BIN
from tests.steps_support import ok, run_step

_BLEU4 = re.compile(r"^Generate test with beam=2: (BLEU4 = .*)$", re.M)
GENERATE = json.dumps({"beam": 2, "lenpen": 0.6, "max_len_b": 20, "batch_size": 7})


@pytest.fixture(scope="session")
def evaluated_run(tiny_databin, tmp_path_factory):
    run = steps_support.trained_admin_run(tiny_databin, tmp_path_factory)
    ok(run_step(
        "average", "--checkpoints", run / "checkpoints", "--status", run / "status.json",
        "--last", 3, "--out", run / "average.json",
    ))  # fmt: skip
    # batch_size 7: 60 = 8 x 7 + 4, a last batch fairseq 0.12 would drop without
    # --required-batch-size-multiple 1 (facebookresearch/fairseq#5036).
    proc = ok(run_step(
        "evaluate", "--data-bin", tiny_databin, "--average", run / "average.json",
        "--hparams", GENERATE, "--compound-split", "--device", "cpu",
    ))  # fmt: skip
    return run, proc


@pytest.mark.slow
def test_every_sentence_translated_in_order(evaluated_run):
    run, _ = evaluated_run
    generated = (run / "generate.txt").read_text()
    h_lines = re.findall(r"^H-(\d+)\t[^\t]*\t(.*)$", generated, re.M)
    assert len(h_lines) == 60
    by_id = dict((int(i), hyp) for i, hyp in h_lines)
    assert (run / "hyp.tok.txt").read_text().splitlines() == [by_id[i] for i in range(60)]
    for name in ("ref.tok.txt", "hyp.detok.txt", "ref.detok.txt"):
        assert len((run / name).read_text().splitlines()) == 60
    assert "@@" not in (run / "hyp.tok.txt").read_text() + (run / "ref.tok.txt").read_text()


@pytest.mark.slow
def test_scores(evaluated_run):
    run, proc = evaluated_run
    scores = json.loads((run / "scores.json").read_text())
    assert scores["status"] == "completed" and scores["num_sentences"] == 60
    assert (scores["beam"], scores["lenpen"]) == (2, 0.6)
    # Tokenized BLEU is fairseq-generate's own BLEU4, to every printed digit.
    printed = _BLEU4.search((run / "generate.txt").read_text())[1]
    assert scores["bleu_tokenized_line"] == printed
    assert f"BLEU4 = {scores['bleu_tokenized']:.2f}," in printed
    # sacreBLEU on the detokenized files, with its signature.
    hyps = (run / "hyp.detok.txt").read_text().splitlines()
    refs = (run / "ref.detok.txt").read_text().splitlines()
    assert scores["sacrebleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert scores["sacrebleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|")
    assert scores["sacrebleu_references"] == "detokenized T- lines"  # no --ref-raw given
    assert scores["sacrebleu_signature"].endswith(f"version:{sacrebleu.__version__}")
    assert isinstance(scores["bleu_compound_split"], float)
    assert "BLEU" in proc.stdout


@pytest.mark.slow
def test_raw_references(tiny_databin, evaluated_run, tmp_path):
    """--ref-raw: sacreBLEU scores against the given file, case-insensitively with
    --sacrebleu-lowercase, and says so in scores.json.  The "raw" references here are the
    run's own detokenized output in upper case: 100 when case is ignored, 0 otherwise
    (the tiny model's BLEU against the real references is 0, which would show nothing)."""
    run, _ = evaluated_run
    hyps = (run / "hyp.detok.txt").read_text().splitlines()
    raw = [h.upper() for h in hyps]
    assert sum(r != h for r, h in zip(raw, hyps, strict=True)) > 30
    (tmp_path / "test.raw.en").write_text("".join(r + "\n" for r in raw))
    ok(run_step(
        "evaluate", "--data-bin", tiny_databin, "--average", run / "average.json",
        "--hparams", GENERATE, "--device", "cpu", "--out-dir", tmp_path,
        "--ref-raw", tmp_path / "test.raw.en", "--sacrebleu-lowercase",
    ))  # fmt: skip
    scores = json.loads((tmp_path / "scores.json").read_text())
    before = json.loads((run / "scores.json").read_text())
    assert (tmp_path / "hyp.detok.txt").read_text().splitlines() == hyps  # same translation
    assert (tmp_path / "ref.detok.txt").read_text().splitlines() == raw
    assert scores["sacrebleu_references"] == "raw"
    assert scores["sacrebleu_signature"].startswith("nrefs:1|case:lc|eff:no|tok:13a|")
    assert scores["sacrebleu"] == pytest.approx(100.0)
    assert sacrebleu.corpus_bleu(hyps, [raw]).score < 1  # what case:mixed would give
    # tokenized BLEU scores against the T- lines either way
    assert scores["bleu_tokenized_line"] == before["bleu_tokenized_line"]


@pytest.mark.slow
def test_raw_references_checked_before_generating(tiny_databin, evaluated_run, tmp_path):
    run, _ = evaluated_run
    (tmp_path / "short.en").write_text("only one line\n")
    args = ["--data-bin", tiny_databin, "--average", run / "average.json", "--hparams", GENERATE,
            "--device", "cpu", "--out-dir", tmp_path]  # fmt: skip
    proc = run_step("evaluate", *args, "--ref-raw", tmp_path / "short.en")
    assert proc.returncode == 2
    assert "short.en has 1 lines, the test set 60" in proc.stderr
    proc = run_step("evaluate", *args, "--ref-raw", tmp_path / "test.raw.en")
    assert proc.returncode == 2
    assert "raw references" in proc.stderr and "test.raw.en are missing" in proc.stderr
    assert not (tmp_path / "generate.txt").exists() and not (tmp_path / "scores.json").exists()


def test_fairseq_bleu_equals_fairseq_score(tmp_path):
    """Non-trivial BLEU (not just the tiny model's near-zero) against the real fairseq-score."""
    refs = [
        "the cat sat on the mat .", "there is a <<unk>> in the garden , said the old man .",
        "we couldn &apos;t believe that it could do this .", "state-of-the-art models are large",
    ] * 5  # fmt: skip
    hyps = [" ".join(w for k, w in enumerate(r.split()) if k % 3 != 1) for r in refs]
    hyps[0] = "the cat sat on a mat <unk> ."
    (tmp_path / "sys.txt").write_text("".join(h + "\n" for h in hyps))
    (tmp_path / "ref.txt").write_text("".join(r + "\n" for r in refs))
    proc = subprocess.run(
        [str(VENV_BIN / "fairseq-score"), "--sys", str(tmp_path / "sys.txt"),
         "--ref", str(tmp_path / "ref.txt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    score, line = fairseq_bleu(hyps, refs)
    assert line in proc.stdout
    assert score > 5  # 8.0 here: precisions well away from zero


def test_compound_split_matches_the_perl_script():
    # Expected output of compound_split_bleu.sh's `perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g'`.
    at = "##AT##-##AT##"
    cases = {
        "a-b-c x @-@ y well-known": f"a {at} b-c x @ {at} @ y well {at} known",
        "--flag -x a--b e-": f"- {at} flag -x a {at} -b e-",
        "state-of-the-art 3-4": f"state {at} of {at} the {at} art 3 {at} 4",
    }
    for text, want in cases.items():
        assert compound_split(text) == want


def test_a_missing_translation_is_an_error():
    lines = "".join(f"T-{i}\tref {i}\nH-{i}\t-0.5\thyp {i}\n" for i in range(60) if i != 17)
    with pytest.raises(AdminError, match="translated 59 of the 60"):
        parse_generate(lines, 60)
    full = "".join(f"H-{i}\t-0.5\thyp {i}\nT-{i}\tref {i}\n" for i in reversed(range(60)))
    hyps, refs = parse_generate(full, 60)
    assert hyps[:2] == ["hyp 0", "hyp 1"] and refs[-1] == "ref 59"  # sorted by id


@pytest.mark.slow
def test_a_flagged_run_is_scored_and_keeps_every_checkpoint(
    tiny_databin, tmp_path, tmp_path_factory
):
    """A verdict is a label: a run flagged diverged is averaged and scored like any other
    (the real steps), and checkpoints.keep none deletes nothing of it."""
    trained = steps_support.trained_admin_run(tiny_databin, tmp_path_factory)
    run = tmp_path / "results" / "tiny" / "admin" / "2-2" / "seed1"
    shutil.copytree(trained, run)
    status = json.loads((run / "status.json").read_text())
    flagged = {**status, "status": "diverged", "rule": "stuck", "reason": "stuck: a test label"}
    (run / "status.json").write_text(json.dumps(flagged))
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "checkpoint_last.pt" in before and "checkpoint3.pt" in before
    ok(run_step("average", "--checkpoints", run / "checkpoints", "--status", run / "status.json",
                "--last", 3, "--out", run / "average.json"))  # fmt: skip
    proc = ok(run_step(
        "evaluate", "--data-bin", tiny_databin, "--average", run / "average.json",
        "--hparams", GENERATE, "--device", "cpu", "--keep-checkpoints", "none",
    ))  # fmt: skip
    scores = json.loads((run / "scores.json").read_text())
    assert scores["status"] == "diverged" and scores["num_sentences"] == 60
    assert isinstance(scores["bleu_tokenized"], float) and scores["sacrebleu"] is not None
    assert "(a run flagged diverged)" in proc.stdout and "checkpoints kept" in proc.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert not (rf.read_record(rf.RunFolder(run)) or {}).get("pruned")
    # The same policy prunes a completed run (checkpoint_avg.pt stays).
    (run / "status.json").write_text(json.dumps(status))
    scores["status"] = "completed"
    ok(run_step(
        "evaluate", "--data-bin", tiny_databin, "--average", run / "average.json",
        "--hparams", GENERATE, "--device", "cpu", "--keep-checkpoints", "none",
    ))  # fmt: skip
    assert not list((run / "checkpoints").glob("*.pt"))
    assert (run / "checkpoint_avg.pt").is_file()


def test_a_flagged_run_without_a_checkpoint_is_not_generated(tmp_path):
    (tmp_path / "average.json").write_text(
        json.dumps({"status": "diverged", "checkpoint": None, "averaged": [], "epochs": [],
                    "note": "no epoch checkpoint: the run stopped before its first epoch's end"})
    )  # fmt: skip
    ok(run_step(
        "evaluate", "--data-bin", tmp_path / "no-such-data-bin", "--average",
        tmp_path / "average.json", "--beam", 4, "--lenpen", 0.6, "--compound-split",
    ))  # fmt: skip
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["status"] == "diverged" and scores["bleu_tokenized"] is None
    assert scores["bleu_compound_split"] is None and scores["num_sentences"] == 0
    assert scores["note"].startswith("no epoch checkpoint")
    for name in ("generate.txt", "hyp.tok.txt", "ref.tok.txt", "hyp.detok.txt", "ref.detok.txt"):
        assert (tmp_path / name).read_text() == ""
    assert not (tmp_path / "generate.log").exists()


def test_fp16_decoding_is_the_gpus_and_dropped_on_the_cpu():
    """IWSLT'14's preset decodes in fp16, as eval_iwslt_de-en.sh does (--fp16): kept on a
    GPU, dropped on the CPU, where half precision is not what fairseq-generate runs."""
    given = '{"beam": 5, "fp16": true, "batch_size": 128}'
    assert generate_hparams(given, device="cuda") == {
        "beam": 5, "fp16": True, "batch_size": 128, "gen_subset": "test",
    }  # fmt: skip
    assert generate_hparams(given, device="cpu") == {
        "beam": 5, "batch_size": 128, "cpu": True, "gen_subset": "test",
    }  # fmt: skip


@pytest.mark.slow
def test_scores_name_the_precision_they_were_decoded_in(evaluated_run):
    run, _ = evaluated_run
    assert json.loads((run / "scores.json").read_text())["precision"] == "fp32"  # the CPU
