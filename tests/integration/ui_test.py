#!/usr/bin/env python3
"""idnode's resolver page and operator dashboard, from a real browser and over plain HTTP.

  ui_test.py IDNODE IDCTL IDBENCH

The node homes 88.100.1 (2,000 records from `idbench gen`, SN0001 whose URL value points to a
landing page this test serves on another loopback port, and XSS whose values look like markup) and
delegates 88.200 to 127.0.0.1:2641. Then:
  - over plain HTTP (urllib, no browser): values that look like markup come back escaped, under a
    Content-Security-Policy; /api/stats has its sections; the proxy path redirects to the URL
    value; the assets and the dashboard's methods;
  - in Chromium (tests/e2e/ui.e2e.mjs, playwright-core): the resolver page by keyboard, the
    found / not found / invalid / referred outcomes, the XSS record, both colour schemes, and the
    dashboard's numbers changing while idbench loads the node (idbench is started when the script
    prints DASHBOARD_OPEN, so the numbers it sees change because of that load). Screenshots go to
    $IDNODE_TEST_ARTIFACTS (else ./test-artifacts/ui).
When node, Chromium or playwright-core is missing (docker/install-deps.sh installs them), the
browser test is skipped and the module exits with status 77 (CTest's SKIP_RETURN_CODE), never 0.
Traffic goes to 127.0.0.1 only; every wait is bounded; every process is stopped and checked
(harness.py).
"""
import http.server
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import harness
import server_test as st

HERE = os.path.dirname(os.path.abspath(__file__))
E2E_DIR = os.path.normpath(os.path.join(HERE, "..", "e2e"))
E2E_SCRIPT = os.path.join(E2E_DIR, "ui.e2e.mjs")
# Where docker/install-deps.sh installs the script's npm package: outside the source tree.
E2E_MODULES = os.environ.get("IDNODE_E2E_MODULES") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "e2e", "node_modules"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
IDNODE = IDCTL = IDBENCH = None
NODE = st.NODE  # tearDownModule of server_test.py stops (and checks) every process started, and
# removes NODE["work"]
LANDING = {}

PREFIX = "88.100.1"
FOUND = PREFIX + "/SN0001"
XSS = PREFIX + "/XSS"
MISSING = PREFIX + "/NO-SUCH-SN"
REFERRED = "88.200/ANY1"
LANDING_TEXT = "Landing page of SN0001"
FILLER = 2000
SCRIPT_VALUE = "<script>window.__pwned=1</script>"
IMG_VALUE = '<img src=x onerror="alert(2);window.__pwned=2">'
JS_URL_VALUE = "javascript:window.__pwned=3"
EMAIL_VALUE = 'x@y"><img src=x onerror=alert(5)>'
BENCH_RATE = 2000  # open loop: a fixed load that leaves the 2-core machine to the browser too
BENCH_SECONDS = 40  # covers the dashboard step (its wait is 30 s); idbench exits by itself
E2E_TIMEOUT = 120  # the script bounds itself at 90 s
E2E_CHECKS = 20  # the "ok - " lines of a full run of ui.e2e.mjs
BROWSER_TEST = "test_resolver_and_dashboard_in_chromium"
SCREENSHOTS = ("resolver-found.png", "resolver-found-dark.png", "status.png", "status-dark.png")


def setUpModule():
    harness.set_up_or_tear_down(start_module_node, tearDownModule)


def tearDownModule():
    try:
        if LANDING.get("server"):
            LANDING["server"].shutdown()
            LANDING["server"].server_close()
            LANDING.clear()
    finally:
        st.tearDownModule()


class LandingPage(http.server.BaseHTTPRequestHandler):
    """The page SN0001's URL value points to: any GET gets it."""

    def do_GET(self):
        body = ("<!DOCTYPE html><html><head><title>SN0001</title></head><body><h1>%s</h1>"
                "<p>%s</p></body></html>\n" % (LANDING_TEXT, self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_landing_page():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LandingPage)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="landing page", daemon=True)
    thread.start()
    LANDING["server"] = server
    LANDING["url"] = "http://127.0.0.1:%d/sn0001" % server.server_address[1]


