"""The memory-then-disk FIFO behind Redis outage buffering."""

from pathlib import Path

from pipeline.sinks.spill import SpillBuffer


def _drain(buffer: SpillBuffer, step: int = 3) -> list:
    out = []
    while len(buffer):
        items = buffer.peek(step)
        out.extend(items)
        buffer.drop(len(items))
    return out


def test_order_is_kept_across_memory_and_disk(tmp_path: Path) -> None:
    buffer = SpillBuffer(4, tmp_path / "spill.jsonl")
    buffer.extend([[i] for i in range(3)])
    buffer.extend([[i] for i in range(3, 10)])
    assert buffer.spilled == 6 and len(buffer) == 10
    assert buffer.peek(2) == [[0], [1]]
    buffer.drop(2)
    buffer.extend([[10], [11]])  # memory has room again, but older items are on disk: these follow them
    assert _drain(buffer) == [[i] for i in range(2, 12)]
    assert not (tmp_path / "spill.jsonl").exists()


def test_items_left_on_disk_by_an_earlier_process_come_first(tmp_path: Path) -> None:
    path = tmp_path / "spill.jsonl"
    first = SpillBuffer(1, path)
    first.extend([["old", i] for i in range(4)])  # 1 in memory (lost with the process), 3 on disk
    second = SpillBuffer(2, path)
    assert len(second) == 3
    second.extend([["new", 0]])
    assert _drain(second) == [["old", 1], ["old", 2], ["old", 3], ["new", 0]]


def test_persist_keeps_what_memory_held_in_front_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spill.jsonl"
    buffer = SpillBuffer(3, path)
    buffer.extend([[i] for i in range(7)])  # 0-2 in memory, 3-6 on disk
    buffer.drop(1)
    buffer.persist()  # the process ends: memory goes to the file, in front
    assert list(buffer.items()) == [[i] for i in range(1, 7)]
    assert _drain(SpillBuffer(2, path)) == [[i] for i in range(1, 7)]
