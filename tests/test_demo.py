"""The demo chain: shipped tiny model -> scripted video -> pipeline -> Redis -> score, then a real face."""

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cli.demo_steps import PASSING_ACCURACY, run_demo
from training.demo_model import SHIPPED_RECORD, SHIPPED_WEIGHTS, settings_key, shipped_is_current
from training.sample_clips import CARPHONE


def test_demo_recovers_the_scripted_timeline_and_reports_a_real_face(tmp_path: Path, redis_url: str) -> None:
    result = run_demo(tmp_path, redis_url=redis_url)
    # Measured: 2 faces x 150 frames; see README "Demo" for the figures this reaches.
    agreement = result.agreement
    assert agreement.face_frames == 300
    assert agreement.detection_rate >= 0.95
    assert agreement.accuracy >= PASSING_ACCURACY
    assert result.passed and result.retrained is None
    assert (tmp_path / "demo" / "timeline.csv").exists()
    real = tmp_path / CARPHONE.name
    assert result.real_face_report and real / "report.md" in result.real_face_report
    summary = json.loads((real / "summary.json").read_text())
    assert summary["frames"] == 120  # every frame of the 4 s clip


def test_shipped_demo_model_is_what_the_code_trains(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The one test that trains the demo model: from scratch, as `demo --retrain` does, against the shipped file."""
    assert shipped_is_current(), f"{SHIPPED_WEIGHTS} is not from today's settings ({settings_key()}): retrain it"
    assert json.loads(SHIPPED_RECORD.read_text())["settings_key"] == settings_key()
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["demo", "--retrain", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "matches the shipped model" in out and "DOES NOT" not in out
    assert "started a private redis-server" in out
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert step in out
    assert "trained on synthetic drawn faces only" in out and "report: " in out
