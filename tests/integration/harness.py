"""What the integration tests share about the processes they start, and about waiting.

Every process a test starts goes through start(), and is stopped by stop() (or stop_all() at the
end of a module). A stop is a check: the test fails when the process
  - exited, or was killed by a signal, before it was asked to stop (a crash, an abort);
  - exited with a non-zero status, or was killed by a signal, once asked (SIGTERM);
  - did not exit within the grace period and needed SIGKILL;
  - left a sanitizer report (ASan, LSan, UBSan, TSan) in its log, whatever its status.
stop() cleans up first (the process is gone, its pipes and log closed) and raises afterwards, so a
failing check never leaves a process behind; stop_all() stops every process still running before
it raises one error naming them all.

wait_until() is how a test waits: it polls a condition until it holds or a deadline passes, and
fails with what it last saw. metrics() reads a node's /metrics.
"""
import atexit
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

SANITIZER_REPORT = re.compile(r"ERROR: [A-Za-z]+Sanitizer|WARNING: ThreadSanitizer|SUMMARY: [A-Za-z]+Sanitizer|"
                              r"runtime error: ")
STOP_GRACE_SECONDS = 15  # SIGTERM to exit, a sanitizer's leak check at exit included

_running = []  # processes started and not yet stopped, oldest first


class ProcessFailure(AssertionError):
    """A process a test started ended badly (see the module's docstring)."""


def start(args, name, log_path, expect_exit=False, **popen_kw):
    """Starts `args` with its stderr in `log_path` and its stdout read line by line by a thread
    (so that the pipe never fills; ready_line() reads it). `expect_exit`: the process ends by itself
    (wait_exit()), else it runs until stop(). Returns the subprocess.Popen."""
    log = open(log_path, "w")
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, **popen_kw)
    except BaseException:
        log.close()
        raise
    proc.name = name
    proc.log_path = log_path
    proc.log_file = log
    proc.expect_exit = expect_exit
    proc.stdout_lines = []  # everything it printed, for the report of a failure
    proc.line_queue = queue.Queue()
    proc.problem = None
    proc.reader = threading.Thread(target=_read_stdout, args=(proc,), daemon=True)
    proc.reader.start()
    _running.append(proc)
    return proc


def _read_stdout(proc):
    for line in proc.stdout:
        proc.stdout_lines.append(line)
        proc.line_queue.put(line)
    proc.line_queue.put(None)  # end of output


