"""Colours of any model's classes: the rules on their own, then a report and an annotated video of an 8-class model."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.core.contract import StreamIdAllocator
from pipeline.engine.batch import Detections, FrameInfo
from pipeline.faces.colours import FER_COLOURS, PALETTE, bgr, class_colours
from pipeline.faces.events import EventDetector
from pipeline.sinks.files import FileSink
from pipeline.sinks.payload import EventRecord, frame_payloads
from tests.videos import write_video

AFFECTNET = ["Anger", "Contempt", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]
FER_OF_AFFECTNET = {"Anger": "angry", "Disgust": "disgust", "Fear": "fear", "Happy": "happy", "Neutral": "neutral",
                    "Sad": "sad", "Surprise": "surprise"}
SCRIPT = ["Neutral", "Contempt", "Happy", "Anger", "Sad", "Surprise", "Fear", "Disgust"]
"""The order of the scripted person's emotions, 40 frames each; a 3-frame Contempt flash in the first."""
FPS, SEGMENT = 25, 40
BOX = [16.0, 24.0, 112.0, 88.0]


def _lab(colour: str) -> np.ndarray:
    rgb = np.array([[bgr(colour)[::-1]]], np.float32) / 255
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[0, 0]


def _solid(image: np.ndarray, colour: str) -> np.ndarray:
    """Where `image` is `colour` in blocks of at least 9x9 pixels (the strip's spans, not lines or text)."""
    return cv2.erode(np.all(image == bgr(colour), axis=2).astype(np.uint8), np.ones((9, 9), np.uint8))


def test_fer_names_keep_their_colours_in_any_case_and_common_synonyms() -> None:
    assert class_colours(list(FER_COLOURS)) == FER_COLOURS
    colours = class_colours(AFFECTNET)
    assert {name: colours[name] for name in FER_OF_AFFECTNET} == {
        name: FER_COLOURS[fer] for name, fer in FER_OF_AFFECTNET.items()}
    synonyms = class_colours(["happiness", "SADNESS", " surprised ", "Fearful", "disgusted"])
    assert list(synonyms.values()) == [FER_COLOURS[n] for n in ("happy", "sad", "surprise", "fear", "disgust")]
    assert colours["Contempt"] in PALETTE and colours["Contempt"] not in FER_COLOURS.values()


def test_a_name_keeps_its_colour_whatever_the_other_classes_and_their_order() -> None:
    alone = class_colours(["Contempt"])["Contempt"]
    assert class_colours(AFFECTNET)["Contempt"] == alone
    assert class_colours(list(reversed(AFFECTNET)))["Contempt"] == alone
    assert class_colours(["neutral", "contempt", "happy"])["contempt"] == alone, "case does not matter"
    assert class_colours(["Contempt", "pain", "boredom", "confusion"])["Contempt"] == alone


def test_twenty_names_get_twenty_distinct_colours_none_of_them_fer_unless_the_name_is() -> None:
    names = ["Anger", "Contempt", "Happy", "pain", "boredom", "confusion", "pride", "shame", "guilt", "awe", "relief",
             "interest", "amusement", "embarrassment", "elation", "tension", "doubt", "hope", "calm", "desire"]
    colours = class_colours(names)
    assert len(set(colours.values())) == 20
    others = [colours[name] for name in names if name not in ("Anger", "Happy")]
    assert not set(others) & set(FER_COLOURS.values())
    assert all(colour in PALETTE for colour in others), "18 other names fit the palette"


def test_a_palette_collision_moves_only_the_later_name_to_the_next_free_slot() -> None:
    first, second = _two_names_of_one_slot()
    own = class_colours([first])[first]
    assert class_colours([second])[second] == own, "the two names share a slot"
    colours = class_colours([first, second])
    assert colours[first] == own and colours[second] == PALETTE[(PALETTE.index(own) + 1) % len(PALETTE)]
    assert class_colours([second, first])[second] == own, "whichever comes first keeps the slot"


def _two_names_of_one_slot() -> tuple[str, str]:
    """The first two of class-0, class-1, ... that hash to the same palette slot."""
    holders: dict[str, str] = {}
    for i in itertools.count():
        name = f"class-{i}"
        colour = class_colours([name])[name]
        if colour in holders:
            return holders[colour], name
        holders[colour] = name
    raise AssertionError("unreachable")


def test_two_names_of_one_fer_class_get_different_colours() -> None:
    colours = class_colours(["angry", "Anger"])
    assert colours["angry"] == FER_COLOURS["angry"] and colours["Anger"] in PALETTE


