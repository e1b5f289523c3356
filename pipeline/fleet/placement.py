"""Cameras onto inference actors by capacity: a pure function the controller calls whenever actors change."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.config import SourceSpec


@dataclass
class Placement:
    """Which new cameras go to which actor (by the actor's index), and those no actor has room for."""

    assigned: dict[int, list[SourceSpec]] = field(default_factory=dict)
    unplaced: list[SourceSpec] = field(default_factory=list)


def place_cameras(cameras: list[SourceSpec], load: dict[int, int], capacity: int | None) -> Placement:
    """Put each of `cameras` on the actor serving the fewest cameras (`load`: cameras per alive actor) that has
    room under `capacity` (None: no limit, cameras are spread evenly); ties go to the lowest index."""
    load = dict(load)
    placement = Placement()
    for camera in cameras:
        room = [actor for actor, count in load.items() if capacity is None or count < capacity]
        if not room:
            placement.unplaced.append(camera)
            continue
        actor = min(room, key=lambda index: (load[index], index))
        load[actor] += 1
        placement.assigned.setdefault(actor, []).append(camera)
    return placement
