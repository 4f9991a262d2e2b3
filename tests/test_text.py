"""The text side: tokenizer, text data, text models, training, inference and predict-text.

Everything runs on tiny CSVs written by the tests and tiny models trained in seconds.
"""

import csv
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from artlab.data import text as text_sets
from artlab.labels import STYLES, SUBJECTS
from artlab.tokenizer import (
    UNK_ID,
    Tokenizer,
    TokenizerError,
    normalize,
    normalize_words,
)

ROOT = Path(__file__).resolve().parents[1]

CORPUS = ["Stormy sea at night", "Portrait of a young woman", "Still life with apples and a jug",
          "The Annunciation", "Café de la Paix, 1888!", "L'Arlésienne (Madame Ginoux)",
          "View of the river Seine at Argenteuil", "Self-portrait with a straw hat"] * 3

# Words that make each subject (and style) learnable in the tiny data sets.
SUBJECT_WORDS = {"genre_scene": ["market", "dance", "tavern"], "history_religious": ["madonna", "saint", "battle"],
                 "landscape": ["river", "mountain", "forest"], "portrait": ["portrait", "woman", "man"],
                 "still_life": ["apples", "flowers", "vase"]}
GENRES = {"genre_scene": "genre_painting", "history_religious": "religious_painting", "landscape": "landscape",
          "portrait": "portrait", "still_life": "still_life"}
SEMART_TYPES = {"genre_scene": "genre", "history_religious": "religious", "landscape": "landscape",
                "portrait": "portrait", "still_life": "still-life"}
FILLER = ["the", "of", "a", "with", "at", "evening", "old", "green", "near", "small"]


