"""PIN entry on a reader's keypad: keys in, whole PINs out.

Readers send keys one by one (Wiegand 4- or 8-bit bursts) or a few at a time (OSDP
``osdp_KEYPPAD``).  A PIN is a credential like a card number, so it is reported exactly like
one: the raw digits go into :attr:`DeviceEvent.credential <device_drivers.base.DeviceEvent>` as
``pin:<digits>`` (see :func:`pin_credential`), which the edge agent pseudonymises, and never
into an event's ``data``.  The ``pin:`` prefix keeps PINs apart from card credentials, which
are ``<bits>:<hex>``.

Keys: ``0``-``9`` are digits, ``#`` submits the entry, ``*`` clears it, ``A``-``D`` (F1-F4)
are ignored.  An entry left unfinished for ``timeout_s`` is dropped (counted, never reported).
"""

from __future__ import annotations

import collections

__all__ = ["KeypadBuffer", "pin_credential"]

PIN_PREFIX = "pin:"


def pin_credential(digits: str) -> str:
    """The raw credential of a PIN, e.g. ``pin:1234``.

    Raises:
        ValueError: if ``digits`` is empty or not all decimal digits.
    """
    if not digits or not digits.isascii() or not digits.isdigit():
        msg = "a PIN is one or more decimal digits"
        raise ValueError(msg)
    return PIN_PREFIX + digits


class KeypadBuffer:
    """Assembles keys into PINs for one keypad.

    Args:
        timeout_s: an unfinished entry is dropped after this long without a key.
        max_digits: an entry longer than this is dropped as garbage.

    Attributes:
        counters: ``timeout``, ``overflow``, ``cleared`` and ``ignored`` key counts.
    """

    def __init__(self, *, timeout_s: float = 10.0, max_digits: int = 12) -> None:
        if timeout_s <= 0 or max_digits < 1:
            msg = "timeout_s must be positive and max_digits at least 1"
            raise ValueError(msg)
        self._timeout_ms = round(timeout_s * 1000)
        self._max_digits = max_digits
        self._digits: list[str] = []
        self._last_ms = 0
        self._overflowed = False
        self.counters: collections.Counter[str] = collections.Counter()

    @property
    def pending(self) -> bool:
        """Whether an entry is in progress."""
        return bool(self._digits) or self._overflowed

    def deadline_ms(self) -> int | None:
        """When an unfinished entry expires, or ``None`` if there is none."""
        return self._last_ms + self._timeout_ms if self.pending else None

    def keys(self, ts_ms: int, keys: str) -> list[str]:
        """Feed keys pressed at ``ts_ms``; returns the digits of every PIN they complete."""
        self.expire(ts_ms)
        completed: list[str] = []
        for key in keys:
            self._last_ms = ts_ms
            if key.isascii() and key.isdigit():
                if self._overflowed:
                    continue
                if len(self._digits) >= self._max_digits:
                    self.counters["overflow"] += 1
                    self._digits.clear()
                    self._overflowed = True
                    continue
                self._digits.append(key)
            elif key == "#":
                if self._digits and not self._overflowed:
                    completed.append("".join(self._digits))
                self._reset()
            elif key == "*":
                if self._digits:
                    self.counters["cleared"] += 1
                self._reset()
            else:
                self.counters["ignored"] += 1
        return completed

    def expire(self, now_ms: int) -> bool:
        """Drop an unfinished entry older than the timeout; ``True`` if one was dropped.

        Call it now and then, so that half a PIN does not stay in memory.
        """
        if self.pending and now_ms - self._last_ms >= self._timeout_ms:
            self.counters["timeout"] += 1
            self._reset()
            return True
        return False

    def _reset(self) -> None:
        self._digits.clear()
        self._overflowed = False
