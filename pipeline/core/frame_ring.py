"""Shared-memory slots for frames passed from decoder processes to the inference process.

Images cross the process boundary as bytes in a `SharedMemory` block, never pickled; only
small tuples (slot, index, times, shape) travel through queues.
"""

from __future__ import annotations

from multiprocessing import shared_memory

import cv2
import numpy as np


class FrameRing:
    """`slots` fixed-size uint8 BGR image slots of at most `max_width` x `max_height`."""

    def __init__(self, slots: int, max_width: int, max_height: int, name: str | None = None) -> None:
        self.slots = slots
        self.max_width, self.max_height = max_width, max_height
        self.slot_bytes = max_width * max_height * 3
        self._owner = name is None
        if self._owner:
            self._memory = shared_memory.SharedMemory(create=True, size=slots * self.slot_bytes)
        else:
            self._memory = shared_memory.SharedMemory(name=name)
        self.name = self._memory.name

    def write(self, slot: int, image: np.ndarray) -> tuple[int, int, float]:
        """Copy `image` into `slot`, downscaled to fit if needed; returns (height, width, scale)."""
        height, width = image.shape[:2]
        scale = min(1.0, self.max_width / width, self.max_height / height)
        if scale < 1.0:
            width, height = max(1, int(width * scale)), max(1, int(height * scale))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        self.view(slot, height, width)[...] = image
        return height, width, scale

    def view(self, slot: int, height: int, width: int) -> np.ndarray:
        """The image in `slot` as an array sharing the memory (valid until the slot is reused)."""
        if not 0 <= slot < self.slots:
            raise IndexError(f"slot {slot} outside 0..{self.slots - 1}")
        start = slot * self.slot_bytes
        return np.ndarray((height, width, 3), np.uint8, self._memory.buf, offset=start)

    def free(self) -> None:
        """Free the memory whichever side created it (when the creating process died without freeing it)."""
        try:
            self._memory.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Detach; the creating side also frees the memory."""
        self._memory.close()
        if self._owner:
            self._memory.unlink()
