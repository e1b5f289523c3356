"""`serve` exit codes: a run in which every source failed is not a success."""

from pathlib import Path

import pytest

from pipeline.cli import main


def test_serve_exits_non_zero_when_every_source_failed(
    weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(f"output: {{dir: '{tmp_path / 'out'}'}}\n"
                      f"sources:\n  - {{id: gone, uri: '{tmp_path / 'gone.mp4'}'}}\n"
                      f"  - {{id: fake, uri: '{tmp_path / 'fake.mp4'}'}}\n")
    (tmp_path / "fake.mp4").write_bytes(b"not a video" * 100)
    code = main(["serve", "--config", str(config), "--weights", str(weights), "--imgsz", str(imgsz),
                 "--cpu-backend", "pytorch"])
    captured = capsys.readouterr()
    assert "gone: failed" in captured.out and "fake: failed" in captured.out
    assert code == 3 and captured.err.strip().splitlines()[-1] == "emotion-stream: error: every source failed"
