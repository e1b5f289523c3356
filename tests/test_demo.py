"""The demo chain: synthetic faces -> tiny model -> scripted video -> pipeline -> Redis -> score."""

from pathlib import Path

from pipeline.cli.demo_steps import PASSING_ACCURACY, run_demo


def test_demo_recovers_the_scripted_timeline(tmp_path: Path, redis_url: str, weights: Path) -> None:
    result = run_demo(tmp_path, redis_url=redis_url)
    # Measured: 2 faces x 150 frames; see README "Demo" for the figures this reaches.
    assert result.face_frames == 300
    assert result.detection_rate >= 0.95
    assert result.accuracy >= PASSING_ACCURACY
    assert result.passed
    assert (tmp_path / "demo" / "timeline.csv").exists()


def test_demo_starts_its_own_redis_when_none_is_given(tmp_path: Path, weights: Path) -> None:
    result = run_demo(tmp_path)
    assert result.face_frames == 300 and result.detected > 0
