"""Fixtures of the console's browser tests: a real weir-broker, a real `weir console` (both
from target/debug unless WEIR_BROKER_BIN / WEIR_CLI_BIN say otherwise) and headless
Chromium driven through chromedriver (Debian's `chromium` and `chromium-driver`).

A failing test leaves a screenshot of the browser's page in its temp dir (the path is in
the failure report). With WEIR_CONSOLE_SHOTS=DIR, tests also save the screenshots
docs/console.md shows into DIR.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

REPO = pathlib.Path(__file__).resolve().parents[3]


def binary(env: str, name: str) -> str:
    path = os.environ.get(env) or str(REPO / "target" / "debug" / name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build it first (cargo build --workspace)")
    return path


def plugin_wasm(name: str) -> pathlib.Path:
    """An example plugin's module, built by scripts/build-plugins."""
    path = REPO / "plugins" / "target" / "wasm32-unknown-unknown" / "release" / f"{name.replace('-', '_')}.wasm"
    if not path.exists():
        pytest.fail(f"{path} is missing: build the plugins first (scripts/build-plugins)")
    return path


class Process:
    """A child process that prints `PREFIX ADDRESS` on stdout once it serves."""

    def __init__(self, argv: list[str], prefix: str):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith(prefix):
            self.stop()
            raise RuntimeError(f"{argv[0]} did not start: {line!r}")
        self.addr = line[len(prefix):]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Broker(Process):
    def __init__(self, data_dir: pathlib.Path, *flags: str):
        super().__init__(
            [binary("WEIR_BROKER_BIN", "weir-broker"), "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *flags],
            "weir-broker listening on ",
        )
        self.data_dir = data_dir

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run([binary("WEIR_CLI_BIN", "weir"), "--broker", self.addr, *args],
                              input=stdin, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout


def start_cluster(tmp: pathlib.Path, n: int) -> list[Broker]:
    """`n` brokers listing each other (node i+1 on the i-th address), on free ports."""
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    addrs = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    spec = ",".join(f"{i + 1}={a}" for i, a in enumerate(addrs))
    brokers = []
    for i, a in enumerate(addrs):
        b = Broker.__new__(Broker)
        Process.__init__(b, [binary("WEIR_BROKER_BIN", "weir-broker"), "--data-dir", str(tmp / f"node{i + 1}"),
                             "--listen", a, "--node-id", str(i + 1), "--cluster", spec],
                         "weir-broker listening on ")
        b.data_dir = tmp / f"node{i + 1}"
        brokers.append(b)
    return brokers


class Console(Process):
    def __init__(self, broker: Broker, *flags: str, env: dict[str, str] | None = None):
        super().__init__(
            [binary("WEIR_CLI_BIN", "weir"), "--broker", broker.addr, "console", "--listen", "127.0.0.1:0", *flags],
            "weir console listening on ",
        )
        self.url = self.addr  # http://HOST:PORT


@pytest.fixture
def broker(tmp_path: pathlib.Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "data")
    yield b
    b.stop()


@pytest.fixture
def console(broker: Broker) -> Iterator[Console]:
    c = Console(broker)
    yield c
    c.stop()


class Browser:
    """A headless Chromium with helpers for the console's pages."""

    def __init__(self, base: str):
        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("WEIR_CHROMIUM", "/usr/bin/chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1400,1000", "--lang=en-US"):
            options.add_argument(arg)
        service = Service(executable_path=os.environ.get("WEIR_CHROMEDRIVER", "/usr/bin/chromedriver"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_page_load_timeout(30)
        self.base = base

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def has(self, css: str) -> bool:
        return bool(self.all(css))

    def type(self, css: str, text: str) -> None:
        el = self.find(css)
        el.clear()
        el.send_keys(text)

    def click(self, css: str) -> None:
        self.find(css).click()

    def wait(self, css: str, timeout: float = 15.0):
        return WebDriverWait(self.driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def wait_text(self, css: str, text: str, timeout: float = 15.0) -> None:
        WebDriverWait(self.driver, timeout).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def text(self, css: str = "body") -> str:
        return self.find(css).text

    def shot(self, name: str) -> None:
        """Saves this page for docs/console.md when WEIR_CONSOLE_SHOTS names a directory."""
        out = os.environ.get("WEIR_CONSOLE_SHOTS")
        if out:
            pathlib.Path(out).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(pathlib.Path(out) / f"{name}.png"))

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Browser]:
    """A browser on the `console` fixture's console (tests that start their own console call
    `browser.base = ...`)."""
    base = request.getfixturevalue("console").url if "console" in request.fixturenames else ""
    b = Browser(base)
    yield b
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        path = tmp_path / "failure.png"
        b.driver.save_screenshot(str(path))
        print(f"screenshot of the failing page: {path}")
    b.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
