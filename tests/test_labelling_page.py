"""The labelling loop through `fewlabel serve`: /suggest and /check over HTTP (with the server's error conventions),
and the /ui page driven in a real headless Chromium (Debian's /usr/bin/chromium, through Playwright): it asks for
the token once, labels a round of suggested NSMC (Korean) texts with keys, and the index grows and the counts
change. ``FEWLABEL_SCREENSHOT=docs/img/labelling-page.png`` also saves the page's screenshot there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")

from fewlabel.retrieval.cli import main  # noqa: E402
from tests.support.server import running_server  # noqa: E402
from tests.test_labelling import fresh_home  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
TOKEN = "page-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _tsv(dst: Path, lines: list[str]) -> Path:
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An index of 40 NSMC rows (e5-small) served with a token and a pool of 120 other rows."""
    d = tmp_path_factory.mktemp("labelling")
    lines = (DEMO / "nsmc_train.tsv").read_text(encoding="utf-8").splitlines()
    seed = _tsv(d / "seed.tsv", [lines[0], *lines[1:41]])
    pool = _tsv(d / "pool.tsv", [lines[0], *lines[21:161]])  # 20 of its texts are in the index already
    index = d / "index"
    assert main(["-q", "index", "build", str(seed), "--id-col", "id", "--model", "e5-small", "--no-cache",
                 "--out", str(index)]) == 0
    env = {**os.environ, "FEWLABEL_TOKEN": TOKEN, "FEWLABEL_HOME": str(fresh_home(d / "home"))}
    with running_server([str(index), "--pool", str(pool), "--pool-id-col", "id", "--max-batch", "16", "--timeout",
                         "300"], d / "server.log", env=env, timeout_s=180) as (_, base), \
            httpx.Client(base_url=base, timeout=120) as client:
        yield {"client": client, "base": base, "index": index, "seed": seed, "dir": d,
               "seed_texts": {line.split("\t")[1] for line in lines[1:41]}}


def test_suggest_route_never_offers_indexed_texts(served):
    client = served["client"]
    answer = client.post("/suggest", json={"n": 16, "strategy": "uncertainty"}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["suggestions"]) == 16 and body["pool_size"] == 140
    texts = [s["text"] for s in body["suggestions"]]
    assert not set(texts) & served["seed_texts"]
    margins = [s["probabilities"] for s in body["suggestions"]]
    gaps = [abs(p["positive"] - p["negative"]) for p in margins]
    assert gaps == sorted(gaps)  # most uncertain first
    assert all(s["guess"] and s["reason"].startswith("uncertain") for s in body["suggestions"])


def test_suggest_and_check_errors_follow_the_server_conventions(served):
    client = served["client"]
    assert client.post("/suggest", json={"n": 2}).status_code == 401
    bad = client.post("/suggest", json={"n": 2, "strategy": "smart"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "strategy"]
    too_many = client.post("/suggest", json={"n": 17}, headers=AUTH)
    assert too_many.status_code == 413 and too_many.json()["error"].startswith("body.n")
    unknown = client.post("/check", json={"folds": 5, "everything": True}, headers=AUTH)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "everything"]
    sent = client.post("/suggest", json={"n": 1, "texts": ["", "x"]}, headers=AUTH)
    assert sent.status_code == 422 and sent.json()["detail"][0]["loc"] == ["body", "texts", 0]


def test_check_route_ranks_suspects(served):
    answer = served["client"].post("/check", json={"all": True, "limit": 5}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["suspects"]) == 5 and [s["rank"] for s in body["suspects"]] == [1, 2, 3, 4, 5]
    quality = [s["quality"] for s in body["suspects"] if not s["flagged"]]
    assert quality == sorted(quality)
    assert all(set(s["given"]) <= {"positive", "negative"} for s in body["suspects"])


def test_home_links_to_the_page_and_the_page_is_served_offline(served):
    client = served["client"]
    home = client.get("/")
    assert home.status_code == 200 and 'href="/ui"' in home.text
    page = client.get("/ui")
    assert page.status_code == 200 and '<meta charset="utf-8">' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    script = client.get("/ui/app.js")
    assert script.status_code == 200 and "https://" not in script.text and "http://" not in script.text
    assert client.get("/ui/secrets.txt").status_code == 401  # only the page's own files are open
    assert client.get("/ui/secrets.txt", headers=AUTH).status_code == 404


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (make browser)")
def test_page_labels_a_round_in_a_real_browser(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the browser extra)")
    client = served["client"]
    before = client.get("/labelling/status", headers=AUTH).json()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            page.goto(served["base"] + "/ui")
            page.wait_for_selector("#token-input", state="visible", timeout=30_000)  # asked once
            page.fill("#token-input", TOKEN)
            page.click("#token-save")
            page.wait_for_selector(".label-btn", timeout=120_000)
            page.wait_for_function("document.querySelector('#queue').textContent.includes('more')",
                                   timeout=120_000)
            shown = []
            for i in range(10):  # one round: 8 answers (guess accepted, or a label key) and 2 skips
                text = page.inner_text("#text")
                assert text and text not in served["seed_texts"]
                shown.append(text)
                if i in (3, 7):
                    page.keyboard.press("s")
                elif i % 2:
                    page.keyboard.press("Enter")  # the model's guess, preselected
                else:
                    page.keyboard.press("1")  # the first label (negative): answers at once (single-label)
                page.wait_for_function(f"document.querySelector('#added').textContent === "
                                       f"'{sum(1 for j in range(i + 1) if j not in (3, 7))}'"
                                       " && document.querySelector('#text').textContent !== "
                                       f"{text!r}", timeout=120_000)
            assert len(set(shown)) == 10
            page.wait_for_function("!document.querySelector('#text').textContent.startsWith('Round done')",
                                   timeout=180_000)  # refitted, next round fetched
            counts = {el.get_attribute("data-label"): el.inner_text() for el in page.query_selector_all(".count")}
            assert page.inner_text("#n-rows") == str(before["n_rows"] + 8)
            shot = served["dir"] / "labelling-page.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("FEWLABEL_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["FEWLABEL_SCREENSHOT"])
            page.click("#tab-check")
            page.click("#run-check")
            page.wait_for_selector(".suspect", timeout=300_000)  # 5 refits of the method, on a loaded CPU
        finally:
            browser.close()
    after = client.get("/labelling/status", headers=AUTH).json()
    assert after["n_rows"] == before["n_rows"] + 8
    assert sum(after["counts"].values()) == sum(before["counts"].values()) + 8
    assert after["counts"]["negative"] >= before["counts"]["negative"] + 4  # four answers by key 1
    assert counts["negative"] == f"negative: {after['counts']['negative']}"
    assert after["score"] is not None  # refitted: an estimated score
    info = client.get("/info", headers=AUTH).json()
    assert info["n_rows"] == before["n_rows"] + 8