def ready_line(proc, prefix, timeout=20):
    """The first line of stdout that starts with `prefix` ("" if the process exits, or prints no
    such line within `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ""
        try:
            line = proc.line_queue.get(timeout=remaining)
        except queue.Empty:
            return ""
        if line is None:
            return ""
        if line.startswith(prefix):
            return line


def _describe(status):
    if status is None:
        return "still running"
    if status < 0:
        try:
            return "killed by signal %s" % signal.Signals(-status).name
        except ValueError:
            return "killed by signal %d" % -status
    return "exited with status %d" % status


def _finish(proc, problem):
    """Closes what the process held; records and returns the problem (None when it ended
    cleanly), the sanitizer check of its log included."""
    proc.reader.join(timeout=5)
    if proc.stdout:
        proc.stdout.close()
    proc.log_file.close()
    if proc in _running:
        _running.remove(proc)
    log = log_tail(proc, 1 << 20)
    if problem is None and SANITIZER_REPORT.search(log):
        problem = "left a sanitizer report in its log (%s)" % _describe(proc.returncode)
    if problem is not None:
        problem = "%s (pid %d) %s; the end of its log (%s):\n%s%s" % (
            proc.name, proc.pid, problem, proc.log_path, log[-6000:],
            "".join(["its stdout:\n"] + proc.stdout_lines[-20:]) if proc.stdout_lines else "")
    proc.problem = problem
    return problem


def log_tail(proc, size=6000):
    try:
        with open(proc.log_path, errors="replace") as f:
            return f.read()[-size:]
    except OSError:
        return ""


def stop_quietly(proc, grace=STOP_GRACE_SECONDS):
    """Stops `proc` as stop() does and returns the problem (None if it ended cleanly) instead of
    raising. Stopping a process twice is harmless (the first outcome is returned)."""
    if not hasattr(proc, "reader"):
        raise TypeError("not started by harness.start()")
    if proc not in _running:
        return proc.problem
    problem = None
    if proc.poll() is not None:
        if not proc.expect_exit:
            problem = "%s before it was asked to stop" % _describe(proc.returncode)
        elif proc.returncode != 0:
            problem = _describe(proc.returncode)
    else:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
            if proc.returncode != 0:
                problem = "was sent SIGTERM and %s" % _describe(proc.returncode)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            problem = "did not exit within %d s of SIGTERM and needed SIGKILL" % grace
    return _finish(proc, problem)


def stop(proc, grace=STOP_GRACE_SECONDS):
    """SIGTERM, then SIGKILL after `grace` seconds; raises ProcessFailure, once the process is
    gone, when it did not end cleanly (see the module's docstring)."""
    problem = stop_quietly(proc, grace)
    if problem:
        raise ProcessFailure(problem)


def kill(proc):
    """A deliberate crash (SIGKILL), as a test of recovery does: not a failure by itself, but a
    sanitizer report already in the log still fails it (raises ProcessFailure)."""
    if proc not in _running:
        raise AssertionError("%s is not running" % proc.name)
    if proc.poll() is not None:
        problem = _finish(proc, "%s before it was killed" % _describe(proc.returncode))
    else:
        proc.kill()
        proc.wait()
        problem = _finish(proc, None)
    if problem:
        raise ProcessFailure(problem)


def wait_exit(proc, timeout):
    """Waits for a process that ends by itself (start(expect_exit=True)); raises ProcessFailure
    when it exits non-zero, is killed by a signal, or is still running after `timeout` seconds (it is
    then stopped)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_quietly(proc)
        raise ProcessFailure("%s (pid %d) was still running %s s after it should have ended" %
                             (proc.name, proc.pid, timeout))
    problem = stop_quietly(proc)
    if problem:
        raise ProcessFailure(problem)


def stop_all():
    """Stops every process started and not yet stopped (the newest first); raises one
    ProcessFailure naming each that did not end cleanly. For tearDownModule."""
    problems = [p for p in (stop_quietly(proc) for proc in list(reversed(_running))) if p]
    if problems:
        raise ProcessFailure("\n\n".join(problems))


def set_up_or_tear_down(set_up, tear_down):
    """Runs set_up(); if it raises, runs tear_down() before passing the error on (unittest runs no
    tearDownModule after a failed setUpModule), so that nothing started is left behind. A failure of
    tear_down() itself is printed, the set-up error being the one raised."""
    try:
        set_up()
    except BaseException:
        try:
            tear_down()
        except Exception as e:  # e.g. ProcessFailure: the node that did not start, and why
            sys.stderr.write("while cleaning up after a failed set-up: %s\n" % e)
        raise


@atexit.register
def _no_process_left_behind():
    # A module whose setUpModule failed gets no tearDownModule: nothing it started outlives it.
    for proc in list(_running):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_until(condition, timeout, what, interval=0.02):
    """Polls `condition()` until it returns a true value (returned) or `timeout` seconds pass
    (then AssertionError naming `what` and the last value seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %s s waiting for %s (last: %r)" % (timeout, what, value))
        time.sleep(interval)


def http_get(http_port, path, source="127.0.0.9", timeout=5):
    """The body of GET `path` on a node's HTTP port; raises unless it answers 200. Fetched from
    `source` (another loopback address, so that a test holding 127.0.0.1's connection slots can
    still read it)."""
    s = socket.create_connection(("127.0.0.1", http_port), timeout=timeout, source_address=(source, 0))
    try:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError(path + " answered " + head.decode("latin-1").split("\r\n")[0])
    return body


def metrics(http_port, source="127.0.0.9", timeout=5):
    """The samples of a node's /metrics: {'name{labels}': value}."""
    body = http_get(http_port, "/metrics", source, timeout)
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def metric_sum(samples, name, **labels):
    """The sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
    want = ['%s="%s"' % kv for kv in labels.items()]
    total = 0.0
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric == name and all(w in rest.rstrip("}").split(",") for w in want):
            total += value
    return total
