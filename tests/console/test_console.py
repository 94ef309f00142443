"""The model console at /zeroserve/ in headless Chromium (Debian's package), driven by Playwright.

No browser is downloaded: Playwright starts /usr/bin/chromium (``hack/chromium.sh`` installs it;
``tox -e console`` runs that first). A test fails on any error the page logs.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, start_server

pytestmark = [pytest.mark.timeout(180), pytest.mark.integration]
MODELS = Path(__file__).resolve().parent / "models" / "console_models.py"
# What a root user on a machine with no outside network needs (Chromium otherwise tries to reach
# Google's hosts at every start).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="run `tox -e console`")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed: run hack/chromium.sh (tox -e console)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(MODELS, tmp_path / "serve.log")
    try:
        assert server.process.poll() is None, server.log_gist()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh page that records what it logs as an error."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.logged_errors = []
    opened.on(
        "console", lambda m: opened.logged_errors.append(m.text) if m.type == "error" else None
    )
    opened.on("pageerror", lambda exc: opened.logged_errors.append(f"uncaught: {exc}"))
    try:
        yield opened
    finally:
        context.close()


def card(page: Any, model: str) -> Any:
    return page.locator(f'section[data-model="{model}"]')


def transitions(page: Any, model: str) -> list[str]:
    items = card(page, model).locator("ol.transitions li")
    return [str(items.nth(i).get_attribute("data-state")) for i in range(items.count())]


def test_a_model_goes_from_zero_to_ready_and_its_cold_start_is_drawn(
    served: RunningServer, page: Any, tmp_path: Path
) -> None:
    page.goto(f"{served.url}/zeroserve/")
    state = card(page, "slow-start").locator(".state")
    state.filter(has_text="zero").wait_for(timeout=WAIT_MS)
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                f"{served.url}/v1/models/slow-start:predict",
                json={"instances": [1.0, 2.0]},
                timeout=60,
            )
        )
    )
    request.start()
    page.wait_for_function(
        """() => [...document.querySelectorAll(
                     'section[data-model="slow-start"] ol.transitions li')]
                 .map((item) => item.dataset.state).includes("ready")""",
        timeout=WAIT_MS,
    )
    request.join(timeout=60)
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json() == {"predictions": [2.0, 4.0]}
    assert transitions(page, "slow-start")[:3] == ["zero", "starting", "ready"]

    first_answer = card(page, "slow-start").locator('li[data-total="first-answer"]')
    first_answer.wait_for(timeout=WAIT_MS)
    status = httpx.get(f"{served.url}/zeroserve/status", timeout=10).json()
    last = status["models"]["slow-start"]["last_cold_start"]
    expected = [
        (phase["name"], round(phase["end_s"] - phase["start_s"], 4))
        for phase in last["worker_timeline"]["phases"]
        if phase["end_s"] is not None
    ]
    drawn = card(page, "slow-start").locator("li[data-phase]")
    shown = [
        (
            drawn.nth(i).get_attribute("data-phase"),
            float(drawn.nth(i).get_attribute("data-seconds")),
        )
        for i in range(drawn.count())
    ]
    assert ("load", pytest.approx(1.0, abs=0.5)) in shown, shown
    assert shown == expected
    assert f"{last['ready_s']:.3f} s" in str(
        card(page, "slow-start").locator('li[data-total="ready"]').text_content()
    )
    assert f"{last['first_response_s']:.3f} s" in str(first_answer.text_content())

    form = card(page, "slow-start").locator("form.batching")
    form.locator('input[name="max_batch_size"]').fill("4")
    form.get_by_role("button", name="Apply").click()
    card(page, "slow-start").locator(".result").filter(
        has_text="Applied: max batch size 4"
    ).wait_for(timeout=WAIT_MS)
    read = httpx.get(f"{served.url}/zeroserve/models/slow-start/batching", timeout=10).json()
    assert read["batching"]["max_batch_size"] == 4

    requests = card(page, "slow-start").locator("dl.facts dt", has_text="requests")
    requests.wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        """() => [...document.querySelectorAll('section[data-model="slow-start"] dt')]
                 .some((term) => term.textContent === "requests"
                                  && Number(term.nextElementSibling.textContent) >= 1)""",
        timeout=WAIT_MS,
    )
    sizes = card(page, "slow-start").locator('ul[aria-label="batch sizes"] li')
    sizes.filter(has_text="≤ 2").wait_for(timeout=WAIT_MS)  # the one batch: both instances
    shot = tmp_path / "console.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert page.logged_errors == []


def test_markup_in_an_error_is_text_and_a_refused_change_shows_the_apis_error(
    served: RunningServer, page: Any
) -> None:
    page.goto(f"{served.url}/zeroserve/")
    refused = httpx.post(
        f"{served.url}/v1/models/refuses:predict", json={"instances": [1.0]}, timeout=60
    )
    assert refused.status_code == 503, refused.text
    failed = card(page, "refuses")
    failed.locator(".state").filter(has_text="failed").wait_for(timeout=WAIT_MS)
    failed.locator("dd", has_text="<img src=x").wait_for(timeout=WAIT_MS)
    assert failed.locator("img, b").count() == 0
    assert page.evaluate("() => window.injected") is None
    assert failed.locator("form").count() == 0, "a batching form for a model that does not batch"

    form = card(page, "slow-start").locator("form.batching")
    form.locator('input[name="max_batch_size"]').fill("100000")
    form.get_by_role("button", name="Apply").click()
    error = card(page, "slow-start").locator(".result.error")
    error.wait_for(timeout=WAIT_MS)
    said = str(error.text_content())
    assert "answered 400" in said, said
    assert "max_batch_size" in said, said
    read = httpx.get(f"{served.url}/zeroserve/models/slow-start/batching", timeout=10).json()
    assert read["batching"]["max_batch_size"] == 8, "a refused change was applied"
    # The browser logs the refused PUT's status itself; nothing else may be logged.
    others = [text for text in page.logged_errors if "status of 400" not in text]
    assert others == []


def test_the_iris_sample_on_the_page(iris_dir: Path, page: Any, tmp_path: Path) -> None:
    """The samples as a new user serves them: both models listed, a batching form only for
    the batched one, and a cold start drawn after the first request."""
    server = start_server(iris_dir / "model.py", tmp_path / "serve.log")
    try:
        page.goto(f"{server.url}/zeroserve/")
        card(page, "iris-batched").locator("form.batching").wait_for(timeout=WAIT_MS)
        card(page, "iris").locator(".state").filter(has_text="zero").wait_for(timeout=WAIT_MS)
        assert card(page, "iris").locator("form").count() == 0
        answer = httpx.post(
            f"{server.url}/v1/models/iris:predict",
            json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        card(page, "iris").locator('li[data-phase="load"]').wait_for(timeout=WAIT_MS)
        started = card(page, "iris").locator('li[data-total="process-start"]')
        assert "fork" in str(started.text_content()) or "spawn" in str(started.text_content())
        card(page, "iris").locator(".state").filter(has_text="ready").wait_for(timeout=WAIT_MS)
        page.screenshot(path=str(tmp_path / "iris.png"), full_page=True)
        assert page.logged_errors == []
    finally:
        server.stop()


def test_input_drift_is_drawn_against_the_threshold(page: Any, tmp_path: Path) -> None:
    from zeroserve.telemetry.drift import write_profile

    folder = tmp_path / "drifting"
    folder.mkdir()
    shutil.copy(MODELS.parent / "drifting.py", folder / "model.py")
    reference = [[float(i % 100), float(i % 7)] for i in range(300)]
    (tmp_path / "sample.json").write_text(json.dumps({"instances": reference}))
    write_profile(tmp_path / "sample.json", folder)
    server = start_server(folder / "model.py", tmp_path / "serve.log")
    try:
        shifted = [[value + 500.0, second] for value, second in reference[:150]]
        answer = httpx.post(
            f"{server.url}/v1/models/drifting:predict", json={"instances": shifted}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        page.goto(f"{server.url}/zeroserve/")
        bars = card(page, "drifting").locator('ul[aria-label="input drift"] li')
        bars.filter(has_text="drifted").first.wait_for(timeout=WAIT_MS)
        report = httpx.get(f"{server.url}/zeroserve/models/drifting/drift", timeout=10).json()
        flagged = [feature["name"] for feature in report["features"] if feature["drifted"]]
        drawn = [
            str(bars.nth(i).locator(".label").text_content())
            for i in range(bars.count())
            if "drifted" in str(bars.nth(i).text_content())
        ]
        assert drawn == flagged, (drawn, report)
        heading = card(page, "drifting").locator("h3", has_text="Input drift")
        assert f"threshold {report['threshold']}" in str(heading.text_content())
        outputs = card(page, "drifting").locator('ul[aria-label="outputs"] li')
        outputs.filter(has_text="high").wait_for(timeout=WAIT_MS)
        assert page.logged_errors == []
    finally:
        server.stop()


CONTRAST = """() => {
  // WCAG 2 contrast of each element's own text against the first opaque background behind it.
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const linear = [r, g, b].map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2];
  };
  const background = (node) => {
    for (let at = node; at; at = at.parentElement) {
      const color = rgb(getComputedStyle(at).backgroundColor);
      if (color.length < 4 || color[3] === 1) return color.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  for (const node of document.querySelectorAll("body *")) {
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    if (!own || node.offsetParent === null) continue;
    const [a, b] = [luminance(rgb(getComputedStyle(node).color)), luminance(background(node))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push(`${node.tagName}.${node.className}: ${ratio.toFixed(2)}`);
  }
  return worst;
}"""


def test_the_page_works_from_the_keyboard_and_its_text_has_contrast(
    served: RunningServer, page: Any
) -> None:
    """Tab reaches the batching form and Enter applies it; all text has a WCAG AA contrast
    (4.5:1) against its background; states are words, not colours alone."""
    page.goto(f"{served.url}/zeroserve/")
    card(page, "slow-start").locator("form.batching").wait_for(timeout=WAIT_MS)
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => [document.activeElement.name,
                      document.activeElement.closest("section")?.dataset.model]"""
        )
        if focused == ["max_batch_size", "slow-start"]:
            break
    else:
        raise AssertionError("Tab never reached the batching form of slow-start")
    page.keyboard.press("Control+A")
    page.keyboard.type("6")
    page.keyboard.press("Enter")
    card(page, "slow-start").locator(".result").filter(
        has_text="Applied: max batch size 6"
    ).wait_for(timeout=WAIT_MS)
    assert page.evaluate(CONTRAST) == []
    badge = str(card(page, "slow-start").locator(".state").text_content())
    assert badge.split()[-1] in {"zero", "starting", "ready"}, badge
    assert page.logged_errors == []


def test_the_page_and_its_files_come_with_a_policy_that_runs_only_them(
    served: RunningServer,
) -> None:
    for path, kind in [
        ("/zeroserve/", "text/html"),
        ("/zeroserve/console.js", "text/javascript"),
        ("/zeroserve/console.css", "text/css"),
    ]:
        answer = httpx.get(f"{served.url}{path}", timeout=10)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith(kind)
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
    overview = httpx.get(f"{served.url}/zeroserve/overview", timeout=10).json()
    assert set(overview["models"]) == {"slow-start", "refuses"}
    assert "/zeroserve/" in served.log(), "the start-up log does not name the console"