def string(index, type_, value):
    return {"index": index, "type": type_, "data": {"format": "string", "value": value}}


ADMIN = {"index": 100, "type": "HS_ADMIN",
         "data": {"format": "admin", "value": {"handle": "0.NA/" + PREFIX, "index": 300,
                                               "permissions": "011111111111"}}}


def run(*args, timeout=60):
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (" ".join(args[:3]), out.returncode, out.stderr, out.stdout))
    return out


def start_module_node():
    work = tempfile.mkdtemp(prefix="idnode-ui-")
    NODE["work"] = work
    start_landing_page()
    data = os.path.join(work, "data")
    records, keys = (os.path.join(work, n) for n in ("records.jsonl", "keys.txt"))
    run(IDBENCH, "gen", "--count", str(FILLER), "--prefix", PREFIX, "--out", records, "--keys", keys)
    ours = [
        {"handle": FOUND, "values": [string(1, "URL", LANDING["url"]), string(2, "EMAIL", "ops@example.com"),
                                     string(3, "DESC", "Pump, model 7"), ADMIN]},
        {"handle": XSS, "values": [string(1, "DESC", SCRIPT_VALUE), string(2, "DESC", IMG_VALUE),
                                   string(3, "URL", JS_URL_VALUE), string(4, "EMAIL", EMAIL_VALUE), ADMIN]},
    ]
    with open(records, "a") as f:
        for record in ours:
            f.write(json.dumps(record) + "\n")
    NODE["keys"] = keys
    # server_test.start_node_homing's steps, with the delegation before the start.
    run(IDCTL, "prefix", "home", "--data-dir", data, PREFIX)
    run(IDCTL, "import", "--data-dir", data, records)
    run(IDCTL, "prefix", "delegate", "--data-dir", data, "88.200", "127.0.0.1:2641")
    proc = harness.start([IDNODE, "--data-dir", data, "--handle-port", "0", "--http-port", "0", "--dns-port", "0",
                          "--no-demo", "--workers", "2"], "idnode", os.path.join(work, "idnode.log"))
    NODE["proc"] = proc
    line = st.wait_ready(proc)
    ports = {k: int(v) for k, v in re.findall(r"(handle|http|dns)=127\.0\.0\.1:(\d+)", line)}
    if "handle" not in ports or "http" not in ports:
        problem = harness.stop_quietly(proc)
        raise RuntimeError("idnode did not start: " + line + (problem or harness.log_tail(proc, 4000)))
    NODE["handle"], NODE["http"] = ports["handle"], ports["http"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 3xx comes back as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirect)


