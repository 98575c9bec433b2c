"""Which epoch a loader's next iteration runs, and from which sample: one object, shared.

The loader, its sampler and its batch sampler all answer ``set_epoch`` and ``state_dict``
(Lightning calls the sampler's, Accelerate the batch sampler's, a user the loader's), and any of
them may start an iteration (the loader itself, or torch's or a framework's iterator driving the
sampler). They share one :class:`EpochCursor`, so the epoch never advances twice or not at all.

Rules, the same as torch's samplers where torch has one:

* an iteration that starts without ``set_epoch``/``load`` since the previous one runs the next
  epoch (torch's RandomSampler draws a new permutation per ``iter``);
* ``set_epoch(n)`` picks epoch ``n`` from its start;
* a loaded position is kept until its iteration starts. ``set_epoch(n)`` called in between
  (Lightning and Accelerate call it before every epoch) keeps it; when ``n`` differs from the
  loaded epoch (Accelerate counts epochs from 0 in every process), later ``set_epoch`` numbers are
  taken relative to the loaded epoch, and :attr:`offset_note` says so once;
* a position taken after the last batch of an epoch is the start of the next epoch.
"""

from __future__ import annotations

import numbers


def _int(name: str, value, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    return int(value)


class EpochCursor:
    """Epoch and global sample position of a loader's current (or next) iteration."""

    def __init__(self) -> None:
        self.epoch = 0
        self.start = 0  # global sample position the current (or next) iteration starts from
        self.done = 0  # global samples delivered, counted from the epoch's start
        self.finished = False  # the current iteration delivered its last batch
        self.offset = 0  # added to set_epoch's argument after a load (see the module doc)
        self.offset_note: str | None = None  # set once when an offset is taken; the loader logs it
        self._started = False  # some iteration has begun
        self._chosen = False  # set_epoch or load picked the next iteration's epoch
        self._loaded: int | None = None  # epoch of a loaded position not yet started
        self._claimed = False  # the loader began this iteration; the sampler joins it

    # -- choosing ----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        epoch = _int("epoch", epoch)
        if self._loaded is not None:
            if epoch + self.offset != self._loaded:
                self.offset = self._loaded - epoch
                self.offset_note = (f"set_epoch({epoch}) after loading a state of epoch {self._loaded}: "
                                    f"the loaded position wins, and later set_epoch(n) runs epoch n{self.offset:+d}")
            return
        self.epoch = epoch + self.offset
        self.start = 0
        self._chosen = True

    def load(self, epoch: int, samples_done: int) -> None:
        """Continue at ``samples_done`` of ``epoch`` on the next iteration."""
        self.epoch = _int("epoch", epoch)
        self.start = _int("samples_done", samples_done)
        self.done = self.start
        self.finished = False
        self._chosen = True
        self._loaded = self.epoch

    # -- iterating ---------------------------------------------------------------------------
    def begin(self, *, claim: bool = False) -> tuple[int, int]:
        """Start an iteration: its epoch and start position. ``claim``: the sampler's next
        iteration joins this one instead of beginning another."""
        if self._claimed and not claim:
            self._claimed = False  # the sampler, driven by the loader's own iteration
            return self.epoch, self.start
        if self._started and not self._chosen:
            self.epoch += 1
            self.start = 0
        self._started = True
        self._chosen = False
        self._loaded = None
        self._claimed = claim
        self.done = self.start
        self.finished = False
        return self.epoch, self.start

    @property
    def claimed(self) -> bool:
        """The loader began an iteration that its sampler's next iteration joins."""
        return self._claimed

    def advance(self, done: int) -> None:
        self.done = done

    def finish(self) -> None:
        self.finished = True

    def position(self) -> tuple[int, int]:
        """(epoch, samples_done) to save: where the next batch not yet delivered is."""
        if self._chosen or not self._started:
            return self.epoch, self.start
        if self.finished:
            return self.epoch + 1, 0
        return self.epoch, self.done
