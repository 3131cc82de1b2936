"""One identification per presentation."""

from device.card import Card
from device.presentation import Presentations

A = Card("v1", "0012345678", 1)
B = Card("v1", "0099999999", 1)
A_REPLACEMENT = Card("v1", "0012345678", 2)


def identify_all(presentations, sightings):
    """Feed (card, time) sightings as the daemon does; return the identifications made."""
    made = []
    for card, t in sightings:
        if presentations.is_new(card, t):
            presentations.identified(card, t)
            made.append((card, t))
    return made


def test_a_card_held_for_a_minute_is_identified_once():
    # Seen every 0.1 s for 60 s: each sighting extends the presentation beyond the 10 s window.
    sightings = [(A, i / 10) for i in range(600)]
    assert identify_all(Presentations(10), sightings) == [(A, 0.0)]


def test_same_card_after_the_window_is_a_new_presentation():
    made = identify_all(Presentations(10), [(A, 0.0), (A, 5.0), (A, 15.01)])
    assert made == [(A, 0.0), (A, 15.01)]


def test_same_card_just_inside_the_window_is_the_same_presentation():
    assert identify_all(Presentations(10), [(A, 0.0), (A, 10.0)]) == [(A, 0.0)]


def test_a_different_card_is_new_at_once_and_so_is_the_first_one_after_it():
    made = identify_all(Presentations(10), [(A, 0.0), (B, 0.5), (A, 1.0)])
    assert made == [(A, 0.0), (B, 0.5), (A, 1.0)]


def test_a_replacement_card_is_a_different_card():
    assert len(identify_all(Presentations(10), [(A, 0.0), (A_REPLACEMENT, 0.2)])) == 2


def test_uncommitted_identification_is_retried_on_the_next_frame():
    p = Presentations(10)
    assert p.is_new(A, 0.0)  # commit fails (disk full): identified() is not called
    assert p.is_new(A, 0.1)


def test_button_reset_allows_the_same_card_again_at_once():
    p = Presentations(10)
    identify_all(p, [(A, 0.0)])
    p.reset()
    assert p.is_new(A, 0.5)