def fetch(path, method="GET", body=None, timeout=5):
    """(status, headers, body) of a request to the node; redirects are not followed."""
    request = urllib.request.Request("http://127.0.0.1:%d%s" % (NODE["http"], path), data=body, method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


class PlainHttp(unittest.TestCase):
    """The pages as the server writes them (no browser)."""

    def test_markup_in_values_is_escaped_under_a_csp(self):
        status, headers, body = fetch("/" + XSS + "?noredirect")
        self.assertEqual(status, 200)
        page = body.decode()
        self.assertIn("&lt;script&gt;window.__pwned=1&lt;/script&gt;", page)
        self.assertNotIn("<script>window.__pwned", page)
        self.assertIn("&lt;img src=x onerror=", page)
        self.assertNotIn("<img src=x", page)
        self.assertNotIn('href="javascript:', page.lower())  # a javascript: URL value is no link
        self.assertIn(JS_URL_VALUE, page)
        self.assertIn("script-src 'self'", headers.get("Content-Security-Policy", ""))
        self.assertNotIn("unsafe-inline", headers.get("Content-Security-Policy", ""))
        self.assertEqual(headers.get("X-Content-Type-Options"), "nosniff")
        self.assertTrue(headers.get("Content-Type", "").startswith("text/html"), headers.get("Content-Type"))

    def test_found_page_names_the_handle_and_links_the_url(self):
        status, headers, body = fetch("/?id=" + urllib.request.quote(FOUND, safe=""))
        self.assertEqual(status, 200)
        page = body.decode()
        self.assertIn('id="values"', page)
        self.assertIn('class="value-link" href="%s"' % LANDING["url"], page)
        self.assertIn("script-src 'self'", headers.get("Content-Security-Policy", ""))

    def test_stats_has_its_sections(self):
        status, headers, body = fetch("/api/stats")
        self.assertEqual(status, 200, body[:200])
        self.assertTrue(headers.get("Content-Type", "").startswith("application/json"), headers.get("Content-Type"))
        stats = json.loads(body)
        for key in ("series", "cache", "storage", "prefixes", "replication"):
            self.assertIn(key, stats)
        self.assertIsInstance(stats["series"], list)
        self.assertGreaterEqual(stats["prefixes"]["homed"], 1)
        self.assertGreaterEqual(stats["prefixes"]["delegated"], 1)

    def test_proxy_path_redirects_to_the_url_value(self):
        status, headers, _ = fetch("/" + FOUND)
        self.assertEqual(status, 302)
        self.assertEqual(headers.get("Location"), LANDING["url"])

    def test_assets_and_methods(self):
        status, headers, body = fetch("/ui/assets/ui.css")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("Content-Type", "").startswith("text/css"), headers.get("Content-Type"))
        self.assertGreater(len(body), 0)
        for script in ("resolver.js", "status.js"):
            status, headers, body = fetch("/ui/assets/" + script)
            self.assertEqual(status, 200, script)
            self.assertIn("javascript", headers.get("Content-Type", ""), script)
        self.assertEqual(fetch("/ui/assets/nope")[0], 404)
        self.assertEqual(fetch("/ui/status", method="POST", body=b"")[0], 405)
        status, headers, body = fetch("/ui/status")
        self.assertEqual(status, 200)
        self.assertIn('id="rps-total"', body.decode())
        self.assertIn("script-src 'self'", headers.get("Content-Security-Policy", ""))


def node_version():
    node = shutil.which("node")
    if not node:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"v(\d+)\.", out)
    return (int(m.group(1)), out) if m else None


def missing_tools():
    missing = []
    version = node_version()
    if version is None:
        missing.append("node")
    elif version[0] < 20:
        missing.append("node >= 20 (found %s; playwright-core needs 20)" % version[1])
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append("Chromium at " + CHROMIUM)
    if not os.path.isfile(os.path.join(E2E_MODULES, "playwright-core", "package.json")):
        missing.append("%s/playwright-core (docker/install-deps.sh installs it)" % E2E_MODULES)
    return missing


def artifacts_dir():
    path = os.environ.get("IDNODE_TEST_ARTIFACTS") or os.path.join(os.getcwd(), "test-artifacts", "ui")
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)


