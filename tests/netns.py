"""Run a command in private network and process namespaces, where every address is loopback.

`run_scenario(module, args, timeout)` runs `python -m module ...` under
`unshare --net --pid --mount-proc --kill-child -- python -m tests.netns`, whose `init` is the
namespace's process 1: it brings `lo` up, runs the command, reaps every orphan (Ray's daemons are
re-parented to it) and exits with the command's status. When process 1 exits the kernel kills
whatever is left in the namespace, so nothing a scenario started outlives it: not on success, not on
failure, not on timeout (`stop_namespace` kills process 1), not when pytest itself dies (`unshare`
gets SIGKILL with its parent, and `--kill-child` passes that on to process 1).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
UNSHARE = ["unshare", "--net", "--pid", "--mount-proc", "--kill-child"]
IP = shutil.which("ip") or "/usr/sbin/ip"
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class NamespaceRun:
    """What a command run in the namespace left: its exit status and output."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def namespace_environment() -> dict[str, str]:
    """This environment with the venv's bin first on PATH (so `ray` is found) and the repository on
    PYTHONPATH (so `tests.*` and the worktree's `pipeline` import, in Ray's workers too)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    return env


def namespace_unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no unshare, no ip), or None when they can."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if not Path(IP).exists():
        return "ip (iproute2) is not installed"
    probe = subprocess.run(UNSHARE + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --net --pid is not permitted here (needs root): {probe.stderr.strip()}"
    return None


def namespace_command(command: list[str]) -> list[str]:
    """The command line that runs `command` in fresh namespaces (run it with `namespace_environment()`
    from REPO_ROOT); killing its process, even with SIGKILL, kills everything in the namespaces."""
    return UNSHARE + ["--", sys.executable, "-m", "tests.netns", *command]


def scenario_command(module: str, result_path: Path, workdir: Path, args: list[str]) -> list[str]:
    """The command line of a scenario module run in fresh namespaces (see `run_scenario`)."""
    return namespace_command([sys.executable, "-m", module, "--result", str(result_path), "--workdir", str(workdir),
                              *args])


def start_in_namespace(command: list[str], **popen: object) -> subprocess.Popen:
    """Start a full namespace command line (`namespace_command`) from REPO_ROOT with
    `namespace_environment()`; it is killed, and everything in its namespace with it, if this process dies."""
    return subprocess.Popen(command, env=namespace_environment(), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent, **popen)


def stop_namespace(process: subprocess.Popen) -> None:
    """Kill the namespace's process 1, so the kernel kills everything in it; returns once `unshare`
    has seen it go, which is after the last process in the namespace has gone."""
    for child in _children(process.pid):
        os.kill(child, signal.SIGKILL)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_in_namespace(command: list[str], timeout: float) -> NamespaceRun:
    """Run a full namespace command line; on timeout (or any interruption) everything in it is killed."""
    process = start_in_namespace(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        return NamespaceRun(process.returncode, stdout, stderr, timed_out=False)
    except subprocess.TimeoutExpired:
        stop_namespace(process)
        stdout, stderr = process.communicate()
        return NamespaceRun(process.returncode, stdout, stderr, timed_out=True)
    finally:
        if process.poll() is None:
            stop_namespace(process)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid`."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel to SIGKILL it when its parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class ScenarioOutcome:
    """A scenario's run, the JSON it wrote (empty when it wrote none: see `run.stderr`), and the host
    processes still naming its workdir once the namespace had gone (none, when cleanup works)."""

    run: NamespaceRun
    result: dict
    stray_processes: list[str]


def run_scenario(module: str, args: list[str], timeout: float) -> ScenarioOutcome:
    """Run `python -m module --result FILE --workdir DIR ARGS` in fresh namespaces.

    DIR is a new, short folder under /tmp (Ray's unix socket paths under it must fit in 107 bytes),
    deleted afterwards; the scenario writes its findings as JSON to FILE."""
    workdir = Path(tempfile.mkdtemp(prefix="netns-", dir="/tmp"))
    result_path = workdir / "result.json"
    try:
        run = run_in_namespace(scenario_command(module, result_path, workdir, args), timeout)
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        return ScenarioOutcome(run, result, processes_naming(str(workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def processes_naming(text: str) -> list[str]:
    """Command lines of this machine's processes that contain `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline[:200])
    return found


def init(command: list[str]) -> int:
    """Process 1 of the namespace: loopback up, run `command`, reap orphans until it ends."""
    subprocess.run([IP, "link", "set", "lo", "up"], check=True)
    child = subprocess.Popen(command)
    while True:
        pid, status = os.wait()
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(init(sys.argv[1:]))
