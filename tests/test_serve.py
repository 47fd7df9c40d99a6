"""`motionlib serve`: every route over a library filled by tiny-5b learns, bad inputs, and the CLI command."""

import html
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("httpx", reason="TestClient needs httpx (the test extra)")

from fastapi.testclient import TestClient  # noqa: E402

from motionlib.web import Settings, create_app  # noqa: E402

from helpers import LEFT, RIGHT


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny5b):
    """Two motions learnt with tiny-5b (one tagged), one render recorded."""
    from motionlib.catalog import learn_motion
    from motionlib.store import Library
    from motionlib.video import write_video

    home = tmp_path_factory.mktemp("serve") / "lib"
    lib = Library(home)
    learn_motion(lib, tiny5b, LEFT, "left", tags=["demo"], opt_steps=2)
    learn_motion(lib, tiny5b, RIGHT, "right", opt_steps=2)
    import torch

    out = write_video(torch.rand(9, 3, 64, 96), home.parent / "left-0.mp4", fps=8)
    lib.record_render("left", prompt="a red ball", output_path=str(out), seed=0, steps=6, strength=1.0)
    return lib


@pytest.fixture(scope="module")
def client(library, tiny5b):
    app = create_app(library, Settings(max_upload_bytes=200_000))
    app.state.core.models.models["tiny-5b"] = tiny5b  # the session's model (no second load)
    with TestClient(app) as c:
        yield c


@pytest.fixture()
def writer(library, tiny5b, monkeypatch):
    app = create_app(library, Settings(allow_render=True))
    app.state.core.models.models["tiny-5b"] = tiny5b
    with TestClient(app) as c:
        yield c


def run(main, *args) -> int:
    try:
        main(list(args))
    except SystemExit as e:
        return e.code or 0
    return 0


def cli_json(capsys, monkeypatch, home, *args):
    from motionlib.cli.main import main

    monkeypatch.setenv("MOTIONLIB_HOME", str(home))
    run(main, "--json", "-q", *args)
    return json.loads(capsys.readouterr().out)


# --- pages ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_gallery_shows_every_motion_as_a_card(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text.count('class="card"') == 2
    for name in ("left", "right"):
        assert f'href="/motions/{name}"' in r.text and f"/motions/{name}/thumb.gif" in r.text
    assert "tiny-5b" in r.text and '<a class="tag" href="/?tag=demo">demo</a>' in r.text


def test_gallery_filters_sorts_and_paginates(client):
    assert re.findall(r'data-name="(\w+)"', client.get("/?tag=demo").text) == ["left"]
    assert re.findall(r'data-name="(\w+)"', client.get("/?model=tiny-2b").text) == []
    assert re.findall(r'data-name="(\w+)"', client.get("/?sort=name").text) == ["left", "right"]
    assert re.findall(r'data-name="(\w+)"', client.get("/?sort=newest").text) == ["right", "left"]
    assert re.findall(r'data-name="(\w+)"', client.get("/?sort=oldest").text) == ["left", "right"]
    page2 = client.get("/?sort=name&per_page=1&page=2").text
    assert re.findall(r'data-name="(\w+)"', page2) == ["right"] and "page 2 of 2" in page2 and 'rel="prev"' in page2
    r = client.get("/?per_page=1&page=3")
    assert r.status_code == 404 and "2 page(s)" in r.text
    r = client.get("/?sort=size&tag=&model=")  # empty selects mean "all"
    assert r.text.count('class="card"') == 2


def test_motion_page_has_pictures_plot_params_renders(client, library):
    r = client.get("/motions/left")
    assert r.status_code == 200
    t = r.text
    assert "/motions/left/reference.gif" in t and "/motions/left/thumb.gif" in t
    assert '<svg class="plot"' in t and "<polyline" in t  # the loss as a drawing
    row = library.get("left")
    for key in row.params:  # every learn parameter
        assert f"<th>{key}</th>" in t
    render = library.renders("left")[0]
    assert f'<video src="/renders/{render.id}"' in t and "a red ball" in t
    assert "/motions/left/asset.safetensors" in t and "/motions/left/like" in t
    assert 'action="/motions/left/tags"' not in t  # read-only server: no edit forms


