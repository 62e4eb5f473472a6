// onnxrt graph viewer: embedded into the page by onnxrt.tools.graph.
// The layout comes precomputed in the page's JSON (x = node centre, y = node top); this script draws
// it as SVG and handles panning, zooming, search, the details panel and subgraph navigation.
(function () {
  "use strict";
  const NODE_H = 36;
  const DATA = JSON.parse(document.getElementById("graph-data").textContent);
  const graphs = {};
  DATA.graphs.forEach(function (g) { graphs[g.id] = g; });

  const svg = document.getElementById("canvas");
  const viewport = document.getElementById("viewport");
  const panel = document.getElementById("panel");
  const search = document.getElementById("search");
  const matchesLabel = document.getElementById("matches");
  const crumbs = document.getElementById("crumbs");

  let stack = [DATA.graphs[0].id];  // breadcrumb: graph ids from the main graph down
  let graph = null;                 // the graph drawn now
  let nodeEls = [];                 // its node <g> elements, by node index
  let edgeEls = [];
  let selected = -1;
  let matches = [];
  let matchCursor = -1;
  const view = { x: 0, y: 0, k: 1 };

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  const CATEGORIES = [
    [/^(Conv|ConvTranspose|QLinearConv|ConvInteger|MatMul|Gemm|MatMulInteger|QLinearMatMul|FusedMatMul|MatMulNBits|Attention|MultiHeadAttention|GroupQueryAttention|LSTM|GRU|RNN|Einsum)$/, "cat-conv"],
    [/^(Relu|LeakyRelu|Sigmoid|Tanh|Gelu|FastGelu|Softmax|LogSoftmax|Elu|Selu|HardSigmoid|HardSwish|Softplus|PRelu|Clip|Mish|Erf)$/, "cat-act"],
    [/^(Reshape|Transpose|Squeeze|Unsqueeze|Flatten|Concat|Split|Slice|Gather|GatherElements|GatherND|Shape|Size|Expand|Tile|Pad|Constant|ConstantOfShape|Identity|Cast|CastLike|Range)$/, "cat-shape"],
    [/(Normalization|Pool)$/, "cat-norm"],
    [/^(If|Loop|Scan|SequenceMap)$/, "cat-ctrl"],
  ];

  function category(op) {
    for (let i = 0; i < CATEGORIES.length; i++) if (CATEGORIES[i][0].test(op)) return CATEGORIES[i][1];
    return "";
  }

  function applyView() {
    viewport.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")");
  }

  function bounds() {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    graph.nodes.forEach(function (n) {
      x0 = Math.min(x0, n.x - n.w / 2); x1 = Math.max(x1, n.x + n.w / 2);
      y0 = Math.min(y0, n.y); y1 = Math.max(y1, n.y + NODE_H);
    });
    if (x0 === Infinity) return { x0: 0, y0: 0, x1: 1, y1: 1 };
    return { x0: x0, y0: y0, x1: x1, y1: y1 };
  }

  // fit=true shows everything; otherwise a readable scale, anchored at the top (large graphs are tall).
  function resetView(fit) {
    const b = bounds(), W = svg.clientWidth || 800, H = svg.clientHeight || 600, pad = 30;
    const fitK = Math.min(W / (b.x1 - b.x0 + 2 * pad), H / (b.y1 - b.y0 + 2 * pad), 1.5);
    view.k = fit ? fitK : Math.max(fitK, Math.min(1, W / (b.x1 - b.x0 + 2 * pad)), 0.5);
    if (view.k === fitK) {
      view.x = W / 2 - ((b.x0 + b.x1) / 2) * view.k;
      view.y = H / 2 - ((b.y0 + b.y1) / 2) * view.k;
    } else {  // start at the top row, centred on it
      const top = graph.nodes.filter(function (n) { return n.y === b.y0; });
      const cx = top.reduce(function (s, n) { return s + n.x; }, 0) / top.length;
      view.x = W / 2 - cx * view.k;
      view.y = pad - b.y0 * view.k;
    }
    applyView();
  }

  function centreOn(i) {
    const n = graph.nodes[i], W = svg.clientWidth || 800, H = svg.clientHeight || 600;
    if (view.k < 0.7) view.k = 1;
    view.x = W / 2 - n.x * view.k;
    view.y = H / 2 - (n.y + NODE_H / 2) * view.k;
    applyView();
  }

  function render() {
    graph = graphs[stack[stack.length - 1]];
    const parts = [];
    graph.edges.forEach(function (e, i) {
      const a = graph.nodes[e[0]], b = graph.nodes[e[1]];
      const x1 = a.x, y1 = a.y + NODE_H, x2 = b.x, y2 = b.y;
      const dy = Math.max(18, Math.abs(y2 - y1) / 2);
      const type = graph.types[e[2]] || "";
      parts.push('<path class="edge" data-e="' + i + '" d="M' + x1 + "," + y1 + " C" + x1 + "," + (y1 + dy) + " " +
        x2 + "," + (y2 - dy) + " " + x2 + "," + y2 + '"><title>' + esc(e[2] + (type ? "  " + type : "")) + "</title></path>");
    });
    graph.nodes.forEach(function (n, i) {
      let cls = "node k-" + n.kind + " " + category(n.op);
      if (n.subgraphs && n.subgraphs.length) cls += " sub";
      const label = n.name.length > 28 ? n.name.slice(0, 27) + "…" : n.name;
      parts.push('<g class="' + cls + '" data-i="' + i + '" transform="translate(' + (n.x - n.w / 2) + "," + n.y + ')">' +
        '<rect width="' + n.w + '" height="' + NODE_H + '"></rect>' +
        '<text class="op" x="' + n.w / 2 + '" y="' + (label ? 15 : 22) + '" text-anchor="middle">' + esc(n.op) + "</text>" +
        (label ? '<text class="nm" x="' + n.w / 2 + '" y="29" text-anchor="middle">' + esc(label) + "</text>" : "") +
        "<title>" + esc(n.name || n.op) + "</title></g>");
    });
    viewport.innerHTML = parts.join("");
    nodeEls = Array.prototype.slice.call(viewport.querySelectorAll("g.node"));
    edgeEls = Array.prototype.slice.call(viewport.querySelectorAll("path.edge"));
    selected = -1;
    renderCrumbs();
    runSearch();
    panel.innerHTML = '<p class="hint">' + esc(summary()) + "<br>Click a node to see its details. Drag to pan, wheel to zoom.</p>";
    resetView(false);
  }

  function summary() {
    const count = graph.nodes.filter(function (n) { return n.kind === "node"; }).length;
    const m = DATA.model;
    let text = graph.title + ": " + count + " nodes";
    if (stack.length === 1) {
      text += ". IR " + m.ir_version + ", opsets " + Object.keys(m.opsets).map(function (d) { return d + " " + m.opsets[d]; }).join(", ");
      if (m.producer) text += ", produced by " + m.producer;
      if (m.shape_inference_error) text += ". Shape inference failed: " + m.shape_inference_error;
    }
    return text;
  }

  function renderCrumbs() {
    crumbs.innerHTML = stack.map(function (id, depth) {
      const title = esc(graphs[id].title);
      return depth === stack.length - 1 ? "<b>" + title + "</b>" : '<a data-depth="' + depth + '">' + title + "</a>";
    }).join('<span class="sep">›</span>');
  }

  function openGraph(id) {
    if (!graphs[id]) return;
    stack.push(id);
    render();
  }

  function valueRows(names) {
    if (!names.length) return "<tr><td>(none)</td><td></td></tr>";
    const inits = new Set(graph.initializers);
    return names.map(function (name, i) {
      if (!name) return "<tr><td>" + i + '</td><td class="hint">(omitted)</td></tr>';
      const type = graph.types[name] || "type unknown";
      const tag = inits.has(name) ? ' <span class="tag">initializer</span>' : "";
      return "<tr><td>" + i + "</td><td>" + esc(name) + tag + '<br><span class="type">' + esc(type) + "</span></td></tr>";
    }).join("");
  }

  function showDetails(i) {
    const n = graph.nodes[i];
    let h = "<h2>" + esc(n.op) + (n.domain ? ' <span class="hint">' + esc(n.domain) + "</span>" : "") + "</h2>";
    h += '<div class="node-name">' + esc(n.name || "(unnamed)") + "</div>";
    if (n.kind === "node") {
      h += "<h3>Attributes</h3>";
      h += n.attrs.length ? "<table>" + n.attrs.map(function (a) {
        return "<tr><td>" + esc(a[0]) + '</td><td class="type">' + esc(a[1]) + "</td></tr>";
      }).join("") + "</table>" : '<p class="hint">(none)</p>';
    }
    h += "<h3>Inputs</h3><table>" + valueRows(n.kind === "node" || n.kind === "output" ? n.inputs : []) + "</table>";
    if (n.implicit_inputs && n.implicit_inputs.length) {
      h += "<h3>Read by its subgraphs</h3><table>" + valueRows(n.implicit_inputs) + "</table>";
    }
    h += "<h3>Outputs</h3><table>" + valueRows(n.kind === "output" ? [] : n.outputs) + "</table>";
    if (n.subgraphs && n.subgraphs.length) {
      h += "<h3>Subgraphs</h3>" + n.subgraphs.map(function (s) {
        return '<p><button class="open-sub" data-graph="' + s.graph + '">open ' + esc(s.attr) + " (" +
          graphs[s.graph].nodes.filter(function (m) { return m.kind === "node"; }).length + " nodes)</button></p>";
      }).join("");
    }
    panel.innerHTML = h;
  }

  function select(i) {
    if (selected >= 0 && nodeEls[selected]) nodeEls[selected].classList.remove("selected");
    edgeEls.forEach(function (el) { el.classList.remove("hot"); });
    selected = i;
    if (i < 0) return;
    nodeEls[i].classList.add("selected");
    graph.edges.forEach(function (e, k) { if (e[0] === i || e[1] === i) edgeEls[k].classList.add("hot"); });
    showDetails(i);
  }

  function runSearch() {
    const q = search.value.trim().toLowerCase();
    nodeEls.forEach(function (el) { el.classList.remove("match"); });
    matches = [];
    matchCursor = -1;
    if (!q) { matchesLabel.textContent = ""; return; }
    graph.nodes.forEach(function (n, i) {
      if (n.name.toLowerCase().indexOf(q) >= 0 || n.op.toLowerCase().indexOf(q) >= 0) matches.push(i);
    });
    matches.forEach(function (i) { nodeEls[i].classList.add("match"); });
    matchesLabel.textContent = matches.length ? matches.length + " found" : "not found";
  }

  function nextMatch() {
    if (!matches.length) return;
    matchCursor = (matchCursor + 1) % matches.length;
    matchesLabel.textContent = (matchCursor + 1) + " / " + matches.length;
    centreOn(matches[matchCursor]);
    select(matches[matchCursor]);
  }

  // -- events -------------------------------------------------------------------------------------
  let drag = null;
  svg.addEventListener("mousedown", function (e) {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false };
    svg.classList.add("dragging");
  });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    view.x = drag.vx + dx; view.y = drag.vy + dy;
    applyView();
  });
  window.addEventListener("mouseup", function () {
    svg.classList.remove("dragging");
    setTimeout(function () { drag = null; }, 0);  // the click that follows a drag must see it
  });
  svg.addEventListener("click", function (e) {
    if (drag && drag.moved) return;
    const el = e.target.closest ? e.target.closest("g.node") : null;
    if (el) select(Number(el.getAttribute("data-i")));
  });
  svg.addEventListener("dblclick", function (e) {
    const el = e.target.closest ? e.target.closest("g.node") : null;
    if (!el) return;
    const n = graph.nodes[Number(el.getAttribute("data-i"))];
    if (n.subgraphs && n.subgraphs.length) openGraph(n.subgraphs[0].graph);
  });
  svg.addEventListener("wheel", function (e) {
    e.preventDefault();
    const rect = svg.getBoundingClientRect();
    const mx = e.clientX - rect.left, my = e.clientY - rect.top;
    const factor = Math.exp(-e.deltaY * 0.0015);
    const k = Math.min(8, Math.max(0.01, view.k * factor));
    view.x = mx - (mx - view.x) * (k / view.k);
    view.y = my - (my - view.y) * (k / view.k);
    view.k = k;
    applyView();
  }, { passive: false });
  panel.addEventListener("click", function (e) {
    const button = e.target.closest ? e.target.closest("button.open-sub") : null;
    if (button) openGraph(button.getAttribute("data-graph"));
  });
  crumbs.addEventListener("click", function (e) {
    const a = e.target.closest ? e.target.closest("a[data-depth]") : null;
    if (!a) return;
    stack = stack.slice(0, Number(a.getAttribute("data-depth")) + 1);
    render();
  });
  search.addEventListener("input", function () {
    runSearch();
    if (matches.length) centreOn(matches[0]);
  });
  search.addEventListener("keydown", function (e) {
    if (e.key === "Enter") { e.preventDefault(); nextMatch(); }
    if (e.key === "Escape") { search.value = ""; runSearch(); }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "/" && document.activeElement !== search) { e.preventDefault(); search.focus(); }
  });
  document.getElementById("fit").addEventListener("click", function () { resetView(true); });
  window.addEventListener("resize", function () { applyView(); });

  // a small hook for scripts and tests: the current graph and what is selected
  window.onnxrtGraph = {
    state: function () { return { graph: graph.id, depth: stack.length, selected: selected, matches: matches.length, view: view }; },
    open: openGraph,
    select: select,
  };
  render();
})();
