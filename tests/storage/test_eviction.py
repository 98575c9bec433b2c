"""The eviction rule as a pure function: furthest next use first, LRU when unknown, never in use."""

from __future__ import annotations

from hypothesis import given, strategies as st

from fastload.storage.eviction import Entry, choose_victims, eviction_order


def keys(entries):
    return [e.key for e in entries]


def test_furthest_next_use_goes_first():
    entries = [Entry(key="a", size=10, next_use=5), Entry(key="b", size=10, next_use=50),
               Entry(key="c", size=10, next_use=1)]
    assert keys(choose_victims(entries, 10)) == ["b"]
    assert keys(choose_victims(entries, 11)) == ["b", "a"]


def test_unknown_next_use_goes_before_known_least_recent_first():
    entries = [Entry(key="known", size=10, next_use=1000), Entry(key="new", size=10, last_use=20.0),
               Entry(key="old", size=10, last_use=10.0)]
    assert keys(eviction_order(entries)) == ["old", "new", "known"]


def test_in_use_and_protected_are_never_evicted():
    entries = [Entry(key="busy", size=100, in_use=True, last_use=0.0),
               Entry(key="window", size=100, protected=True, next_use=99),
               Entry(key="free", size=5, next_use=3)]
    assert keys(choose_victims(entries, 5)) == ["free"]
    assert choose_victims(entries, 6) == []  # not enough evictable bytes: evict nothing


def test_nothing_needed_evicts_nothing():
    assert choose_victims([Entry(key="a", size=1)], 0) == []


entry_lists = st.lists(st.builds(
    Entry, key=st.uuids(), size=st.integers(1, 100), in_use=st.booleans(), protected=st.booleans(),
    next_use=st.none() | st.integers(0, 50), last_use=st.floats(0, 100)), max_size=20)


@given(entry_lists, st.integers(1, 500))
def test_victims_free_enough_and_only_evictable_ones(entries, need):
    victims = choose_victims(entries, need)
    evictable = [e for e in entries if not (e.in_use or e.protected)]
    assert all(not (v.in_use or v.protected) for v in victims)
    if sum(e.size for e in evictable) >= need:
        assert sum(v.size for v in victims) >= need
        assert sum(v.size for v in victims[:-1]) < need  # no more than needed, in order
        assert victims == eviction_order(entries)[: len(victims)]
    else:
        assert victims == []
