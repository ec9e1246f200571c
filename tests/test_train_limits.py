"""Training without freezing the server: the server-wide limiter (a cap and a first-in,
first-out queue), the training job in a child process (stop, errors, cleanup), and the
Train tab's queue in AppTest with two sessions."""

import os
import signal
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import training as T
from explorer.training import jobs

APP = str(Path(__file__).resolve().parents[1] / "app.py")
# a few seconds of work: 32 px, a one-level U-Net, 32 training images
TINY = dict(image_size=32, width=4, depth=1, batch_size=8, samples=2, dataset_knobs={"n": 40})


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# ------------------------------------------------------------ the limiter alone


def test_capacity_one_is_first_in_first_out():
    limiter = T.TrainingLimiter(capacity=1)
    a, b, c = (limiter.request(owner) for owner in "abc")
    assert [t.state for t in (a, b, c)] == ["running", "waiting", "waiting"]
    assert [t.ahead() for t in (a, b, c)] == [0, 1, 2]
    assert limiter.counts() == {"running": 1, "waiting": 2, "capacity": 1}
    a.release()  # a run finishes: the next in line starts
    assert [t.state for t in (a, b, c)] == ["released", "running", "waiting"]
    assert c.ahead() == 1
    b.release()
    assert c.state == "running" and c.ahead() == 0
    c.release()
    assert limiter.counts() == {"running": 0, "waiting": 0, "capacity": 1}


def test_capacity_two_leaving_the_queue_and_releasing_twice():
    limiter = T.TrainingLimiter(capacity=2)
    a, b, c, d = (limiter.request(owner) for owner in "abcd")
    assert [t.state for t in (a, b, c, d)] == ["running", "running", "waiting", "waiting"]
    assert (c.ahead(), d.ahead()) == (2, 3)
    c.release()  # leaves the queue: d moves up, nothing starts
    assert c.state == "released" and d.ahead() == 2 and d.state == "waiting"
    b.release()
    assert d.state == "running"
    b.release()  # a second release changes nothing
    assert limiter.counts() == {"running": 2, "waiting": 0, "capacity": 2}


def test_one_run_per_session_at_a_time():
    limiter = T.TrainingLimiter(capacity=1)
    first = limiter.request("session-1")
    with pytest.raises(ValueError, match="already has a training run"):
        limiter.request("session-1")
    queued = limiter.request("session-2")
    with pytest.raises(ValueError, match="already has a training run"):
        limiter.request("session-2")  # a queued run counts too
    first.release()
    again = limiter.request("session-1")  # after its run, a session may queue again
    assert queued.state == "running" and again.state == "waiting" and again.ahead() == 1


def test_threads_never_exceed_the_cap_and_all_get_their_turn():
    limiter = T.TrainingLimiter(capacity=2)
    lock, now, most, done = threading.Lock(), [0], [0], []

    def run(owner):
        ticket = limiter.request(owner)
        assert ticket.wait(30)
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.01)
        with lock:
            now[0] -= 1
            done.append(owner)
        ticket.release()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most[0] == 2 and sorted(done) == list(range(12))
    assert limiter.counts()["running"] == limiter.counts()["waiting"] == 0


def test_wait_returns_when_a_slot_frees():
    limiter = T.TrainingLimiter(capacity=1)
    first, second = limiter.request("a"), limiter.request("b")
    assert not second.wait(0.05)
    threading.Timer(0.1, first.release).start()
    assert second.wait(10) and second.state == "running"


