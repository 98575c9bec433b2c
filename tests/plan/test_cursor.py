"""EpochCursor: one epoch and position for a loader and its samplers."""

import pytest

from fastload.plan.cursor import EpochCursor


def test_iterations_advance_the_epoch_unless_set_epoch_chose_one():
    c = EpochCursor()
    assert c.begin() == (0, 0) and c.begin() == (1, 0)
    c.set_epoch(7)
    assert c.begin() == (7, 0) and c.begin() == (8, 0)


def test_the_position_follows_deliveries_and_the_end_is_the_next_epoch():
    c = EpochCursor()
    assert c.position() == (0, 0)
    c.begin()
    c.advance(32)
    assert c.position() == (0, 32)
    c.finish()
    assert c.position() == (1, 0)
    c.set_epoch(4)
    assert c.position() == (4, 0)


def test_a_loaded_position_survives_set_epoch_and_later_epochs_count_from_it():
    c = EpochCursor()
    c.load(3, 96)
    c.set_epoch(3)  # Lightning: the same epoch
    assert c.offset_note is None and c.begin() == (3, 96)
    c = EpochCursor()
    c.load(3, 96)
    c.set_epoch(0)  # Accelerate in a new process counts from 0
    assert c.begin() == (3, 96) and "epoch n+3" in c.offset_note
    c.set_epoch(1)
    assert c.begin() == (4, 0)


def test_a_claimed_iteration_is_joined_once():
    c = EpochCursor()
    c.begin()
    assert c.begin(claim=True) == (1, 0) and c.claimed
    assert c.begin() == (1, 0) and not c.claimed  # the sampler joins the loader's iteration
    assert c.begin() == (2, 0)


def test_bad_values_are_refused():
    c = EpochCursor()
    with pytest.raises(ValueError):
        c.set_epoch(-1)
    with pytest.raises(ValueError):
        c.load(0, -5)
