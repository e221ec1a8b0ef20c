"""Verification of a narrative: citations must name retrieved passages, numbers must be the
model's or the similar patients' (the one the sentence says they are), and a sentence citing
nothing must state one of those numbers."""

from __future__ import annotations

import pytest

from clinrisk.explain.verification import Quantity, citations, said_to_be, sentences, stated_numbers, verify

RETRIEVED = {"lace-index#1-0123456789abcdef", "age#0-fedcba9876543210"}
ALLOWED: dict[Quantity, tuple[float, ...]] = {
    "probability": (0.2341,),
    "similar_rate": (0.18,),
    "interval": (0.098, 0.31),
}


def test_a_faithful_narrative_is_kept_whole() -> None:
    text = (
        "The model estimates a 23.4% probability of readmission. A long stay adds risk [lace-index#1-0123456789abcdef]."
        " Of 50 similar encounters, 18% were readmitted (95% CI 9.8% to 31.0%)."
    )
    result = verify(text, retrieved=RETRIEVED, quantities=ALLOWED)
    assert result.text == text
    assert result.cited == ("lace-index#1-0123456789abcdef",)
    assert result.dropped == {}


def test_a_sentence_citing_a_passage_that_was_not_retrieved_is_dropped() -> None:
    text = "Age matters [age#0-fedcba9876543210]. Sodium matters [hospital-score#1-aaaaaaaaaaaaaaaa]."
    result = verify(text, retrieved=RETRIEVED, quantities=ALLOWED)
    assert result.text == "Age matters [age#0-fedcba9876543210]."
    assert result.dropped == {"unretrieved_citation": 1}


def test_a_sentence_with_a_wrong_probability_is_dropped_even_when_cited() -> None:
    text = (
        "The model estimates a 35% probability of readmission. Risk is 0.23 here [age#0-fedcba9876543210]."
        " Risk is 0.5 here [age#0-fedcba9876543210]."
    )
    result = verify(text, retrieved=RETRIEVED, quantities=ALLOWED)
    assert result.text == "Risk is 0.23 here [age#0-fedcba9876543210]."
    assert result.dropped == {"unverified_number": 2}


def test_an_uncited_clinical_sentence_is_dropped() -> None:
    text = "Insulin should be increased at discharge. The model estimates 23% [age#0-fedcba9876543210]."
    result = verify(text, retrieved=RETRIEVED, quantities=ALLOWED)
    assert result.dropped == {"uncited": 1}
    assert result.text.startswith("The model estimates 23%")


def test_a_citation_after_the_full_stop_belongs_to_its_sentence() -> None:
    assert sentences("Age matters. [age#0-fedcba9876543210] Next one.") == [
        "Age matters [age#0-fedcba9876543210].",
        "Next one.",
    ]


def test_several_ids_in_one_bracket_are_all_checked() -> None:
    assert citations("x [age#0-fedcba9876543210, lace-index#1-0123456789abcdef] and [sic]") == [
        "age#0-fedcba9876543210",
        "lace-index#1-0123456789abcdef",
    ]
    text = "Both [age#0-fedcba9876543210; lace-index#9-0000000000000000]."
    assert verify(text, retrieved=RETRIEVED, quantities=ALLOWED).dropped == {"unretrieved_citation": 1}


def test_numbers_are_read_as_shown_and_a_confidence_level_is_not_a_probability() -> None:
    shown = stated_numbers("a 23.4% chance, 95% CI 10% to 31%, age [70-80) [lace-index#1-0123456789abcdef]")
    assert [v for pair in shown for v in pair] == pytest.approx([0.234, 0.0005, 0.1, 0.005, 0.31, 0.005])
    pairs = stated_numbers("probability 0.23 and 12 percent")
    assert [v for pair in pairs for v in pair] == pytest.approx([0.23, 0.005, 0.12, 0.005])


def test_a_number_must_be_the_quantity_its_sentence_says_it_is() -> None:
    """Every number below is one of the allowed ones, but stated as another quantity."""
    wrong = [
        "Of 50 similar past encounters, 23.4% were readmitted.",  # the model's probability as their rate
        "The model estimates an 18% probability of readmission.",  # their rate as the model's estimate
        "Of 50 similar encounters, 18% were readmitted (95% CI 18% to 31%).",  # the rate as a bound
        "The model estimates a 9.8% probability of readmission.",  # a bound as the model's estimate
    ]
    for sentence in wrong:
        assert verify(sentence, retrieved=RETRIEVED, quantities=ALLOWED).dropped == {"unverified_number": 1}, sentence
    right = (
        "The model's estimated risk of 23.4% is higher than the 18% seen among similar past patients"
        " (95% CI 9.8%\u201331.0%). Risk is 0.23 here [age#0-fedcba9876543210]."
    )
    assert verify(right, retrieved=RETRIEVED, quantities=ALLOWED).text == right


@pytest.mark.parametrize(
    ("sentence", "said"),
    [
        ("The model estimates a 23.4% probability", ["probability"]),
        ("Of the 50 most similar encounters in the model's training data, 12.0% were readmitted", ["similar_rate"]),
        ("(95% CI 6.7% to 21.0%)", ["interval", "interval"]),
        (
            "a 95% confidence interval from 6.7% to 21.0% around 12.0% for similar patients",
            ["interval"] * 2 + ["similar_rate"],
        ),
        ("Risk is 0.23 here", [None]),
    ],
)
def test_which_quantity_a_number_is_said_to_be(sentence: str, said: list[Quantity | None]) -> None:
    positions = [sentence.index(token) for token in ("23.4", "12.0", "6.7", "21.0", "0.23") if token in sentence]
    assert [said_to_be(sentence, p) for p in sorted(positions)] == said
