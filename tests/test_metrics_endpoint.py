"""The Prometheus endpoint of `serve`: bound to 127.0.0.1 unless told otherwise; a bad port is one line, exit 2."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.metrics import PipelineMetrics
from pipeline.sinks.redis_server import free_port


def _scrape(host: str, port: int) -> str:
    return urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()


def test_metrics_listen_on_loopback_only_by_default() -> None:
    port = free_port()
    metrics = PipelineMetrics(["cam"], port=port)
    try:
        assert "emotion_source_state" in _scrape("127.0.0.1", port)
        with pytest.raises(urllib.error.URLError):  # another address of this machine finds nothing
            _scrape("127.0.0.2", port)
    finally:
        metrics.close()
    with pytest.raises(urllib.error.URLError):  # closed: the port is free again
        _scrape("127.0.0.1", port)


def test_metrics_host_chooses_the_address() -> None:
    port = free_port()
    metrics = PipelineMetrics(["cam"], port=port, host="127.0.0.2")
    try:
        assert "emotion_source_state" in _scrape("127.0.0.2", port)
        with pytest.raises(urllib.error.URLError):
            _scrape("127.0.0.1", port)
    finally:
        metrics.close()


def _serve_config(tmp_path: Path, video: Path, weights: Path) -> Path:
    config = tmp_path / "cameras.yaml"
    config.write_text(f"model: {{weights: {weights}}}\noutput: {{dir: {tmp_path / 'out'}}}\n"
                      f"sources:\n  - {{id: clip, uri: '{video}'}}\n")
    return config


def test_metrics_port_in_use_is_one_line_and_exit_2(
    scripted_video: tuple, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--config", str(_serve_config(tmp_path, scripted_video[0], weights)),
                     "--metrics-port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and f"127.0.0.1:{port}" in err and "in use" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("port", ["70000", "0"])
def test_metrics_port_out_of_range_is_one_line_and_exit_2(
    port: str, scripted_video: tuple, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["serve", "--config", str(_serve_config(tmp_path, scripted_video[0], weights)), "--metrics-port", port])
    err = capsys.readouterr().err
    assert code == 2 and "metrics.port" in err and port in err and len(err.strip().splitlines()) == 1, err


def test_metrics_host_that_is_no_address_here_is_one_line_and_exit_2(
    scripted_video: tuple, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["serve", "--config", str(_serve_config(tmp_path, scripted_video[0], weights)),
                 "--metrics-port", str(free_port()), "--metrics-host", "192.0.2.1"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot serve metrics on 192.0.2.1" in err and len(err.strip().splitlines()) == 1, err