def test_the_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(T.MAX_RUNS_ENV, raising=False)
    assert T.max_training_runs() == max(1, T.cpu_cores() // 4)
    limiter = T.TrainingLimiter()
    monkeypatch.setenv(T.MAX_RUNS_ENV, "3")  # read when needed: no restart
    assert T.max_training_runs() == 3 and limiter.capacity == 3
    tickets = [limiter.request(i) for i in range(4)]
    assert [t.state for t in tickets] == ["running"] * 3 + ["waiting"]
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(T.MAX_RUNS_ENV, bad)
        with pytest.raises(ValueError, match=T.MAX_RUNS_ENV):
            T.max_training_runs()
    with pytest.raises(ValueError, match="capacity"):
        T.TrainingLimiter(capacity=0)


# ------------------------------------------------------------ jobs, no process needed


def test_a_queued_job_can_leave_and_frees_its_place():
    limiter = T.TrainingLimiter(capacity=1)
    holder = limiter.request("someone else")
    job = T.TrainingJob([T.TrainConfig(**TINY)], limiter=limiter, owner="me")
    assert job.running and job.queued and job.ahead() == 1
    with pytest.raises(ValueError, match="already has a training run"):
        T.TrainingJob([T.TrainConfig(**TINY)], limiter=limiter, owner="me")
    job.stop()
    assert job.join(10)
    assert job.left_queue and not job.running and job.pid is None and job.error is None
    assert limiter.counts() == {"running": 1, "waiting": 0, "capacity": 1}
    holder.release()


def test_a_job_whose_session_is_gone_leaves_the_queue(monkeypatch):
    monkeypatch.setattr(jobs, "ABANDON_AFTER", 0.0)
    limiter = T.TrainingLimiter(capacity=1)
    holder = limiter.request("someone else")
    job = T.TrainingJob([T.TrainConfig(**TINY)], limiter=limiter, owner="me",
                        alive=lambda: False)
    assert job.join(10) and job.left_queue and job.stopped
    assert limiter.counts()["waiting"] == 0
    holder.release()


def test_a_bad_config_is_refused_before_queueing():
    limiter = T.TrainingLimiter(capacity=1)
    with pytest.raises(ValueError, match="epochs"):
        T.TrainingJob([T.TrainConfig(**{**TINY, "epochs": 0})], limiter=limiter, owner="me")
    assert limiter.counts()["waiting"] == limiter.counts()["running"] == 0


# ------------------------------------------------------------ jobs in a child process


def test_child_process_runs_stops_reports_errors_and_cleans_up(tmp_path):
    limiter = T.TrainingLimiter(capacity=1)
    long_run = T.TrainConfig(**{**TINY, "epochs": 500, "run_eagerly": True})  # no tracing
    broken = T.TrainConfig(**{**TINY, "dataset_knobs": {"bogus": 1}})  # fails in the child
    first = T.TrainingJob([long_run], limiter=limiter, owner="a")
    second = T.TrainingJob([broken], limiter=limiter, owner="b")
    assert second.queued and second.ahead() == 1
    wait_for(lambda: first.step >= 2 or not first.running)
    assert first.error is None and first.spawn_seconds > 0
    # the child runs at a lower priority than this process
    assert os.getpriority(os.PRIO_PROCESS, first.pid) == min(
        19, os.getpriority(os.PRIO_PROCESS, 0) + T.CHILD_NICE)
    assert second.queued  # still waiting while the first trains
    first.stop()
    assert first.join(120)
    assert first.stopped and first.error is None and first.child_peak_rss_mb > 0
    result, = first.results
    assert result.stopped and result.model is None and result.data is None
    assert result.epochs[-1]["complete"] is False
    assert result.epochs == [{k: v for k, v in r.items() if k not in ("run", "loss_name")}
                             for r in first.records]  # streamed as they came
    assert first.samples["prediction"].shape == (2, 32, 32)
    with pytest.raises(ProcessLookupError):
        os.kill(first.pid, 0)  # the child has ended and was reaped
    # the model came back as .keras bytes that load and predict
    path = tmp_path / "unet.keras"
    path.write_bytes(result.info["keras_file"])
    model = keras.saving.load_model(path, compile=False)
    assert model(np.zeros((1, 32, 32, 1), np.float32)).shape == (1, 32, 32, 1)
    # the queued job started by itself; its child's error is one line, not a traceback
    assert second.join(120)
    assert second.error.startswith("ValueError: the synthetic dataset has no knob 'bogus'")
    assert "\n" not in second.error and "Traceback" not in second.error
    assert not second.results
    assert limiter.counts() == {"running": 0, "waiting": 0, "capacity": 1}


def test_a_child_that_dies_is_reported_and_frees_its_slot():
    limiter = T.TrainingLimiter(capacity=1)
    job = T.TrainingJob([T.TrainConfig(**{**TINY, "epochs": 500})], limiter=limiter,
                        owner="a")
    wait_for(lambda: job.spawn_seconds is not None or not job.running)
    os.kill(job.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    assert job.join(30)
    assert job.error == ("the training process ended unexpectedly (exit code -9, out of "
                         "memory?)")
    assert limiter.counts()["running"] == 0


# ------------------------------------------------------------ the Train tab


def run(at):
    at.run()
    assert not at.exception, at.exception
    return at


def train_tab():
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["main_tabs"] = "Train"  # as a shared link opens it
    run(at)
    at.selectbox(key="train_size").set_value(32)
    at.selectbox(key="train_width").set_value(4)
    at.selectbox(key="train_depth").set_value(1)
    at.slider(key="train_epochs").set_value(30)  # would take a while: it is stopped
    return run(at)


def texts(at):
    return [element.value for element in (*at.info, *at.warning, *at.error)]


def test_train_tab_queues_a_second_session_and_stops(monkeypatch):
    monkeypatch.setenv(T.MAX_RUNS_ENV, "1")
    first, second = train_tab(), train_tab()
    try:
        first.button(key="train_start").click()
        run(first)
        job = first.session_state["train_job"]
        assert job.running and first.button(key="train_start").disabled  # one per session
        second.button(key="train_start").click()
        run(second)
        queued = second.session_state["train_job"]
        assert queued.queued and queued is not job
        assert "1 run ahead of you in the queue; yours starts when it finishes." in texts(second)
        assert second.button(key="train_stop").label == "Leave the queue"
        second.button(key="train_stop").click()
        run(second)
        assert queued.join(10) and queued.left_queue
        run(second)
        assert any("You left the queue" in text for text in texts(second))
        assert not second.button(key="train_start").disabled

        wait_for(lambda: job.pid is not None)  # the child is starting: stop it there
        run(first)
        assert first.button(key="train_stop").label == "Stop"
        first.button(key="train_stop").click()
        run(first)
        assert job.join(120) and job.stopped and job.error is None
        run(first)
        assert not first.error
        results = first.dataframe[0].value
        assert list(results["loss"]) == ["Dice loss"] and bool(results["stopped"][0])
        assert "download_model" in {b.key for b in first.get("download_button")}
        assert any("now 0 running, 0 waiting" in c.value for c in first.caption)
    finally:  # the limiter is server-wide: leave nothing running for the next test
        for at in (first, second):
            job = at.session_state["train_job"] if "train_job" in at.session_state else None
            if job is not None:
                job.stop()
                job.join(60)


# Run in a plain child process (not multiprocessing, which would import this module and
# Streamlit into it): the code under test first, then, in the same process, whatever the
# machine still lets it do. Sandboxes differ (gVisor has only the normal class; containers
# may have no autogroup file), so the child's own attempt afterwards says what was possible.
_PRIORITY_CHILD = """
import json, os, time
from pathlib import Path
from explorer.training.jobs import _lower_priority
inherited = os.getpriority(os.PRIO_PROCESS, 0)
_lower_priority(10)
autogroup = Path("/proc/self/autogroup")
report = {"pid": os.getpid(), "sid": os.getsid(0), "inherited_nice": inherited,
          "nice": os.getpriority(os.PRIO_PROCESS, 0),
          "idle": os.sched_getscheduler(0) == os.SCHED_IDLE,
          "autogroup": autogroup.read_text().strip() if autogroup.exists() else None}
try:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    report["idle_possible"] = os.sched_getscheduler(0) == os.SCHED_IDLE
except OSError as error:
    report["idle_possible"] = False
    report["idle_refused"] = repr(error)
report["autogroup_possible"] = False
for _ in range(20):
    try:
        autogroup.write_text("19")
        report["autogroup_possible"] = autogroup.read_text().split()[-2:] == ["nice", "19"]
        break
    except BlockingIOError:  # rate-limited machine-wide: try again
        time.sleep(0.12)
    except OSError as error:
        report["autogroup_refused"] = repr(error)
        break
print(json.dumps(report))
"""


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes only")
def test_the_training_child_yields_the_cpu_to_everything_else():
    """Its own session, nice 10 (or weaker, never stronger than it was), and where the
    machine allows them the idle class and its own autogroup at nice 19: with autogroups,
    priorities only count within a group, and the server's group (training included) would
    otherwise get as much CPU as a browser's."""
    import json
    import subprocess
    import sys
    child = subprocess.run([sys.executable, "-c", _PRIORITY_CHILD], capture_output=True,
                           text=True, timeout=180, cwd=Path(APP).parent,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    seen = (f"child exit {child.returncode}, report {child.stdout.strip()!r}, "
            f"stderr ends {child.stderr[-2000:]!r}")
    print(seen, file=sys.stderr)  # last in the captured output, where a CI log tail shows it
    assert child.returncode == 0, seen
    report = json.loads(child.stdout.splitlines()[-1])
    assert report["sid"] == report["pid"] != os.getsid(0), seen
    assert report["nice"] == max(10, report["inherited_nice"]), seen
    assert report["idle"] == report["idle_possible"], seen
    if report["autogroup_possible"]:  # it was 19 already, or the code left it undone
        assert report["autogroup"].split()[-2:] == ["nice", "19"], seen
        # The kernel shows the default group (a container's init session) as an empty file.
        ours = Path("/proc/self/autogroup").read_text().split() or ["(default group)"]
        assert report["autogroup"].split()[0] != ours[0], seen


def test_a_training_child_does_not_run_the_page_again(tmp_path, monkeypatch):
    """Streamlit leaves the page's module as ``__main__`` (with the script's ``__file__``),
    and "spawn" would run that file in the child before training: the whole page again,
    at full priority. Here the "page" only leaves a mark when it runs."""
    import multiprocessing
    import sys
    import types
    mark = tmp_path / "page ran"
    page = tmp_path / "page.py"
    page.write_text(f"open({str(mark)!r}, 'a').write('ran\\n')\n")
    module = types.ModuleType("__main__")
    module.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", module)
    plain = multiprocessing.get_context("spawn").Process(target=os.getpid)
    plain.start()
    plain.join(60)
    assert mark.read_text() == "ran\n"  # what "spawn" does by itself
    mark.unlink()
    job = T.TrainingJob([T.TrainConfig(**TINY)])
    assert job.join(120) and job.error is None and len(job.results) == 1
    assert not mark.exists()
    assert sys.modules["__main__"] is module