def descendant_groups(pid):
    """The process groups of `pid`'s descendants (Playwright starts Chromium detached, in a group of
    its own), read from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(entry), int(fields[2])))  # ppid; pgid
    groups, todo = set(), [pid]
    while todo:
        for child, group in children.get(todo.pop(), []):
            groups.add(group)
            todo.append(child)
    return groups


def kill_groups(groups):
    """Whatever is left of the script's and its browser's process groups (a script killed before it
    closed Chromium)."""
    for group in groups - {os.getpgrp(), 0, 1}:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Browser(unittest.TestCase):
    def test_resolver_and_dashboard_in_chromium(self):
        missing = missing_tools()
        if missing and os.environ.get("IDNODE_REQUIRE_BROWSER_TESTS"):
            # CI (docker/dev.sh test) installed them: their absence is a failure, not a skip.
            self.fail("missing %s, which docker/install-deps.sh should have installed" % ", ".join(missing))
        if missing:
            print("SKIPPED: %s (docker/install-deps.sh installs them)" % ", ".join(missing), flush=True)
            raise unittest.SkipTest("missing " + ", ".join(missing))
        artifacts = artifacts_dir()
        for name in os.listdir(artifacts):  # last run's pictures prove nothing
            if name in SCREENSHOTS or (name.startswith("failure-") and name.endswith(".png")):
                os.remove(os.path.join(artifacts, name))
        args = ["node", E2E_SCRIPT, "--base", "http://127.0.0.1:%d" % NODE["http"], "--artifacts", artifacts,
                "--handle", FOUND, "--xss", XSS, "--missing", MISSING, "--referred", REFERRED,
                "--landing-text", LANDING_TEXT]
        env = dict(os.environ, CHROMIUM=CHROMIUM, IDNODE_E2E_MODULES=E2E_MODULES)
        e2e = harness.start(args, "ui.e2e.mjs", os.path.join(artifacts, "e2e.log"), expect_exit=True, cwd=E2E_DIR,
                            env=env, start_new_session=True)
        bench = None
        lines = []
        groups = {e2e.pid}  # the script's own group (start_new_session), then the browser's
        script_problem = None
        deadline = time.monotonic() + E2E_TIMEOUT
        try:
            print(flush=True)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    line = e2e.line_queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if line is None:
                    break
                lines.append(line.rstrip("\n"))
                groups |= descendant_groups(e2e.pid)
                sys.stdout.write("    e2e | " + line)
                sys.stdout.flush()
                if line.strip() == "DASHBOARD_OPEN" and bench is None:
                    # The dashboard is open and has drawn its idle numbers: the load starts now.
                    bench = harness.start(
                        [IDBENCH, "run", "--protocol", "udp", "--server", "127.0.0.1:%d" % NODE["handle"], "--keys",
                         NODE["keys"], "--rate", str(BENCH_RATE), "--seconds", str(BENCH_SECONDS)],
                        "idbench", os.path.join(NODE["work"], "idbench.log"), expect_exit=True)
            try:
                harness.wait_exit(e2e, timeout=max(1, deadline - time.monotonic()))
            except harness.ProcessFailure as e:
                script_problem = str(e)  # reported after its "not ok" lines, which say more
        finally:
            harness.stop_quietly(e2e)  # after a failure above: SIGTERM (Playwright closes Chromium)
            kill_groups(groups)
            bench_problem = None
            if bench is not None:
                try:
                    bench.wait(timeout=BENCH_SECONDS + 30)
                except subprocess.TimeoutExpired:
                    pass
                bench_problem = harness.stop_quietly(bench)

        failed = [l for l in lines if l.startswith("not ok")]
        passed = [l for l in lines if l.startswith("ok - ")]
        self.assertEqual(failed, [])
        self.assertIsNone(script_problem, "\n".join(lines[-20:]))
        self.assertIsNone(bench_problem)
        self.assertGreaterEqual(len(passed), E2E_CHECKS, "\n".join(lines))
        self.assertIn("DASHBOARD_OPEN", [l.strip() for l in lines])
        self.assertIsNotNone(bench, "idbench never started")
        answered = {int(c): int(n) for c, n in re.findall(r"^code (\d+): (\d+)$", "".join(bench.stdout_lines), re.M)}
        self.assertGreater(answered.get(1, 0), BENCH_RATE * 10, "".join(bench.stdout_lines))
        print("screenshots:", flush=True)
        for name in SCREENSHOTS:
            shot = os.path.join(artifacts, name)
            self.assertTrue(os.path.isfile(shot) and os.path.getsize(shot) > 1000, shot)
            print("  " + shot, flush=True)


if __name__ == "__main__":
    IDNODE, IDCTL, IDBENCH = sys.argv[1], sys.argv[2], sys.argv[3]
    del sys.argv[1:4]
    program = unittest.main(verbosity=2, exit=False)
    result = program.result
    if not result.wasSuccessful():
        sys.exit(1)
    if any(test.id().endswith("." + BROWSER_TEST) for test, _ in result.skipped):
        sys.exit(77)  # CTest: SKIP_RETURN_CODE
    sys.exit(0)