def test_colours_stay_distinct_past_the_palette() -> None:
    names = [f"class-{i}" for i in range(1000)]
    colours = class_colours(["happy", *names])
    assert len(set(colours.values())) == 1001 and colours["happy"] == FER_COLOURS["happy"]


def test_the_palette_is_far_from_the_fer_colours_and_itself_and_never_grey_or_pale() -> None:
    labs = {colour: _lab(colour) for colour in (*FER_COLOURS.values(), *PALETTE)}
    assert len(labs) == len(FER_COLOURS) + len(PALETTE)
    closest = min(float(np.linalg.norm(labs[a] - labs[b])) for a, b in itertools.combinations(labs, 2)
                  if a in PALETTE or b in PALETTE)
    assert closest >= 17.5, f"two colours are only {closest:.1f} CIELAB units apart"
    assert all(np.hypot(*labs[c][1:]) >= 15 and 30 <= labs[c][0] <= 82 for c in PALETTE)


@pytest.fixture(scope="module")
def affectnet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run folder as process writes it (file sink, event detector) for one person of an 8-class model, and its video."""
    emotions = [name for name in SCRIPT for _ in range(SEGMENT)]
    emotions[30:33] = ["Contempt"] * 3  # after the 1 s baseline
    classes = [AFFECTNET.index(emotion) for emotion in emotions]
    scores = np.full((len(emotions), len(AFFECTNET)), 0.02, np.float32)
    scores[np.arange(len(emotions)), classes] = 0.86
    rows = np.column_stack([np.tile([*BOX, 0.86], (len(emotions), 1)), classes, scores])
    frames = [FrameInfo("interview", i, i / FPS, 1700000000 + i / FPS, 128, 112) for i in range(len(emotions))]
    detections = Detections.from_rows(frames, np.ones(len(emotions), np.int64), rows, len(AFFECTNET))
    detections.tracker_id[:] = 1
    run = tmp_path_factory.mktemp("affectnet") / "interview"
    sink = FileSink(run, AFFECTNET, "affectnet-8")
    detector = EventDetector("interview", AFFECTNET, frame_interval_s=1 / FPS)
    sink.write(frame_payloads(detections, AFFECTNET))
    ids = StreamIdAllocator()  # as SourceOutput gives them: from pts, in order
    events = [event for i in range(len(frames)) for event in detector.update(detections, i)]
    events += detector.finish(1700000100.0)
    sink.write_events([EventRecord(ids.next(int(round(event.pts * 1000))), event) for event in events])
    sink.close()
    video = write_video(run.parent / "interview.mp4", [np.full((112, 128, 3), 40, np.uint8)] * len(emotions), FPS)
    return run, video


def test_the_report_of_an_8_class_model_draws_its_emotion_strip_in_their_colours(affectnet_run: tuple) -> None:
    from pipeline.cli import main

    run, _video = affectnet_run
    assert main(["report", str(run)]) == 0
    assert '"emotion":"Contempt"' in (run / "events.jsonl").read_text(), "the flash is a micro-expression"
    image = cv2.imread(str(run / "person_1.png"))
    colours = class_colours(AFFECTNET)
    lefts = {}
    for name, colour in colours.items():
        solid = _solid(image, colour)
        assert solid.sum() > 500, f"no {name} ({colour}) block in the strip"
        lefts[name] = int(np.nonzero(solid.any(axis=0))[0][0])
    assert sorted(lefts, key=lefts.get) == SCRIPT, "the strip shows the emotions in the order the person showed them"
    assert not _solid(image, "#cccccc").any(), "no block falls back to grey"
    micro_tint = np.array(bgr(colours["Contempt"])) * 0.25 + 255 * 0.75
    assert (np.abs(image.astype(float) - micro_tint).max(axis=2) <= 2).sum() > 1000, "the micro-expression's span"


def test_the_annotated_video_of_an_8_class_model_draws_boxes_in_their_colours(affectnet_run: tuple) -> None:
    from pipeline.cli import main

    run, video = affectnet_run
    assert main(["report", str(run), "--annotate", "--video", str(video)]) == 0
    colours = class_colours(AFFECTNET)
    x1, y1, x2, _y2 = (int(v) for v in BOX)
    with av.open(str(run / "annotated.mp4")) as container:
        images = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    for name in SCRIPT:
        edge = images[SCRIPT.index(name) * SEGMENT + SEGMENT // 2][y1, x1 + 8 : x2 - 8].astype(float).mean(axis=0)
        nearest = min(colours, key=lambda other: np.linalg.norm(edge - bgr(colours[other])))
        assert nearest == name, f"the box of a {name} face looks {nearest}: {edge.round()}"
