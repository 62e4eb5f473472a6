"""`onnxrt graph`: the HTML page is self-contained, and it works in a real (headless) Chromium.

The browser tests drive Chromium through the DevTools protocol over a websocket; they are skipped, with
the reason, when Chromium or websocket-client is missing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from onnxrt import cli
from onnxrt.tools import graph as graph_tool

RESNET50 = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def loop_model() -> onnx.ModelProto:
    body = h.make_graph(
        [
            h.make_node("Add", ["x_in", "one"], ["x_out"], name="body_add"),
            h.make_node("Identity", ["cond_in"], ["cond_out"], name="body_id"),
        ],
        "loop_body",
        [
            h.make_tensor_value_info("i", T.INT64, []),
            h.make_tensor_value_info("cond_in", T.BOOL, []),
            h.make_tensor_value_info("x_in", T.FLOAT, [2]),
        ],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("x_out", T.FLOAT, [2])],
    )
    graph = h.make_graph(
        [
            h.make_node("Constant", [], ["one"], value=h.make_tensor("c", T.FLOAT, [2], [1, 1]), name="one_const"),
            h.make_node("Relu", ["X"], ["r"], name="relu1"),
            h.make_node("Loop", ["N", "", "r"], ["final"], body=body, name="the_loop"),
            h.make_node("MatMul", ["final", "W"], ["Y"], name="mm"),
        ],
        "loop_test",
        [h.make_tensor_value_info("X", T.FLOAT, [2]), h.make_tensor_value_info("N", T.INT64, [])],
        [h.make_tensor_value_info("Y", T.FLOAT, [3])],
        initializer=[h.make_tensor("W", T.FLOAT, [2, 3], [1, 2, 3, 4, 5, 6])],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.fixture
def loop_model_path(tmp_path: Path) -> str:
    path = tmp_path / "loop.onnx"
    onnx.save(loop_model(), path)
    return str(path)


def test_page_is_self_contained(loop_model_path: str, tmp_path: Path) -> None:
    out = tmp_path / "g.html"
    assert cli.main(["graph", loop_model_path, "-o", str(out)]) == 0
    page = out.read_text()
    assert "<svg" in page and "graph-data" in page
    # nothing fetched from elsewhere: no external scripts, styles or images
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page
    data = json.loads(re.search(r'<script id="graph-data" type="application/json">(.*?)</script>', page, re.S).group(1))
    main, body = data["graphs"]
    assert [n["name"] for n in main["nodes"] if n["kind"] == "node"] == ["one_const", "relu1", "the_loop", "mm"]
    loop = next(n for n in main["nodes"] if n["op"] == "Loop")
    assert loop["subgraphs"][0]["graph"] == body["id"]
    assert body["parent"] == main["id"]
    # outer-scope values read by the body appear as their own nodes there
    assert any(n["kind"] == "outer" and n["name"] == "one" for n in body["nodes"])
    # types from shape inference
    assert main["types"]["Y"] == "float[3]" and main["types"]["W"] == "float[2,3]"


def test_layout_places_consumers_below_producers() -> None:
    desc = graph_tool.describe(onnx.load(RESNET50, load_external_data=False))
    main = desc["graphs"][0]
    nodes = main["nodes"]
    for a, b, _ in main["edges"]:
        assert nodes[a]["y"] < nodes[b]["y"]
    # no two boxes in a row overlap
    rows: dict[float, list[dict]] = {}
    for n in nodes:
        rows.setdefault(n["y"], []).append(n)
    for row in rows.values():
        row.sort(key=lambda n: n["x"])
        for left, right in zip(row, row[1:]):
            assert left["x"] + left["w"] / 2 <= right["x"] - right["w"] / 2 + 0.5


def test_missing_model_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["graph", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "x.html")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "doesn't exist" in err[0]


# -- in a browser -----------------------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Chromium is not installed (apt-get install -y chromium)")


class Browser:
    """Headless Chromium driven over the DevTools protocol."""

    def __init__(self) -> None:
        websocket = pytest.importorskip("websocket", reason="websocket-client is needed to drive Chromium")
        self.profile = tempfile.mkdtemp(prefix="onnxrt-chromium-")
        self.process = subprocess.Popen(
            [
                _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "--remote-allow-origins=*",
                "--window-size=1400,900", "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                pytest.skip("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0

    def send(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path: str) -> None:
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=Path(path).resolve().as_uri())
        deadline = time.monotonic() + 30
        while self.eval("document.readyState + (window.onnxrtGraph ? ':ready' : '')") != "complete:ready":
            if time.monotonic() > deadline:
                raise TimeoutError("the graph page did not finish loading")
            time.sleep(0.05)

    def click(self, x: float, y: float, count: int = 1) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=count)

    def centre_of(self, selector: str) -> tuple[float, float]:
        box = self.eval(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        return box[0], box[1]

    def node_index(self, op: str) -> int:
        """Index of the first drawn node whose op is ``op``."""
        return self.eval(
            f"[...document.querySelectorAll('g.node')].find(g => g.querySelector('.op').textContent === {json.dumps(op)}).dataset.i"
        )

    def screenshot(self, path: str) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def test_browser_renders_clicks_and_opens_subgraphs(browser: Browser, loop_model_path: str, tmp_path: Path) -> None:
    page = tmp_path / "loop.html"
    assert cli.main(["graph", loop_model_path, "-o", str(page)]) == 0
    browser.open(str(page))
    assert browser.eval("document.querySelectorAll('#viewport g.node.k-node').length") == 4

    # click on the MatMul node: the panel shows its name, attributes, inputs with types
    assert browser.eval("window.onnxrtGraph.state().selected") == -1
    browser.click(*browser.centre_of(f'g.node[data-i="{browser.node_index("MatMul")}"]'))
    panel = browser.eval("document.getElementById('panel').innerText")
    assert "MatMul" in panel and "mm" in panel
    assert "float[2,3]" in panel and "initializer" in panel  # W's type from the initializer
    assert "float[3]" in panel  # the output's type from shape inference

    # open the Loop body from the panel, then go back with the breadcrumb
    browser.click(*browser.centre_of(f'g.node[data-i="{browser.node_index("Loop")}"]'))
    browser.click(*browser.centre_of("button.open-sub"))
    assert browser.eval("window.onnxrtGraph.state().depth") == 2
    assert browser.eval("document.querySelectorAll('#viewport g.node.k-node').length") == 2
    assert "the_loop.body" in browser.eval("document.getElementById('crumbs').innerText")
    browser.click(*browser.centre_of("#crumbs a"))
    assert browser.eval("window.onnxrtGraph.state().depth") == 1


def test_browser_large_model_search_pan_zoom(browser: Browser, tmp_path: Path) -> None:
    page = tmp_path / "resnet.html"
    assert cli.main(["graph", str(RESNET50), "-o", str(page)]) == 0
    started = time.monotonic()
    browser.open(str(page))
    load_seconds = time.monotonic() - started
    count = browser.eval("document.querySelectorAll('#viewport g.node.k-node').length")
    assert count == 415
    assert load_seconds < 15

    # search by op: highlights every match; Enter centres and selects the first
    browser.eval("(() => { const s = document.getElementById('search'); s.value = 'gemm';"
                 " s.dispatchEvent(new Event('input')); })()")
    assert browser.eval("document.querySelectorAll('g.node.match').length") == 1
    browser.send("Runtime.evaluate", expression="document.getElementById('search').focus()")
    browser.send("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13)
    browser.send("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)
    assert "Gemm" in browser.eval("document.getElementById('panel').innerText")
    # the match now sits in the middle of the canvas
    cx, cy = browser.centre_of("g.node.match")
    canvas = browser.eval("(() => { const r = document.getElementById('canvas').getBoundingClientRect();"
                          " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    assert abs(cx - canvas[0]) < 5 and abs(cy - canvas[1]) < 5

    # drag pans, wheel zooms
    before = browser.eval("({...window.onnxrtGraph.state().view})")
    browser.send("Input.dispatchMouseEvent", type="mousePressed", x=300, y=300, button="left", clickCount=1)
    browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=360, y=250, button="left")
    browser.send("Input.dispatchMouseEvent", type="mouseReleased", x=360, y=250, button="left", clickCount=1)
    after = browser.eval("({...window.onnxrtGraph.state().view})")
    assert (after["x"] - before["x"], after["y"] - before["y"]) == pytest.approx((60, -50))
    browser.send("Input.dispatchMouseEvent", type="mouseWheel", x=400, y=400, deltaX=0, deltaY=-300)
    assert browser.eval("window.onnxrtGraph.state().view.k") > after["k"]

    if os.environ.get("ONNXRT_GRAPH_SCREENSHOT"):
        browser.screenshot(os.environ["ONNXRT_GRAPH_SCREENSHOT"])