def write_text_data(root: Path, titles: int = 240, descriptions: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder = root / "text"
    folder.mkdir(parents=True, exist_ok=True)
    subjects = list(SUBJECT_WORDS)
    with open(folder / "wikiart_titles.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["title", "artist", "year", "style", "genre"])
        for i in range(titles):
            subject = subjects[i % 5]
            style = STYLES[i % 7] if i % 9 else "cubism"          # some styles are not ours
            words = [rng.choice(SUBJECT_WORDS[subject]), style.split("_")[0]] + rng.sample(FILLER, 2)
            rng.shuffle(words)
            genre = GENRES[subject] if i % 11 else "sketch_and_study"  # some genres have no subject
            writer.writerow([" ".join(words), f"artist {i % 13}", 1900, style, genre])
    with open(folder / "semart.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["description", "title", "author", "technique", "date", "type", "school", "timeframe"])
        for i in range(descriptions):
            subject = subjects[i % 5]
            text = " ".join(rng.choice(FILLER + SUBJECT_WORDS[subject]) for _ in range(30)) + "."
            writer.writerow([text, f"{SUBJECT_WORDS[subject][0].title()} {i}", f"PAINTER, {i}", "Oil", "1650",
                             SEMART_TYPES[subject] if i % 7 else "interior", "Dutch", "1601-1650"])
    return root


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text_data(tmp_path_factory) -> Path:
    return write_text_data(tmp_path_factory.mktemp("textdata"))


@pytest.fixture(scope="module")
def trained(text_data, tmp_path_factory):
    """A tiny text classifier and autoencoder trained on the tiny data, saved to a weights folder."""
    from artlab.training.text import train_autoencoder, train_classifier

    out = tmp_path_factory.mktemp("textweights")
    torch.manual_seed(0)
    clf = train_classifier(text_data, out, epochs=4, batch_size=16, lr=5e-3, embed_dim=16, hidden=16,
                           device="cpu", show_progress=False)
    ae = train_autoencoder(text_data, out, epochs=3, batch_size=16, lr=5e-3, embed_dim=16, hidden=16,
                           code_dim=16, decoder_hidden=24, slots=4, salad=0.5, device="cpu",
                           show_progress=False)
    return out, clf, ae


@pytest.fixture(scope="module")
def models(trained):
    from artlab.inference.text import TextModels
    return TextModels(trained[0], device="cpu")


# ------------------------------------------------------------------ tokenizer

def test_normalize_folds_case_accents_punctuation_digits():
    assert normalize_words("L'Arlésienne, 1888!") == ["l", "'", "arlesienne", ",", "1888", "!"]
    assert normalize("  Café   de la PAIX  ") == "cafe de la paix"
    assert normalize("Self-portrait (1889)") == "self-portrait (1889)"
    assert normalize("ﬁne Ⅻ") == "fine xii"           # compatibility forms are unfolded too


def test_round_trip_of_known_and_unknown_words():
    tok = Tokenizer.build(CORPUS, min_count=1)
    for text in CORPUS + ["Stormy apples", "stormiest tapirs", "Argenteuil 1888"]:
        assert tok.decode(tok.encode(text)) == normalize(text)


def test_unknown_words_fall_back_to_pieces_not_unk():
    tok = Tokenizer.build(CORPUS, min_count=1)
    ids = tok.encode("stormiest tapirs")
    assert UNK_ID not in ids
    assert len(ids) > 2                                 # split into pieces / characters
    assert tok.word_starts(ids).count(True) == 2        # still two words


@pytest.mark.parametrize("text", ["山水画 夜晚的海", "sunset 🌅🎨 over the sea", "a\x00b\x07c\x1b[31m red",
                                  "\u200b\u200e\ufeff zero width", "Ωμέγα κύμα", "Море ночью"])
def test_other_scripts_emoji_control_chars_do_not_crash(text):
    tok = Tokenizer.build(CORPUS, min_count=1)
    ids = tok.encode(text)
    assert ids and all(0 <= i < len(tok) for i in ids)
    assert isinstance(tok.decode(ids), str)


def test_control_chars_become_spaces():
    assert normalize_words("sea\x00at\tnight\x07") == ["sea", "at", "night"]


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=sorted(set("".join(CORPUS)) | set("ÉÀ\t\x07")), max_size=60))
def test_round_trip_property(text):
    tok = Tokenizer.build(CORPUS, min_count=1)
    assert tok.decode(tok.encode(text)) == normalize(text)
    assert normalize(normalize(text)) == normalize(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_any_unicode_encodes(text):
    tok = Tokenizer.build(CORPUS, min_count=1)
    ids = tok.encode(text, max_tokens=50)
    assert len(ids) <= 50 and all(0 <= i < len(tok) for i in ids)
    tok.decode(ids)


def test_vocabulary_save_load_round_trip(tmp_path):
    tok = Tokenizer.build(CORPUS, min_count=1)
    path = tok.save(tmp_path / "v.vocab.json")
    again = Tokenizer.load(path)
    assert again.tokens == tok.tokens
    assert again.encode("Stormy tapirs 1888") == tok.encode("Stormy tapirs 1888")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError):
        Tokenizer.load(tmp_path / "bad.json")
    with pytest.raises(TokenizerError):
        Tokenizer.load(tmp_path / "missing.json")


# ------------------------------------------------------------------ data

def test_text_data_labels_and_split_by_painting(text_data):
    train = text_sets.load_text_data(text_data, "train")
    val = text_sets.load_text_data(text_data, "val")
    everything = text_sets.load_text_data(text_data)
    assert len(train) + len(val) == len(everything) and len(val) > 0
    assert not set(t for t, k in zip(train.texts, train.kinds) if k == "title") & \
        set(t for t, k in zip(val.texts, val.kinds) if k == "title")
    # "cubism" is not one of our styles, "sketch_and_study" maps to no subject
    for text, style in zip(everything.texts, everything.labels["style"].tolist()):
        assert style == -1 or STYLES[style].split("_")[0] in text.split()
    assert (everything.labels["subject"] == -1).any() and (everything.labels["style"] == -1).any()
    assert set(everything.kinds) == {"title", "description", "semart_title"}


def test_painting_split_is_stable_and_ignores_case_and_spacing():
    assert text_sets.painting_split("Claude Monet", "Water  Lilies") == text_sets.painting_split(
        "claude monet", "water lilies")
    splits = [text_sets.painting_split("a", f"title {i}") for i in range(2000)]
    assert 0.10 < splits.count("val") / 2000 < 0.20


# ------------------------------------------------------------------ models and training

def test_noise_drops_and_swaps_whole_words():
    from artlab.training.evaluate import token_accuracy
    from artlab.training.text import add_noise

    tok = Tokenizer.build(CORPUS, min_count=1)
    ids = tok.encode("stormy tapirs at night stormiest")
    starts = tok.word_starts(ids)
    rng = random.Random(1)
    for _ in range(50):
        noisy = add_noise(ids, starts, rng, drop=0.3, swap=0.3)
        assert noisy and set(tok.decode(noisy).split()) <= set(tok.decode(ids).split())
    assert token_accuracy([[1, 2, 3]], [[1, 2, 3]]) == 1.0
    assert token_accuracy([[1, 2]], [[1, 2, 3, 4]]) == 0.5
    assert token_accuracy([[1, 9, 3, 4, 5]], [[1, 2, 3, 4]]) == 0.6


def test_word_salad_is_made_of_whole_title_words():
    from artlab.training.text import split_words, word_salad

    tok = Tokenizer.build(CORPUS, min_count=1)
    ids = tok.encode("stormy tapirs at night stormiest")
    words = split_words(ids, tok.word_starts(ids))
    assert [t for w in words for t in w] == ids and len(words) == 5
    assert any(len(w) > 1 for w in words)          # a word cut into pieces stays one word
    rng = random.Random(0)
    salads = [word_salad(4, words, rng, max_tokens=32) for _ in range(30)]
    for salad in salads:
        assert len(split_words(salad, tok.word_starts(salad))) == 4
        assert set(tok.decode(salad).split()) <= set(tok.decode(ids).split())
    assert len({tuple(s) for s in salads}) > 20      # new texts every time, not a fixed few
    assert len(word_salad(100, words, rng, max_tokens=32)) == 32


def test_models_handle_padding_consistently():
    from artlab.models.text import TextAutoencoder, TextClassifier
    from artlab.tokenizer import pad_batch

    torch.manual_seed(0)
    clf = TextClassifier(50, {"subject": 5, "style": 7}, embed_dim=8, hidden=8, embedding_pool=True).eval()
    ae = TextAutoencoder(50, embed_dim=8, hidden=8, code_dim=8, decoder_hidden=8).eval()
    alone, _ = pad_batch([[5, 6, 7]])
    together, lengths = pad_batch([[5, 6, 7], [8, 9, 10, 11, 12, 13]])
    a = clf(alone, torch.tensor([3]))["subject"][0]
    b = clf(together, lengths)["subject"][0]
    assert torch.allclose(a, b, atol=1e-5)          # padding never changes an answer
    assert torch.allclose(ae.encode(alone, torch.tensor([3]))[0], ae.encode(together, lengths)[0], atol=1e-5)
    assert ae.encode(together, lengths).shape == (2, 8)
    assert all(len(s) <= 5 for s in ae.generate(ae.encode(together, lengths), 5))


def test_slot_code_is_fixed_size_and_blind_to_padding():
    from artlab.models.text import TextAutoencoder
    from artlab.tokenizer import pad_batch

    torch.manual_seed(0)
    ae = TextAutoencoder(50, embed_dim=8, hidden=8, code_dim=12, decoder_hidden=8, slots=3).eval()
    alone, _ = pad_batch([[5, 6, 7]])
    together, lengths = pad_batch([[5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17]])
    code = ae.encode(together, lengths)
    assert code.shape == (2, 12) and code.abs().max() <= 1        # the same size whatever the length
    assert torch.allclose(ae.encode(alone, torch.tensor([3]))[0], code[0], atol=1e-5)
    with pytest.raises(ValueError, match="slots"):
        TextAutoencoder(50, code_dim=10, slots=3)


@pytest.mark.parametrize("slots", [0, 4])
def test_fast_greedy_decoding_matches_the_teacher_forced_model(slots):
    from artlab.models.text import TextAutoencoder
    from artlab.tokenizer import BOS_ID, EOS_ID, pad_batch

    torch.manual_seed(0)
    ae = TextAutoencoder(60, embed_dim=8, hidden=8, code_dim=8, decoder_hidden=12, slots=slots).eval()
    ae.out_bias.data[EOS_ID] = 1.5                  # so that some texts end early, some at their limit
    ids, lengths = pad_batch([[5, 6, 7], [8, 9, 10, 11], [12] * 9, [30, 31]])
    code = ae.encode(ids, lengths)
    limits = torch.tensor([6, 8, 12, 1])
    for row, seq in enumerate(ae.generate(code, limits)):
        assert len(seq) <= limits[row]
        with torch.no_grad():
            logits = ae(ids[row:row + 1], lengths[row:row + 1], torch.tensor([[BOS_ID] + seq]))
        expected = logits.argmax(-1)[0].tolist()
        assert expected[:len(seq)] == seq
        assert len(seq) == limits[row] or expected[len(seq)] == EOS_ID


def test_tiny_training_lowers_the_loss(trained):
    _, clf, ae = trained
    for card in (clf, ae):
        history = card["training"]["history"]
        assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(clf["metrics"]["val"]) == {"title->subject", "title->style", "description->subject"}
    assert clf["labels"] == {"subject": list(SUBJECTS), "style": list(STYLES)}


def test_save_load_round_trip(trained, text_data):
    from artlab.inference.text import load_text_autoencoder, load_text_classifier
    from artlab.training.evaluate import text_autoencoder_report, text_classifier_report

    folder, clf_card, ae_card = trained
    for name in ("text_classifier", "text_autoencoder"):
        assert (folder / f"{name}.safetensors").is_file() and (folder / f"{name}.vocab.json").is_file()
        card = json.loads((folder / f"{name}.json").read_text())
        assert card["licence"] and card["command"] and card["date"] and card["architecture"]
    model, tokenizer, card = load_text_classifier(folder, "cpu")
    val = text_sets.load_text_data(text_data, "val")
    report = text_classifier_report(model, tokenizer, val, "cpu")
    for task, result in clf_card["metrics"]["val"].items():   # fp16 storage: same answers
        assert abs(report[task]["accuracy"] - result["accuracy"]) <= 0.05
    ae, ae_tok, _ = load_text_autoencoder(folder, "cpu")
    titles = [t for t, k in zip(val.texts, val.kinds) if k == "title"]
    again = text_autoencoder_report(ae, ae_tok, titles, "cpu")
    assert 0 <= again["token_accuracy"] <= 1


def test_bag_of_words_baseline_learns(text_data):
    from artlab.training.baselines import bow_baseline

    report = bow_baseline(text_sets.load_text_data(text_data, "train"), text_sets.load_text_data(text_data, "val"))
    assert set(report) == {"title->subject", "title->style", "description->subject"}
    assert report["title->subject"]["accuracy"] > 0.6     # the subject words are in every title


def test_bag_regression_reports_every_epoch_when_asked(text_data):
    from artlab.tokenizer import normalize_words
    from artlab.training.baselines import bag_regression

    train, val = text_sets.load_text_data(text_data, "train"), text_sets.load_text_data(text_data, "val")
    seen = []
    report = bag_regression(train, val, lambda t: sorted({hash(w) % 97 for w in normalize_words(t)}), 97,
                            epochs=3, on_epoch=lambda head, epoch, reports: seen.append((head, epoch, reports)))
    assert [(head, epoch) for head, epoch, _ in seen] == [(h, e) for h in ("subject", "style") for e in (1, 2, 3)]
    last = {task: r for head, epoch, reports in seen if epoch == 3 for task, r in reports.items()}
    assert {k: r["accuracy"] for k, r in report.items()} == {k: r["accuracy"] for k, r in last.items()}


def test_missing_or_mismatched_vocabulary_is_a_weights_error(trained, tmp_path):
    import shutil

    from artlab.checkpoints import WeightsError
    from artlab.inference.text import load_text_classifier

    for suffix in (".safetensors", ".json"):
        shutil.copy(trained[0] / f"text_classifier{suffix}", tmp_path / f"text_classifier{suffix}")
    with pytest.raises(WeightsError, match="vocabulary file not found"):
        load_text_classifier(tmp_path, "cpu")
    Tokenizer.build(["just a few words"], min_count=1).save(tmp_path / "text_classifier.vocab.json")
    with pytest.raises(WeightsError, match="tokens"):
        load_text_classifier(tmp_path, "cpu")


# ------------------------------------------------------------------ inference and bad input

def _check_answer(record, text):
    assert record["text"] == text[:200]
    assert [n for n, _ in record["subject"]] and sorted(n for n, _ in record["subject"]) == sorted(SUBJECTS)
    assert sorted(n for n, _ in record["style"]) == sorted(STYLES)
    for head in ("subject", "style"):
        probs = [p for _, p in record[head]]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 0.01
    assert isinstance(record["reconstruction"], str)
    assert isinstance(record["unsure"], bool)


def test_analyze_answers_in_order(models):
    texts = ["river at evening", "portrait of a woman", "madonna with saint"]
    records = models.analyze(texts)
    assert len(records) == 3
    for record, text in zip(records, texts):
        _check_answer(record, text)
        assert "error" not in record


@pytest.mark.parametrize("text", ["", "   ", "\t\n  "])
def test_empty_text_is_an_error_record(models, text):
    [record] = models.analyze([text])
    assert record == {"text": text, "error": record["error"]} and "empty" in record["error"]


def test_only_control_chars_is_an_error_record(models):
    [record] = models.analyze(["\x00\x01\x7f\u200b"])
    assert "error" in record and "subject" not in record


@pytest.mark.parametrize("text", ["山水画 夜晚的海", "🌅🎨🌊", "sea\x00 at\x07 night\x1b", "Море ночью", "ok 🎨 山"])
def test_other_scripts_emoji_control_chars_are_answered(models, text):
    [record] = models.analyze([text])
    _check_answer(record, text)


def test_unknown_script_gets_a_low_confidence_note(models):
    [record] = models.analyze(["山水画夜晚的海"])
    assert "low confidence" in record["note"]


def test_one_megabyte_text_is_truncated_with_a_note(models):
    text = ("A river in the mountain forest near the old market. " * 20000)[:1_000_000]
    [record] = models.analyze([text])
    _check_answer(record, text)
    assert "truncated" in record["note"] and len(record["text"]) == 200


# ------------------------------------------------------------------ the command

def test_predict_text_json_from_arguments(trained, capsys):
    from artlab.cli import main

    code = main(["predict-text", "--weights", str(trained[0]), "--json", "river at evening", "  ", "madonna"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1 and len(lines) == 3                        # 1: one input was an error
    records = [json.loads(line) for line in lines]
    _check_answer(records[0], "river at evening")
    assert "error" in records[1] and records[1]["text"] == "  "
    _check_answer(records[2], "madonna")


def test_predict_text_streams_stdin_one_line_per_input(trained):
    lines = [f"river {i} at evening" for i in range(600)]
    lines[3], lines[10], lines[20], lines[30] = "", "山水画 🎨", "sea\x07night", "x" * 300_000
    stdin = ("\n".join(lines) + "\n").encode("utf-8") + b"bad \xff bytes\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "artlab", "predict-text", "--weights", str(trained[0]), "--json"],
                            input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=120)
    out = result.stdout.decode("utf-8").splitlines()
    assert len(out) == 601, result.stderr.decode()[-2000:]
    records = [json.loads(line) for line in out]
    for i, record in enumerate(records[:600]):
        assert record["text"] == lines[i][:200]
        assert ("error" in record) == (i == 3)
    assert "truncated" in records[30]["note"]
    assert records[600]["text"] == "bad \ufffd bytes" and "subject" in records[600]
    assert result.returncode == 1


def test_predict_text_readable_output_and_bad_weights(trained, tmp_path, capsys):
    from artlab.cli import main

    assert main(["predict-text", "--weights", str(trained[0]), "portrait of a man"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("portrait of a man\n  subject") and "rebuilt" in out
    assert main(["predict-text", "--weights", str(tmp_path), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_stdin_batches_keep_order_and_do_not_wait_for_a_full_batch():
    from artlab.cli.text import _stdin_batches

    stream = io.BytesIO(b"".join(f"line {i}\n".encode() for i in range(1000)) + b"last")
    batches = list(_stdin_batches(stream, 256))
    flat = [line for batch in batches for line in batch]
    assert flat == [f"line {i}" for i in range(1000)] + ["last"]
    assert all(len(b) <= 256 for b in batches)


def test_evaluate_text_prints_rnn_and_baseline(trained, text_data, capsys):
    from artlab.cli import main

    assert main(["evaluate-text", "--data", str(text_data), "--weights", str(trained[0])]) == 0
    out = capsys.readouterr().out
    for task in ("title->subject", "title->style", "description->subject"):
        assert task in out
    assert "BoW-LR" in out and "token accuracy" in out


def test_autoencoder_training_can_continue_from_a_checkpoint(trained, text_data, tmp_path):
    from artlab.inference.text import vocab_path
    from artlab.training.text import train_autoencoder

    card = train_autoencoder(text_data, tmp_path, epochs=1, batch_size=16, device="cpu", show_progress=False,
                             init=trained[0])
    assert card["training"]["continued_from"]["epochs_run"] == trained[2]["training"]["epochs_run"]
    assert card["config"] == trained[2]["config"]         # sizes come from the checkpoint continued
    assert vocab_path(tmp_path / "text_autoencoder").read_text() == \
        vocab_path(trained[0] / "text_autoencoder").read_text()


def test_train_text_command_writes_the_autoencoder_it_was_asked_for(text_data, tmp_path, capsys):
    from artlab.cli import main
    from artlab.inference.text import load_text_autoencoder

    assert main(["train-text", "--data", str(text_data), "--out", str(tmp_path), "--model", "autoencoder",
                 "--ae-epochs", "1", "--batch", "16", "--ae-code", "16", "--ae-slots", "4", "--ae-hidden", "8",
                 "--ae-decoder", "8", "--ae-salad", "0.3", "--threads", "1"]) == 0
    assert "token_accuracy" in capsys.readouterr().out
    model, _, card = load_text_autoencoder(tmp_path, "cpu")
    assert card["config"]["slots"] == 4 and card["config"]["code_dim"] == 16
    assert card["training"]["salad"] == 0.3 and "4 slots x 4 values" in card["architecture"]
    assert model.slot_queries.shape[0] == 4


# ------------------------------------------------------------------ selection split (issue 15)

def test_selection_split_is_carved_from_train_disjoint_and_stable():
    paintings = [(f"artist {i % 37}", f"title {i}") for i in range(3000)]
    splits = [text_sets.selection_split(a, t) for a, t in paintings]
    for (artist, title), split in zip(paintings, splits):
        # val is painting_split's val; selection and fit together are its train
        assert (split == "val") == (text_sets.painting_split(artist, title) == "val")
        assert text_sets.selection_split(artist.upper(), f" {title} ") == split      # stable, case and spacing
    train_count = sum(s != "val" for s in splits)
    assert 0.10 < splits.count("selection") / train_count < 0.20
    assert set(splits) == {"val", "selection", "fit"}


def test_selection_and_fit_partition_train_and_miss_val(text_data):
    loaded = {split: text_sets.load_text_data(text_data, split) for split in text_sets.SPLITS}
    assert len(loaded["selection"]) > 0 and len(loaded["fit"]) > 0
    assert sorted(loaded["fit"].texts + loaded["selection"].texts) == sorted(loaded["train"].texts)
    titles = {split: {t for t, k in zip(s.texts, s.kinds) if k == "title"} for split, s in loaded.items()}
    assert not titles["selection"] & titles["val"] and not titles["selection"] & titles["fit"]
    with pytest.raises(ValueError):
        text_sets.load_text_data(text_data, "test")


def test_classifier_card_says_which_split_chose_what(trained):
    card = trained[1]
    assert set(card["metrics"]) == {"selection", "val"}
    assert card["training_data"]["trained_on"] == "fit"
    assert "selection" in card["chosen_on"]["best_epoch"] and "once" in card["chosen_on"]["val"]
    assert set(card["baseline_bow"]) == {"selection", "val"}
    assert all(k.startswith("selection_") for r in card["training"]["history"] for k in r if "->" in k)


# ------------------------------------------------------------------ wide n-gram part (issue 15)

def test_ngram_ids_are_stable_distinct_and_within_the_buckets():
    from artlab.models.text import ngram_ids

    ids = ngram_ids("Portrait of a young woman", 1000)
    assert ids == ngram_ids("portrait  of a YOUNG woman", 1000) == sorted(set(ids))
    assert all(0 <= i < 1000 for i in ids) and len(ids) > 5      # words, pairs and character n-grams
    assert ngram_ids("Portrait of a young man", 1000) != ids


def test_wide_part_trains_and_gives_the_right_shapes():
    from artlab.models.text import TextClassifier, ngram_bags
    from artlab.tokenizer import pad_batch

    torch.manual_seed(0)
    texts = ["madonna and child", "stormy sea", "portrait of a man", "apples in a bowl"] * 4
    target = torch.tensor([0, 1, 2, 3] * 4)
    tokenizer = Tokenizer.build(texts)
    model = TextClassifier(len(tokenizer), {"subject": 4, "style": 7}, embed_dim=8, hidden=8, wide_buckets=512)
    ids, lengths = pad_batch([tokenizer.encode(t) for t in texts])
    bags = ngram_bags(texts, 512)
    out = model(ids, lengths, bags)
    assert out["subject"].shape == (16, 4) and out["style"].shape == (16, 7)
    with pytest.raises(ValueError):
        model(ids, lengths)                          # the wide part needs its n-grams
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(ids, lengths, bags)["subject"], target)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 4
    assert model.wide.weight.grad.abs().sum() > 0     # the wide part learns too


def test_classifier_without_wide_part_still_loads(trained, text_data, tmp_path):
    """Cards from before the wide part (no wide_buckets in their config) load as they were."""
    from artlab.inference.text import TextModels
    from artlab.training.text import train_classifier

    train_classifier(text_data, tmp_path, epochs=1,
                     batch_size=16, embed_dim=8, hidden=8, wide_buckets=0, device="cpu", show_progress=False)
    for name in ("text_autoencoder.json", "text_autoencoder.safetensors", "text_autoencoder.vocab.json"):
        (tmp_path / name).write_bytes((trained[0] / name).read_bytes())
    models = TextModels(tmp_path, device="cpu")
    assert models.classifier.wide is None
    assert "subject" in models.analyze(["portrait of a man"])[0]


# ------------------------------------------------------------------ long texts through the autoencoder (issue 15)

LONG_TEXT = ("The Virgin sits on a throne in a wide green landscape, holding the Child on her knee. Two angels "
             "play music at her feet while a saint points towards the Child and another reads a book beside "
             "a sleeping lion; in the distance a small town rises on a hill under a pale evening sky, and "
             "a river winds past the old walls towards the sea where three ships lie at anchor near a "
             "tower. Shepherds watch their flocks on the slopes while a rider crosses the bridge at dusk")


def test_long_text_is_cut_into_pieces_within_the_trained_length():
    from artlab.inference.text import autoencoder_pieces

    tokenizer = Tokenizer.build([LONG_TEXT])
    assert len(normalize_words(LONG_TEXT)) >= 90
    for words, tokens in ((4, 32), (12, 32), (16, 10)):
        pieces = autoencoder_pieces(LONG_TEXT, tokenizer, words, tokens)
        assert sum(pieces, []) == tokenizer.encode(LONG_TEXT)           # joined, they are the whole text
        for piece in pieces:
            assert len(piece) <= tokens and sum(tokenizer.word_starts(piece)) <= words
        assert len(pieces) >= len(normalize_words(LONG_TEXT)) / words
    # a clause that fits is kept whole: no piece of 12 words runs across "knee." and "Two"
    decoded = [tokenizer.decode(p) for p in autoencoder_pieces(LONG_TEXT, tokenizer, 12, 32)]
    assert any(d.endswith("knee.") for d in decoded)


def test_a_word_longer_than_the_piece_is_cut_into_token_windows():
    from artlab.inference.text import autoencoder_pieces

    tokenizer = Tokenizer.build(["a b c"])
    pieces = autoencoder_pieces("abcabcabcabcabc", tokenizer, 4, 5)
    assert all(len(p) <= 5 for p in pieces) and sum(pieces, []) == tokenizer.encode("abcabcabcabcabc")


def test_long_text_reconstruction_is_joined_from_its_pieces(models, monkeypatch):
    """A 100-word text gives about 100 words back: each piece rebuilt (here by a perfect copier), then joined."""
    from artlab.inference import text as inference

    calls = []

    def copy(model, sequences, device, **kwargs):
        calls.append([len(s) for s in sequences])
        return [list(s) for s in sequences]

    monkeypatch.setattr(inference, "reconstruct_ids", copy)
    record = models.analyze([LONG_TEXT])[0]
    words_in = len(normalize_words(LONG_TEXT))
    assert abs(len(normalize_words(record["reconstruction"])) - words_in) <= 2
    assert len(calls) == 1 and max(calls[0]) <= inference.AE_MAX_TOKENS
    assert len(calls[0]) >= words_in / inference.AE_PIECE_WORDS


def test_report_by_length_compares_whole_and_pieces(trained, text_data):
    from artlab.inference.text import load_text_autoencoder
    from artlab.training.evaluate import autoencoder_length_report, length_report_texts

    val = text_sets.load_text_data(text_data, "val")
    texts = length_report_texts(val)
    assert all(1 <= len(normalize_words(t)) <= 100 for t in texts)
    assert any(len(normalize_words(t)) > 25 for t in texts)           # descriptions give the long ones
    model, tokenizer, _ = load_text_autoencoder(trained[0], "cpu")
    report = autoencoder_length_report(model, tokenizer, texts + [LONG_TEXT], "cpu")
    assert list(report) == ["1-5 words", "6-12 words", "13-25 words", "26-50 words", "51-100 words"]
    assert report["51-100 words"]["texts"] >= 1
    for row in report.values():
        assert row["texts"] == 0 or 0 <= row["whole_cut"] <= 1 and 0 <= row["pieces"] <= 1
    # cut to 32 tokens, a text of 90+ words loses most of its tokens; piece by piece it need not
    assert report["51-100 words"]["whole_cut"] < 0.5


def test_very_long_text_rebuilds_its_first_pieces_with_a_note(models):
    from artlab.inference.text import AE_MAX_PIECES, AE_MAX_TOKENS

    record = models.analyze([" ".join([LONG_TEXT] * 4)])[0]
    assert "reconstruction of the first" in record["note"] and f"{AE_MAX_PIECES} pieces" in record["note"]
    assert len(record["reconstruction"].split()) <= AE_MAX_PIECES * (AE_MAX_TOKENS + 4)


def test_second_stage_trains_only_the_wide_part_and_chooses_on_selection(trained, text_data, tmp_path):
    from artlab.inference.text import load_text_classifier
    from artlab.training.text_wide import retrain_wide

    before, _, _ = load_text_classifier(trained[0], "cpu")
    card = retrain_wide(text_data, trained[0], tmp_path, epochs=3, lr=0.05, replaces=trained[0])
    after, _, _ = load_text_classifier(tmp_path, "cpu")
    gru = {k: v for k, v in before.state_dict().items() if not k.startswith("wide.")}
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in gru.items())      # the GRU is fixed
    assert not torch.equal(before.wide.weight, after.wide.weight)                  # the wide part moved
    stage2 = card["training"]["stage_2"]
    assert len(stage2["history"]) == 3 and stage2["best_epoch"] == max(
        stage2["history"], key=lambda r: r["score"])["epoch"]
    assert "selection" in card["chosen_on"]["wide_part_epoch"] and set(card["metrics"]) == {"selection", "val"}
    best = next(r for r in stage2["history"] if r["epoch"] == stage2["best_epoch"])
    for task, result in card["metrics"]["selection"].items():      # its quick scores are the full model's
        assert abs(best[f"selection_{task}"] - result["accuracy"]) < 1e-3
    assert card["replaces"]["sha256"] and len(card["replaces"]["sha256"]) == 64
    assert "val" not in card["training"]["stage_1"].get("metrics_selection", {})


def test_second_stage_refuses_a_classifier_without_wide_part(trained, text_data, tmp_path):
    from artlab.training.text import train_classifier
    from artlab.training.text_wide import retrain_wide

    train_classifier(text_data, tmp_path / "narrow", epochs=1, batch_size=16, embed_dim=8, hidden=8,
                     wide_buckets=0, device="cpu", show_progress=False)
    for name in ("text_autoencoder.json", "text_autoencoder.safetensors", "text_autoencoder.vocab.json"):
        (tmp_path / "narrow" / name).write_bytes((trained[0] / name).read_bytes())
    with pytest.raises(ValueError):
        retrain_wide(text_data, tmp_path / "narrow", tmp_path / "out", epochs=1)


# ------------------------------------------------------------------ unsure (issue 15, item 4)

LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore."


def test_lorem_ipsum_is_unsure_and_a_title_is_not(models):
    lorem, title = models.analyze([LOREM, "portrait of a woman at evening"])
    assert lorem["unsure"] is True and "unsure" in lorem["note"]
    assert title["unsure"] is False and "unsure" not in title.get("note", "")
    assert [n for n, _ in lorem["subject"]]                 # still labelled: the labels are a guess


@pytest.mark.parametrize("text, why", [
    ("https://example.com/a?id=3", "link"), ("john.smith@example.com", "link"), ("def f(x_1): return x", "code"),
    ("12 345 6789", "no words"), ("qwrtzx vbnmkl", "random letters")])
def test_unsure_reasons(text, why):
    from artlab.inference.text import unsure_reason
    tok = Tokenizer.build(CORPUS * 3, min_count=1)
    assert why in unsure_reason(text, tok)
    assert unsure_reason("Portrait of a young woman", tok) == ""
    assert unsure_reason("Argenteuil sea", tok) == ""


def test_unsure_known_share_needs_enough_words():
    from artlab.inference.text import unsure_reason
    tok = Tokenizer.build(CORPUS * 3, min_count=1)
    # This tiny vocabulary has no word pieces: every unknown word falls into letters, so the
    # gibberish test is switched off here to read the known-word share alone.
    rule = {"known_share": 0.6, "min_words": 5, "pieces_per_letter": 2.0}
    assert "1 of its 6 words are known" in unsure_reason("ferrum aurum cuprum plumbum stannum sea", tok, **rule)
    assert unsure_reason("ferrum aurum sea", tok, **rule) == ""                 # too short to judge
    assert unsure_reason("stormy sea at night with ferrum", tok, **rule) == ""  # 5 of 6 known


def test_nontexts_are_reproducible_and_cover_every_kind():
    from artlab.data.nontexts import KINDS, make_nontexts
    made = make_nontexts(3 * len(KINDS), seed=0)
    assert made == make_nontexts(3 * len(KINDS), seed=0)
    assert made != make_nontexts(3 * len(KINDS), seed=1)
    assert {kind for kind, _ in made} == set(KINDS)
    assert all(isinstance(text, str) and text.strip() for _, text in made)


def test_readable_output_says_unsure(trained, capsys):
    from artlab.cli import main

    main(["predict-text", "--weights", str(trained[0]), "--no-reconstruct", LOREM, "river at evening"])
    out = capsys.readouterr().out
    assert out.count("unsure") == 1 and out.index("unsure") < out.index("river at evening")


def test_text_contract_requires_unsure():
    from artlab.answers import TEXT_SCHEMA
    assert "unsure" in TEXT_SCHEMA["required"] and TEXT_SCHEMA["properties"]["unsure"]["type"] == "boolean"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_text_tab_says_unsure(lang):
    from artlab.ui.handlers import render_text
    from artlab.ui.i18n import t

    shown = {"subject": [["portrait", 0.6], ["landscape", 0.4]], "style": [["baroque", 1.0]],
             "notes": ["unsure_text"], "unsure": True}
    subject, _, note = render_text(shown, lang)
    assert note["value"] == t("unsure_text", lang) and note["visible"] and len(subject) == 2
    assert not render_text({**shown, "notes": [], "unsure": False}, lang)[2]["visible"]


def test_text_tab_notes_unsure_from_the_record():
    from types import SimpleNamespace

    from artlab.ui.handlers import analyze_text

    def read(text):
        return {"text": text, "subject": [["portrait", 1.0]], "style": [["baroque", 1.0]], "unsure": True,
                "note": "unsure: it holds no words, only numbers or signs, so the labels are a guess"}, []
    out = analyze_text(SimpleNamespace(lab=SimpleNamespace(read=read)), "12 34", "en")
    assert out[-1]["notes"] == ["unsure_text"] and out[-1]["unsure"] is True


def test_stage_two_weights_descriptions_and_resizes_the_wide_part(trained, text_data):
    from artlab.data.text import load_text_data
    from artlab.inference.text import load_text_classifier
    from artlab.training.text_wide import resize_wide, train_wide_part

    model, tokenizer, _ = load_text_classifier(trained[0], "cpu")
    resize_wide(model, 1024)
    assert model.wide_buckets == 1024 and model.wide.weight.shape[0] == 1024 and not model.wide.weight.any()
    fit, selection = load_text_data(text_data, "fit"), load_text_data(text_data, "selection")
    history = train_wide_part(model, tokenizer, fit, selection, epochs=2, lr=0.05, description_weight=5.0)
    assert len(history) == 2 and model.wide.weight.abs().sum() > 0
