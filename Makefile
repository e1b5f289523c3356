# emotion-stream: `make demo` runs the main job, `make test` the tests; both set up a new
# machine first (Debian packages, then a virtual environment in .venv).
VENV    ?= .venv
PYTHON  ?= python3
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP   := $(VENV)/.installed
APT_PACKAGES := redis-server ffmpeg libgl1 libglib2.0-0 \
	python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad

.PHONY: setup system demo test bench clean

setup: system $(STAMP)

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install -q -e ".[dev]"
	# OpenVINO/NNCF telemetry forks a process that waits on the network; decline it.
	$(VENV)/bin/opt_in_out --opt_out >/dev/null
	touch $(STAMP)

demo: setup
	$(VENV)/bin/emotion-stream demo

test: setup
	$(VENV)/bin/ruff check pipeline exporters training tests
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/python -m training.bench_assets runs/bench
	$(VENV)/bin/emotion-stream bench runs/bench/interview-720p.mp4 --weights runs/bench/yolov8m-emotion.pt --imgsz 640

clean:
	rm -rf runs .pytest_cache
