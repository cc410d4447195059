"""What the frame parsers of the UART sensors count: good frames, bad ones, and skipped noise."""

from __future__ import annotations

import dataclasses

__all__ = ["FrameStats"]


@dataclasses.dataclass(slots=True)
class FrameStats:
    """Counters of one parser, kept for the life of the driver (they survive reconnects).

    Attributes:
        frames: valid measurement frames.
        other_frames: valid frames that carry no measurement (command acknowledgements,
            replies to other commands).
        bad_checksum: frames with a good start and length whose checksum did not match; a
            frame cut short by a glitch and followed by the next one also ends up here.
        bad_length: frames whose length field is not one this sensor sends.
        noise_bytes: bytes skipped while hunting for a start marker.
    """

    frames: int = 0
    other_frames: int = 0
    bad_checksum: int = 0
    bad_length: int = 0
    noise_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return dataclasses.asdict(self)

    def copy(self) -> FrameStats:
        """A snapshot, to tell later what went wrong since."""
        return dataclasses.replace(self)

    def describe_since(self, earlier: FrameStats) -> str:
        """What went wrong since ``earlier``, e.g. ``2 bad checksums, 40 noise bytes``."""
        parts = []
        for count, label in (
            (self.bad_checksum - earlier.bad_checksum, "bad checksum"),
            (self.bad_length - earlier.bad_length, "bad length"),
            (self.noise_bytes - earlier.noise_bytes, "noise byte"),
        ):
            if count > 0:
                parts.append(f"{count} {label}{'s' if count > 1 else ''}")
        return ", ".join(parts)

    def worst_since(self, earlier: FrameStats) -> str:
        """The failure kind to count since ``earlier``: checksum, length, noise, or timeout."""
        if self.bad_checksum > earlier.bad_checksum:
            return "checksum"
        if self.bad_length > earlier.bad_length:
            return "length"
        if self.noise_bytes > earlier.noise_bytes:
            return "noise"
        return "timeout"
