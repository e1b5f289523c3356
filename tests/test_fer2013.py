"""FER2013 loaders on small files in the real formats, and their malformed twins."""

from pathlib import Path

import numpy as np
import pytest

from training.fer2013 import DatasetError, load_fer, write_fer2013_csv, write_image_folders
from training.synthetic_faces import FER_CLASSES, synthetic_fer

USAGE_CYCLE = ["Training", "Training", "PublicTest", "PrivateTest"]


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels = synthetic_fer(4, seed=1)
    return images, labels, [USAGE_CYCLE[i % 4] for i in range(len(labels))]


def test_kaggle_csv_round_trips(tmp_path: Path, faces: tuple) -> None:
    images, labels, usage = faces
    data = load_fer(write_fer2013_csv(tmp_path / "fer2013.csv", images, labels, usage))
    assert np.array_equal(data.images, images) and np.array_equal(data.labels, labels)
    assert list(data.usage) == usage
    assert data.counts() == {name: 4 for name in FER_CLASSES}


def test_a_folder_holding_fer2013_csv_is_detected(tmp_path: Path, faces: tuple) -> None:
    write_fer2013_csv(tmp_path / "fer2013.csv", *faces)
    assert len(load_fer(tmp_path)) == 28


def test_image_folders(tmp_path: Path, faces: tuple) -> None:
    images, labels, _ = faces
    usage = ["Training" if i % 3 else "PrivateTest" for i in range(len(labels))]
    data = load_fer(write_image_folders(tmp_path / "fer", images, labels, usage))
    assert len(data) == 28 and sorted(data.labels.tolist()) == sorted(labels.tolist())
    assert set(data.usage) == {"Training", "PrivateTest"}
    assert sorted(p.name for p in (tmp_path / "fer" / "train").iterdir()) == sorted(FER_CLASSES)


def test_ferplus_majority_vote_relabels_and_drops(tmp_path: Path, faces: tuple) -> None:
    csv_path = write_fer2013_csv(tmp_path / "fer2013.csv", *faces)
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    rows = [header]
    for i in range(28):
        votes = [0] * 10
        votes[{0: 1, 1: 4, 2: 9, 3: 7}.get(i % 4, 0) if i < 4 else 0] = 10  # row0 happy, 1 anger, 2 NF, 3 contempt
        rows.append(f"Training,fer{i:07d}.png," + ",".join(map(str, votes)))
    (tmp_path / "fer2013new.csv").write_text("\n".join(rows) + "\n")
    data = load_fer(csv_path, ferplus=tmp_path / "fer2013new.csv")
    assert len(data) == 26  # not-a-face and contempt rows dropped
    assert FER_CLASSES[data.labels[0]] == "happy" and FER_CLASSES[data.labels[1]] == "angry"
    assert all(FER_CLASSES[label] == "neutral" for label in data.labels[2:])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label,pixels,Usage\n0,1 2,Training\n", "missing column(s) emotion"),
        ("emotion,pixels,Usage\n0," + "1 " * 100 + ",Training\n", ":2: pixels has 100 values, expected 2304"),
        ("emotion,pixels,Usage\n9," + "1 " * 2304 + ",Training\n", ":2: emotion 9 is outside 0-6"),
        ("emotion,pixels,Usage\nhappy," + "1 " * 2304 + ",Training\n", ":2: emotion 'happy' is not a label"),
        ("emotion,pixels,Usage\n0," + "300 " * 2304 + ",Training\n", ":2: pixel values must be 0-255"),
        ("emotion,pixels,Usage\n0," + "1 " * 2304 + ",Validation\n", ":2: Usage 'Validation' is not one of"),
        ("emotion,pixels,Usage\n0," + "1 " * 2304 + ",Training\n", "class(es) with no images: disgust"),
    ],
)
def test_malformed_csv_names_file_line_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "fer2013.csv"
    path.write_text(text)
    with pytest.raises(DatasetError) as error:
        load_fer(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_unknown_class_folder(tmp_path: Path, faces: tuple) -> None:
    root = write_image_folders(tmp_path / "fer", faces[0], faces[1], ["Training"] * 28)
    (root / "train" / "happy").rename(root / "train" / "joy")
    with pytest.raises(DatasetError, match="unknown class folder 'joy'"):
        load_fer(root)


def test_empty_class_folder(tmp_path: Path, faces: tuple) -> None:
    root = write_image_folders(tmp_path / "fer", faces[0], faces[1], ["Training"] * 28)
    for image in (root / "train" / "fear").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match="no images: fear"):
        load_fer(root)


def test_not_a_data_set(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="expected fer2013.csv or a folder"):
        load_fer(tmp_path / "notes.txt")
    with pytest.raises(DatasetError, match="expected fer2013.csv or folders train/ and test/"):
        load_fer(tmp_path)
    with pytest.raises(DatasetError, match="data set not found"):
        load_fer(tmp_path / "missing.csv")
