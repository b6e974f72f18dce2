"""`factorscope serve` runs a production server, and the factor page is one cached request.

The server tests run the real command as a subprocess on a free loopback port; the
cache tests call :mod:`factorscope.dash_app.logic` directly.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from factorscope.cli import main
from factorscope.dash_app import logic
from factorscope.warehouse.queries import WarehouseReader
from factorscope.warehouse.synthetic import build_synthetic_db

from .live import CHROMIUM, CLI, chromium_browser, free_port, start_serve, stop


@pytest.fixture(scope="module")
def syn_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "synthetic.duckdb"
    return build_synthetic_db(path, n_sentences=300, n_layers=3, n_factors=32)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """``serve(db, *flags)`` starts ``factorscope serve``; (process, base URL, log path)."""
    procs: list[subprocess.Popen] = []

    def start(db: Path, *flags: str) -> tuple[subprocess.Popen, str, Path]:
        log = tmp_path / f"serve-{len(procs)}.log"
        proc, base = start_serve(db, log, *flags)
        procs.append(proc)
        return proc, base, log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


def _factor_page(base: str, factor: int) -> dict:
    """The page router's answer for /factor/<factor>, as the browser asks for it."""
    deps = json.loads(_get(base + "/_dash-dependencies")[2])
    router = next(d for d in deps if "_pages_content.children" in d["output"])
    values = {
        "_pages_location.pathname": f"/factor/{factor}",
        "_pages_location.search": "",
    }
    body = {
        "output": router["output"],
        "outputs": [
            {"id": spec.rsplit(".", 1)[0], "property": spec.rsplit(".", 1)[1]}
            for spec in router["output"].strip(".").split("...")
        ],
        "inputs": [
            {**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in router["inputs"]
        ],
        "state": [
            {**s, "value": values.get(f"{s['id']}.{s['property']}")}
            for s in router.get("state", [])
        ],
        "changedPropIds": ["_pages_location.pathname"],
    }
    request = urllib.request.Request(
        base + "/_dash-update-component",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _stop(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=20)


# --------------------------------------------------------------------------- the server


@pytest.mark.slow
def test_serve_runs_waitress_and_stops_on_sigterm(serve, syn_db):
    proc, base, log = serve(syn_db, "--threads", "2")
    status, headers, _ = _get(base + "/_dash-layout")
    assert status == 200 and headers["Server"] == "waitress"
    status, headers, html = _get(base + "/factor/3")
    assert status == 200 and headers["Server"] == "waitress" and b"_dash-renderer" in html
    answer = json.dumps(_factor_page(base, 3))
    assert "Factor 3" in answer and "factor-contexts-table" in answer
    assert _stop(proc, signal.SIGTERM) == 0
    text = log.read_text()
    assert "with waitress, 2 threads" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_serve_stops_on_ctrl_c(serve, syn_db):
    proc, _base, log = serve(syn_db)
    assert _stop(proc, signal.SIGINT) == 0
    assert "with waitress, 8 threads" in log.read_text()


@pytest.mark.slow
def test_debug_runs_the_development_server(serve, syn_db):
    proc, base, log = serve(syn_db, "--debug")
    _, headers, _ = _get(base + "/_dash-layout")
    assert headers["Server"].startswith("Werkzeug"), headers
    assert "with the development server" in log.read_text()
    status, _, body = _request(base, "/_dash-layout", host="evil.example")
    assert status == 403 and b"evil.example" in body  # the dev server checks the Host too
    assert _stop(proc, signal.SIGTERM) == 0


@pytest.mark.parametrize("value", ["0", "257", "many"])
def test_threads_out_of_range_is_one_line_exit_2(capsys, tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    code = main(["serve", "--threads", value])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "--threads" in err and "Traceback" not in err
    assert "serving" not in out


# --------------------------------------------------------------------------- serving safely

TOKEN = "tok-0123456789abcdefXYZ"


def _request(
    base: str,
    path: str,
    *,
    host: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw request to the server at ``base`` with a chosen ``Host`` header (urllib
    would raise on a refusal; http.client hands back any status)."""
    hostport = base.removeprefix("http://")
    conn = http.client.HTTPConnection(hostport, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": host or hostport, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _callback_body(base: str, output_part: str, values: dict[str, object]) -> bytes:
    """The POST body the browser sends for the callback whose output names ``output_part``,
    with ``values`` (``"id.property"`` -> value) as its inputs and state."""
    deps = json.loads(_get(base + "/_dash-dependencies")[2])
    dep = next(d for d in deps if output_part in d["output"])
    body = {
        "output": dep["output"],
        "outputs": [
            {"id": spec.rsplit(".", 1)[0], "property": spec.rsplit(".", 1)[1]}
            for spec in dep["output"].strip(".").split("...")
        ],
        "inputs": [{**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in dep["inputs"]],
        "state": [
            {**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in dep.get("state", [])
        ],
        "changedPropIds": [next(iter(values))],
    }
    return json.dumps(body).encode()


def _label_of(db: Path, factor: int) -> str | None:
    from factorscope.warehouse import queries

    try:
        with WarehouseReader(db).connect() as con:
            return (queries.factor_label(con, factor) or {}).get("label")
    finally:
        WarehouseReader(db).close()


@pytest.fixture
def serve_with_token(tmp_path: Path) -> Iterator:
    """``start(db, *flags, env=None)`` runs ``factorscope serve`` that asks for a token;
    (process, base URL, log path) once it answers a request carrying ``TOKEN``."""
    procs: list[subprocess.Popen] = []

    def start(
        db: Path, *flags: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen, str, Path]:
        log = tmp_path / f"serve-token-{len(procs)}.log"
        port = free_port()
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(CLI), "serve", "--db", str(db), "--port", str(port), *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                if _request(base, "/_dash-layout", headers=auth)[0] == 200:
                    return proc, base, log
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"the server did not answer:\n{log.read_text()}")

    yield start
    stop(procs)


def test_the_host_header_is_parsed_strictly():
    from factorscope.dash_app import guard

    assert guard.host_name("127.0.0.1:8050") == "127.0.0.1"
    assert guard.host_name("LocalHost") == "localhost"
    assert guard.host_name("localhost.:8050") == "localhost"
    assert guard.host_name("[::1]:8050") == "::1"
    assert guard.host_name("[::1]") == "::1"
    for bad in ("", "::1", "a:b:c", "[::1", "[::1]x", "host:port", "a b", "h/p", "[evil]"):
        assert guard.host_name(bad) is None, bad


def test_which_hosts_a_bind_admits():
    from factorscope.dash_app import guard
    from factorscope.errors import InputError

    loopback = guard.Access.for_bind("127.0.0.1")
    for host in ("127.0.0.1", "127.0.0.1:8050", "localhost", "localhost:8050", "[::1]:8050"):
        assert loopback.admits_host(host), host
    for host in ("evil.example", "evil.example:8050", "192.0.2.7", "127.0.0.1.evil.example"):
        assert not loopback.admits_host(host), host
    named = guard.Access.for_bind("127.0.0.1", allowed=("box.lan",))
    assert named.admits_host("BOX.lan:8050") and not named.admits_host("evil.example")
    specific = guard.Access.for_bind("192.0.2.7", token=TOKEN)
    assert specific.admits_host("192.0.2.7:8050") and specific.admits_host("localhost")
    assert not specific.admits_host("evil.example") and not specific.admits_host("192.0.2.8")
    anywhere = guard.Access.for_bind("0.0.0.0", token=TOKEN)
    # a browser sends an address as Host only when the user typed it: not a rebinding
    assert anywhere.admits_host("192.0.2.8:8050") and anywhere.admits_host("[2001:db8::1]")
    assert not anywhere.admits_host("evil.example")
    with pytest.raises(InputError, match="--token"):
        guard.Access.for_bind("0.0.0.0")
    with pytest.raises(InputError, match="FACTORSCOPE_TOKEN"):
        guard.Access.for_bind("192.0.2.7")
    assert guard.allowed_hosts(["a.example,b.example", "C.example"]) == (
        "a.example",
        "b.example",
        "c.example",
    )
    for bad in ("", "a,,b", "http://a.example", "a.example:8050", "a b", "a/b", "*", "-a"):
        with pytest.raises(InputError, match="--allowed-host"):
            guard.allowed_hosts([bad])


def test_the_guard_refuses_before_the_app_runs():
    from factorscope.dash_app import guard

    calls: list[str] = []

    def inner(environ, start_response):
        calls.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ran"]

    def call(app, **environ) -> tuple[str, dict[str, str], bytes]:
        seen: dict = {}

        def start_response(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, dict(headers)

        env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "", **environ}
        body = b"".join(app(env, start_response))
        return seen["status"], seen["headers"], body

    open_app = guard.Guard(inner, guard.Access.for_bind("127.0.0.1"))
    assert call(open_app, HTTP_HOST="localhost:8050")[2] == b"ran"
    status, headers, body = call(open_app)  # no Host header at all
    assert status.startswith("400") and headers["Content-Type"].startswith("text/plain"), status
    status, _, body = call(open_app, HTTP_HOST="evil.example", PATH_INFO="/sql")
    assert status.startswith("403") and b"evil.example" in body and b"--allowed-host" in body
    assert calls == ["/"]
    locked = guard.Guard(inner, guard.Access.for_bind("127.0.0.1", token=TOKEN))
    status, headers, _ = call(locked, HTTP_HOST="localhost")
    assert status.startswith("401") and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = call(locked, HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer nope")
    assert status.startswith("403")
    status, _, _ = call(locked, HTTP_HOST="localhost", QUERY_STRING="token=%E2%82%AC")
    assert status.startswith("403")
    assert calls == ["/"]
    status, _, body = call(
        locked, HTTP_HOST="localhost", REQUEST_METHOD="POST", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert status.startswith("200") and body == b"ran"


@pytest.mark.timeout(60)  # a check that let the server start would block here
@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["--host", "0.0.0.0"], {}, ["0.0.0.0", "--token", "FACTORSCOPE_TOKEN"]),
        (["--token", ""], {}, ["--token", "empty"]),
        (["--token", "short"], {}, ["--token", "16"]),
        (["--token", "has space in it, long enough"], {}, ["--token"]),
        ([], {"FACTORSCOPE_TOKEN": ""}, ["FACTORSCOPE_TOKEN", "empty"]),
        (["--allowed-host", "http://box.lan/"], {}, ["--allowed-host", "http://box.lan/"]),
        (["--allowed-host", "a,,b"], {}, ["--allowed-host"]),
    ],
)
def test_serve_refuses_unsafe_or_bad_settings_in_one_line(
    capsys, monkeypatch, syn_db, argv, env, words
):
    monkeypatch.delenv("FACTORSCOPE_TOKEN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["serve", "--db", str(syn_db), "--port", str(free_port()), *argv])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "serving" not in out
    for word in words:
        assert word in err, (word, err)


@pytest.mark.slow
def test_a_foreign_host_is_refused_and_runs_nothing(serve, tmp_path):
    db = build_synthetic_db(tmp_path / "guard.duckdb", n_sentences=200, n_layers=2, n_factors=16)
    WarehouseReader(db).close()
    _proc, base, log = serve(db)
    port = base.rsplit(":", 1)[1]
    save = _callback_body(
        base,
        "factor-label-feedback.children",
        {
            "factor-label-save.n_clicks": 1,
            "factor-label-input.value": "rebound",
            "factor-state.data": {"factor": 2, "layer": 0},
        },
    )
    json_post = {"Content-Type": "application/json"}
    before = _label_of(db, 2)
    for path in ("/", "/factor/3", "/sql", "/_dash-layout", "/assets/factorscope.css"):
        status, headers, body = _request(base, path, host="evil.example")
        assert status == 403, (path, status)
        assert headers["content-type"].startswith("text/plain"), headers
        assert b"evil.example" in body and len(body.splitlines()) == 1, body
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        status, _, body = _request(
            base, "/_dash-update-component", host=host, method="POST", body=save, headers=json_post
        )
        assert status == 403, (host, body)
    assert _label_of(db, 2) == before != "rebound"  # the callback did not run
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "localhost"):
        status, _, body = _request(base, "/factor/3", host=host)
        assert status == 200 and b"_dash-renderer" in body, host
    status, _, body = _request(
        base,
        "/_dash-update-component",
        host=f"localhost:{port}",
        method="POST",
        body=save,
        headers=json_post,
    )
    assert status == 200 and b"Saved label" in body, body
    assert _label_of(db, 2) == "rebound"
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_allowed_host_admits_its_names(serve, syn_db):
    _proc, base, _log = serve(
        syn_db, "--allowed-host", "box.lan,factorscope.test", "--allowed-host", "third.test"
    )
    port = base.rsplit(":", 1)[1]
    for host in ("box.lan", f"factorscope.test:{port}", "THIRD.test", f"127.0.0.1:{port}"):
        assert _request(base, "/_dash-layout", host=host)[0] == 200, host
    assert _request(base, "/_dash-layout", host="evil.example")[0] == 403


@pytest.mark.slow
def test_a_token_is_asked_once_then_kept_in_a_cookie(serve_with_token, syn_db):
    _proc, base, log = serve_with_token(syn_db, env={"FACTORSCOPE_TOKEN": TOKEN})
    status, headers, body = _request(base, "/factor/3")
    assert status == 401 and b"token" in body and "set-cookie" not in headers
    for path in ("/factor/3?token=wrong-token-0123456789", "/_dash-layout"):
        auth = {"Authorization": "Bearer wrong-token-0123456789"} if "token" not in path else {}
        status, _, body = _request(base, path, headers=auth)
        assert status == 403 and b"token" in body, (path, body)
    status, headers, body = _request(
        base,
        "/_dash-update-component",
        method="POST",
        body=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert status == 401
    # the link printed at start: answered with the cookie, then on to the page without it
    status, headers, body = _request(base, f"/factor/3?layer=1&token={TOKEN}")
    assert status == 200, body
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert b"/factor/3?layer=1" in body and TOKEN.encode() not in body
    jar = {"Cookie": cookie.split(";", 1)[0]}
    status, _, body = _request(base, "/factor/3?layer=1", headers=jar)
    assert status == 200 and b"_dash-renderer" in body
    assert _request(base, "/_dash-layout", headers=jar)[0] == 200
    port = base.rsplit(":", 1)[1]
    forged = {"Cookie": f"factorscope_token_{port}=forged"}
    assert _request(base, "/_dash-layout", headers=forged)[0] == 403
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert _request(base, "/_dash-layout", headers=bearer)[0] == 200
    assert _request(base, "/_dash-layout", host="evil.example", headers=jar)[0] == 403
    text = log.read_text()
    assert text.count(f"?token={TOKEN}") == 1, text  # the link, printed once
    assert "Traceback" not in text


@pytest.mark.slow
def test_a_network_bind_warns_and_needs_the_token(serve_with_token, syn_db):
    _proc, base, log = serve_with_token(syn_db, "--host", "0.0.0.0", "--token", TOKEN)
    text = log.read_text()
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "network" in warnings[0] and "SQL" in warnings[0], text
    assert _request(base, "/_dash-layout")[0] == 401
    assert _request(base, "/_dash-layout", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    status = _request(base, "/", host="evil.example", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status[0] == 403


# --------------------------------------------------------------------------- the cache


def test_cache_is_bounded_lru(syn_db):
    cache = logic.PageCache(max_entries=3)
    first = logic.factor_view(syn_db, 0, 0, cache=cache)
    for factor in (1, 2):
        logic.factor_view(syn_db, factor, 0, cache=cache)
    assert len(cache) == 3
    assert logic.factor_view(syn_db, 0, 0, cache=cache) is first  # a hit, now the newest
    logic.factor_view(syn_db, 3, 0, cache=cache)  # pushes out factor 1, the oldest
    assert len(cache) == 3
    assert logic.factor_view(syn_db, 0, 0, cache=cache) is first
    misses = cache.misses
    logic.factor_view(syn_db, 1, 0, cache=cache)
    assert cache.misses == misses + 1
    assert len(cache) == 3
    with pytest.raises(ValueError, match="max_entries"):
        logic.PageCache(max_entries=0)


def test_default_layer_and_peak_layer_share_a_view(syn_db):
    cache = logic.PageCache(max_entries=8)
    view = logic.factor_view(syn_db, 5, cache=cache)
    assert logic.factor_view(syn_db, 5, view.layer, cache=cache) is view
    assert logic.factor_view(syn_db, "5", str(view.layer), cache=cache) is view


def test_cached_view_matches_the_plain_queries(syn_db):
    from factorscope.warehouse import queries

    view = logic.factor_view(syn_db, 7, 1, cache=logic.PageCache())
    with WarehouseReader(syn_db).connect() as con:
        top = queries.top_contexts(con, 7, 1, k=logic.TOP_CONTEXTS)
        assert view.top.equals(top)
        assert view.contexts.equals(top.head(logic.CONTEXTS_PER_PAGE))
        assert view.histogram.equals(queries.factor_histogram(con, 7, 1, bins=30))
        assert view.intervals == queries.interval_samples(con, 7, 1).to_dicts()
        assert view.neighbors.equals(queries.factor_neighbors(con, 7, limit=10))
        assert view.importance.equals(queries.importance_curve(con, 7))
        assert view.level == (queries.factor_level(con, 7) or {}).get("level")
    assert logic.contexts_page(syn_db, 7, 1, 2).equals(top.slice(50, 50))


def test_a_contexts_page_alone_reads_one_page(syn_db):
    logic.PAGE_CACHE.clear(syn_db)
    frame = logic.contexts_page(syn_db, 9, 2, 3)
    assert logic.cached_view(syn_db, 9, 2) is None  # no whole page gathered for it
    view = logic.factor_view(syn_db, 9, 2)
    assert logic.cached_view(syn_db, 9, 2) is view
    assert frame.equals(logic.contexts_page(syn_db, 9, 2, 3))
    assert frame.equals(view.top.slice(100, 50))


def test_a_new_publish_invalidates_the_cache(tmp_path):
    db = build_synthetic_db(tmp_path / "pub.duckdb", n_sentences=200, n_layers=2, n_factors=16)
    cache = logic.PageCache(max_entries=16)
    before = logic.factor_view(db, 4, 1, cache=cache)
    assert logic.factor_view(db, 4, 1, cache=cache) is before
    build_synthetic_db(db, n_sentences=200, n_layers=2, n_factors=16, seed=1)  # publish anew
    after = logic.factor_view(db, 4, 1, cache=cache)
    assert after is not before
    assert not after.top.equals(before.top)
    assert len(cache) == 1  # the views of the old file are gone, not just unreachable
    fresh = logic.factor_view(db, 4, 1, cache=logic.PageCache())
    assert after.top.equals(fresh.top)
    WarehouseReader(db).close()


def test_saving_a_label_shows_at_once(tmp_path):
    db = build_synthetic_db(tmp_path / "lab.duckdb", n_sentences=200, n_layers=2, n_factors=16)
    assert logic.factor_view(db, 2, 0).label != "cached?"
    logic.save_label(db, 2, "cached?")
    assert logic.factor_view(db, 2, 0).label == "cached?"
    WarehouseReader(db).close()


# --------------------------------------------------------------------------- the browser


@pytest.mark.browser
@pytest.mark.slow
def test_a_factor_view_is_one_request(serve, syn_db):
    """Opening a factor page, or switching its layer, asks the server once for data."""
    if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
        pytest.fail("no /usr/bin/chromium: run `make setup-test`", pytrace=False)
    _proc, base, _log = serve(syn_db)
    with chromium_browser() as browser:
        pg = browser.new_page()
        pg.set_default_timeout(20_000)
        posts: list[str] = []
        errors: list[str] = []
        pg.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.goto(f"{base}/factor/3?layer=1", wait_until="networkidle")
        pg.locator("#factor-is-graph .js-plotly-plot").wait_for()
        assert len(posts) == 1, posts
        posts.clear()
        pg.locator("#factor-layer-select label").get_by_text("2", exact=True).click()
        pg.wait_for_url(f"{base}/factor/3?layer=2")
        pg.wait_for_load_state("networkidle")
        pg.locator("#factor-layer-select input[value='2']:checked").wait_for(state="attached")
        assert len(posts) == 1, posts
        assert errors == [], errors


@pytest.mark.browser
@pytest.mark.slow
def test_the_token_link_opens_the_explorer_in_a_browser(serve_with_token, syn_db):
    """The printed link lands on the page, and Dash's own requests then carry the cookie."""
    if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
        pytest.fail("no /usr/bin/chromium: run `make setup-test`", pytrace=False)
    _proc, base, _log = serve_with_token(syn_db, "--token", TOKEN)
    with chromium_browser() as browser:
        pg = browser.new_page()
        pg.set_default_timeout(20_000)
        errors: list[str] = []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.goto(f"{base}/factor/3?layer=1&token={TOKEN}")
        pg.wait_for_url(f"{base}/factor/3?layer=1")
        pg.locator("#factor-is-graph .js-plotly-plot").wait_for()
        assert errors == [], errors