def test_picture_and_file_routes(client, library):
    gif = client.get("/motions/left/thumb.gif")
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif" and gif.content[:6] == b"GIF89a"
    png = client.get("/motions/left/thumb.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.content == library.thumb_path("left", "png").read_bytes()
    ref = client.get("/motions/left/reference.gif")
    assert ref.status_code == 200 and ref.content[:6] == b"GIF89a"
    from PIL import Image
    import io

    im = Image.open(io.BytesIO(ref.content))
    assert im.n_frames == library.get("left").latent_frames  # one preview frame per latent frame
    asset = client.get("/motions/left/asset.safetensors")
    assert asset.status_code == 200 and asset.content == library.asset_path("left").read_bytes()
    assert 'filename="left.safetensors"' in asset.headers["content-disposition"]
    render = library.renders("left")[0]
    video = client.get(f"/renders/{render.id}")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content == Path(render.output_path).read_bytes()
    for path in ("/static/app.css", "/static/app.js"):
        assert client.get(path).status_code == 200


def test_loss_plot_matches_the_numbers():
    from motionlib.web.plots import loss_svg

    svg = loss_svg([[4.0, 2.0], [1.0, 0.0]], width=100 + 68, height=100 + 46)
    pts = [[tuple(map(float, p.split(","))) for p in m.split()] for m in re.findall(r'points="([^"]+)"', svg)]
    assert len(pts) == 2  # one segment per guided step
    xs = [x for seg in pts for x, _ in seg]
    ys = [y for seg in pts for _, y in seg]
    assert xs == pytest.approx([56, 56 + 100 / 3, 56 + 200 / 3, 156], abs=0.05)  # evenly spaced steps (0.1 px)
    assert ys == pytest.approx([12, 62, 87, 112], abs=0.05)  # linear in the loss: 4 at the top, 0 at the bottom
    assert "no loss recorded" in loss_svg([])


# --- search --------------------------------------------------------------------------------------------
def test_search_page_and_upload_ranks_the_same_motion_first(client):
    assert 'type="file" name="clip"' in client.get("/search").text
    with open(LEFT, "rb") as f:
        r = client.post("/search", files={"clip": ("disc_left.mp4", f, "video/mp4")}, data={"k": "2"})
    assert r.status_code == 200, r.text
    assert re.findall(r'data-name="(\w+)"', r.text)[0] == "left"
    assert 'class="score"' in r.text and "/motions/left/thumb.gif" in r.text


def test_more_like_this(client):
    r = client.get("/motions/left/like")
    assert r.status_code == 200 and re.findall(r'data-name="(\w+)"', r.text) == ["right"]


# --- JSON mirrors the CLI's --json -------------------------------------------------------------------
@pytest.mark.slow
def test_json_routes_mirror_the_cli(client, library, capsys, monkeypatch):
    home = library.home
    assert client.get("/api/motions").json() == cli_json(capsys, monkeypatch, home, "list")
    assert client.get("/api/motions?tag=demo").json() == cli_json(capsys, monkeypatch, home, "list", "--tag", "demo")
    shown = client.get("/api/motions/left").json()
    links = shown.pop("links")
    assert shown == cli_json(capsys, monkeypatch, home, "show", "left")
    assert client.get(links["thumbnail_gif"]).status_code == 200 and links["renders"]
    assert client.get("/api/motions/left/like").json() == cli_json(capsys, monkeypatch, home, "search", "--like", "left")
    with open(LEFT, "rb") as f:
        hits = client.post("/api/search", files={"clip": ("a.mp4", f)}, data={"k": "2"}).json()
    monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-5b")
    cli_hits = cli_json(capsys, monkeypatch, home, "search", str(LEFT), "-k", "2")
    assert [h["name"] for h in hits] == [h["name"] for h in cli_hits]
    assert [h["score"] for h in hits] == pytest.approx([h["score"] for h in cli_hits], abs=1e-3)


def test_api_documentation_is_offline(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/motions", "/api/motions/{name}", "/api/search", "/api/render", "/api/jobs/{job_id}"} <= set(schema["paths"])
    page = client.get("/api").text
    assert "/api/motions/{name}/like" in page and "cdn" not in page.lower()
    for text in (page, client.get("/").text):
        assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing loaded from elsewhere


# --- read-only, editing and renders ------------------------------------------------------------------
def test_read_only_without_allow_render(client):
    for method, path, kw in [("post", "/api/motions/left/tags", {"json": {"add": ["x"]}}),
                             ("post", "/api/motions/left/rename", {"json": {"to": "x"}}),
                             ("post", "/motions/left/tags", {"data": {"add": "x"}}),
                             ("post", "/api/render", {"json": {"motion": "left", "prompt": "a cat"}}),
                             ("get", "/render", {})]:
        r = getattr(client, method)(path, **kw)
        assert r.status_code == 403 and "--allow-render" in r.text, (path, r.text)
    assert "/render" not in re.findall(r'<nav>.*?</nav>', client.get("/").text, re.S)[0]


def test_edit_tags_and_name(writer, library):
    r = writer.post("/api/motions/right/tags", json={"add": ["Fast", "sport"], "remove": []})
    assert r.json() == {"name": "right", "tags": ["fast", "sport"]}
    r = writer.post("/motions/right/tags", data={"add": "", "remove": "fast, sport"}, follow_redirects=False)
    assert r.status_code == 303 and library.get("right").tags == []
    r = writer.post("/motions/right/rename", data={"new_name": "right2"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/motions/right2"
    assert writer.post("/api/motions/right2/rename", json={"to": "right"}).json() == {"renamed": "right2", "to": "right"}
    assert 'action="/motions/right/tags"' in writer.get("/motions/right").text
    r = writer.post("/api/motions/right/rename", json={"to": "left"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


@pytest.mark.slow
def test_render_runs_in_the_background_and_plays(writer, library):
    page = writer.get("/render?motion=left")
    assert page.status_code == 200 and '<option value="left" selected>' in page.text
    r = writer.post("/render", data={"motion": "left", "prompt": "a blue ball", "seed": "2", "steps": "2",
                                     "strength": "0.5"}, follow_redirects=False)
    assert r.status_code == 303
    job_id = int(r.headers["location"].rsplit("/", 1)[1])
    second = writer.post("/api/render", json={"motion": "right", "prompt": "a cat", "steps": 2})
    assert second.status_code == 202 and second.json()["status"] in ("queued", "running")
    q = writer.app.state.core.queue
    done = q.wait(job_id, timeout=120)
    assert done.status == "done", done.error
    job = writer.get(f"/api/jobs/{job_id}").json()
    assert job["progress"] == 1.0 and job["result"]["motion"] == "left" and "output" not in job["result"]
    assert f'<video src="/renders/{job["result"]["render_id"]}"' in writer.get(f"/jobs/{job_id}").text
    video = writer.get(f"/renders/{job['result']['render_id']}")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4" and len(video.content) > 100
    assert q.wait(second.json()["id"], timeout=120).status == "done"
    rec = library.renders("left")[0]
    assert (rec.prompt, rec.seed, rec.steps, rec.strength) == ("a blue ball", 2, 2, 0.5)
    assert Path(rec.output_path).parent == library.home / "renders"


def test_render_queue_runs_one_at_a_time_in_order():
    import threading
    import time

    from motionlib.errors import MotionlibError
    from motionlib.progress import DenoiseStep
    from motionlib.web.jobs import RenderQueue

    running, peak, order, gate = [0], [0], [], threading.Event()

    def render(job, progress):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        gate.wait(10)
        progress(DenoiseStep(step=1, total=2))
        time.sleep(0.02)
        order.append(job.id)
        running[0] -= 1
        if job.prompt == "bad":
            raise MotionlibError("the engine refused this")
        return {"motion": job.motion, "seconds": 0.0, "render_id": job.id}

    q = RenderQueue(render)
    jobs = [q.submit(motion="m", prompt=p, seed=0, steps=None, strength=1.0) for p in ("a", "bad", "c")]
    time.sleep(0.1)
    assert [q.position(j) for j in jobs] == [None, 1, 2] and jobs[0].status == "running"
    gate.set()
    assert [q.wait(j.id).status for j in jobs] == ["done", "failed", "done"]
    assert order == [1, 2, 3] and peak[0] == 1
    assert jobs[1].error == "the engine refused this" and jobs[2].progress == 1.0
    q.close()


def test_render_bad_requests(writer):
    assert writer.post("/api/render", json={"motion": "ghost", "prompt": "a cat"}).status_code == 404
    r = writer.post("/api/render", json={"motion": "left", "prompt": ""})
    assert r.status_code == 422 and "prompt" in r.json()["detail"]
    r = writer.post("/api/render", json={"motion": "left", "prompt": "x", "strength": -1})
    assert r.status_code == 422 and "strength" in r.json()["detail"]
    r = writer.post("/render", data={"motion": "left", "prompt": "x", "steps": "many"})
    assert r.status_code == 422 and "steps" in r.text
    assert writer.get("/api/jobs/999").status_code == 404


# --- bad input: 4xx with a clear line, never a 500 --------------------------------------------------
def test_unknown_motion_is_404_everywhere(client):
    for path in ("/motions/ghost", "/motions/ghost/thumb.gif", "/motions/ghost/reference.gif",
                 "/motions/ghost/asset.safetensors", "/motions/ghost/like", "/api/motions/ghost",
                 "/api/motions/ghost/like"):
        r = client.get(path)
        assert r.status_code == 404 and "no motion named 'ghost'" in html.unescape(r.text), path
    r = client.get("/motions/lefft")
    assert "did you mean 'left'" in html.unescape(r.text)
    assert client.get("/renders/999").status_code == 404
    assert client.get("/renders/abc").status_code == 422
    assert client.get("/nowhere").status_code == 404


@pytest.mark.parametrize("path", [
    "/motions/..%2F..%2Fmotionlib.db/asset.safetensors", "/motions/%2e%2e/thumb.png",
    "/motions/..%5Cmotionlib.db", "/static/..%2F..%2F__init__.py", "/static/app.py",
    "/motions/left/thumb.db", "/renders/..%2F..%2Fetc%2Fpasswd", "/motions/left/..%2F..%2Fmotionlib.db",
    "/thumbs/../motionlib.db", "/motions/%2Fetc%2Fpasswd/asset.safetensors",
])
def test_path_traversal_reaches_no_file(client, library, path):
    r = client.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code)
    assert b"SQLite format" not in r.content and b"root:" not in r.content and b"import" not in r.content


def test_oversized_upload_is_413(client):
    big = b"\x00" * 300_000
    r = client.post("/api/search", files={"clip": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = client.post("/search", files={"clip": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413 and "text/html" in r.headers["content-type"]


def test_oversized_upload_without_length_is_cut_off(client):
    def chunks():
        for _ in range(40):
            yield b"\x00" * 10_000

    r = client.post("/api/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


@pytest.mark.parametrize("name,data,message", [
    ("notes.mp4", b"hello, I am text", "not a video"),
    ("still.mp4", None, "still image"),
    ("empty.mp4", b"", "empty"),
])
def test_non_video_upload_is_refused(client, tmp_path, name, data, message):
    if data is None:
        from PIL import Image
        import io

        buf = io.BytesIO()
        Image.new("RGB", (32, 32)).save(buf, format="PNG")
        data = buf.getvalue()
    r = client.post("/api/search", files={"clip": (name, data, "video/mp4")})
    assert r.status_code in (400, 415) and message in r.json()["detail"], r.text
    assert "upload-" not in r.json()["detail"] and name in r.json()["detail"]  # the user's name, not a tmp path
    assert not any((client.app.state.core.lib.home / "tmp").iterdir())  # nothing left behind


def test_bad_query_values_are_422_with_the_field(client):
    r = client.get("/?sort=sideways")
    assert r.status_code == 422 and "sort" in r.text and "newest" in r.text
    r = client.get("/api/motions/left/like?k=0")
    assert r.status_code == 422 and "k" in r.json()["detail"]
    r = client.post("/api/search", data={"k": "3"})
    assert r.status_code == 422 and "clip" in r.json()["detail"]


def test_html_in_a_tag_is_escaped(writer, library):
    bad = '<script>alert(1)</script>'
    r = writer.post("/api/motions/left/tags", json={"add": [bad]})
    assert r.status_code == 400 and "tag" in r.json()["detail"]  # the catalogue refuses it...
    library.get("left")
    # ...and a tag that reached the catalogue some other way is still shown as text
    from motionlib.store import MotionTag

    with library._write_session() as s:
        s.add(MotionTag(motion_id=library.get("left").id, tag=bad))
        s.commit()
    try:
        for path in ("/", "/motions/left", "/motions/right/like"):
            text = writer.get(path).text
            assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path
    finally:
        with library._write_session() as s:
            s.delete(s.get(MotionTag, (library.get("left").id, bad)))
            s.commit()


def test_cross_site_writes_and_foreign_hosts_are_refused(library):
    app = create_app(library, Settings(allow_render=True, allowed_hosts=["127.0.0.1", "localhost"]))
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        r = c.post("/api/motions/left/tags", json={"add": ["x"]}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "cross-site" in r.json()["detail"]
        r = c.post("/motions/left/tags", data={"add": "x"}, headers={"Origin": "null"})  # a sandboxed frame
        assert r.status_code == 403 and "text/html" in r.headers["content-type"]
        assert library.get("left").tags == ["demo"]
        r = c.post("/api/motions/left/tags", json={"add": ["x"]}, headers={"Origin": "http://127.0.0.1:8765"})
        assert r.status_code == 200 and library.tag("left", remove=["x"]).tags == ["demo"]  # same origin
        assert c.get("/", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
        assert c.get("/").status_code == 200


# --- the command ---------------------------------------------------------------------------------------
def test_serve_command_binds_loopback_and_warns_elsewhere(monkeypatch, tmp_path, capsys):
    import uvicorn

    from motionlib.cli.main import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    assert run(main, "serve") == 0
    (app, kw), = calls
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8765
    assert not app.state.core.settings.allow_render
    assert "Warning" not in capsys.readouterr().err
    assert run(main, "serve", "--host", "0.0.0.0", "--port", "9000", "--allow-render") == 0
    assert calls[-1][1]["host"] == "0.0.0.0" and calls[-1][0].state.core.settings.allow_render
    assert "Warning" in capsys.readouterr().err
    assert run(main, "serve", "--port", "0") == 1 and "--port" in capsys.readouterr().err


# --- a real browser -------------------------------------------------------------------------------------
def start_browser():
    """Headless Chromium through Selenium and Debian's chromedriver; the reason when it cannot start."""
    import shutil

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (the test extra)"
    binary = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome"))
                   if p), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        return None, "no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(options=options, service=Service(driver)), None
    except Exception as exc:  # noqa: BLE001 - any start failure is a reason to skip (or fail under CI)
        return None, f"chromium did not start: {str(exc).splitlines()[0]}"


@pytest.fixture()
def browser():
    """A headless Chromium; skips with the reason when none starts, but fails under CI (CI=true)."""
    import os

    driver, reason = start_browser()
    if driver is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    yield driver
    driver.quit()


def serve(library, tiny5b, **settings):
    from motionlib.web import serve_in_thread

    app = create_app(library, Settings(allowed_hosts=["127.0.0.1", "localhost"], **settings))
    app.state.core.models.models["tiny-5b"] = tiny5b
    return serve_in_thread(app)


@pytest.fixture()
def live_server(library, tiny5b):
    """The read-only app served by uvicorn on a free loopback port, in a thread."""
    url, stop = serve(library, tiny5b)
    yield url
    stop()


LOADED = "return arguments[0].complete && arguments[0].naturalWidth > 0"


@pytest.mark.slow
def test_real_browser_gallery_and_search(live_server, browser, tmp_path):
    import os
    import shutil

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server + "/")
    cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
    assert [c.get_attribute("data-name") for c in cards] == ["right", "left"]
    for card in cards:  # each animated thumbnail decoded and laid out
        img = card.find_element(By.CSS_SELECTOR, "img")
        WebDriverWait(browser, 20).until(lambda d, img=img: d.execute_script(LOADED, img))
        assert img.size["width"] > 100 and img.get_attribute("src").endswith(
            f"/motions/{card.get_attribute('data-name')}/thumb.gif?v=" + img.get_attribute("src").split("?v=")[1])
    browser.save_screenshot(str(tmp_path / "gallery.png"))

    browser.get(live_server + "/search")
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(LEFT))
    browser.find_element(By.CSS_SELECTOR, "form.upload button").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results article.card"))
    results = browser.find_elements(By.CSS_SELECTOR, "#results article.card")
    assert results[0].get_attribute("data-name") == "left"
    assert float(results[0].find_element(By.CSS_SELECTOR, ".score").text) > 0.9  # its own clip (auto levels)
    img = results[0].find_element(By.CSS_SELECTOR, "img")
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(LOADED, img))
    browser.save_screenshot(str(tmp_path / "search.png"))

    browser.get(live_server + "/motions/left")
    for sel in ("section.pictures img", ".renders video"):
        assert browser.find_elements(By.CSS_SELECTOR, sel), sel
    for img in browser.find_elements(By.CSS_SELECTOR, "section.pictures img"):
        WebDriverWait(browser, 20).until(lambda d, img=img: d.execute_script(LOADED, img))
    assert browser.find_element(By.CSS_SELECTOR, "svg.plot polyline").is_displayed()
    browser.save_screenshot(str(tmp_path / "motion.png"))
    for shot in ("gallery.png", "search.png", "motion.png"):
        assert (tmp_path / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("MOTIONLIB_SCREENSHOTS")  # a folder to keep the screenshots in
    if keep:
        shutil.copytree(tmp_path, keep, dirs_exist_ok=True)


@pytest.mark.slow
def test_real_browser_render_progress_then_video_plays(library, tiny5b, browser, tmp_path):
    import os
    import shutil

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, stop = serve(library, tiny5b, allow_render=True)
    try:
        browser.get(url + "/render?motion=left")
        browser.find_element(By.NAME, "prompt").send_keys("a yellow ball")
        browser.find_element(By.NAME, "steps").send_keys("2")
        browser.find_element(By.CSS_SELECTOR, "form.render button").click()
        WebDriverWait(browser, 10).until(lambda d: "/jobs/" in d.current_url)
        # the page's script polls the job, then adds the video; the browser decodes it (H.264)
        playing = "var v = document.querySelector('#job video'); return !!v && v.readyState >= 2 && v.videoWidth > 0"
        WebDriverWait(browser, 180).until(lambda d: d.execute_script(playing))
        assert browser.execute_script("return document.querySelector('#job progress').value") == 1
        assert "done" in browser.find_element(By.CSS_SELECTOR, "#job .status").text
        browser.save_screenshot(str(tmp_path / "render.png"))
    finally:
        stop()
    keep = os.environ.get("MOTIONLIB_SCREENSHOTS")
    if keep:
        shutil.copytree(tmp_path, keep, dirs_exist_ok=True)
