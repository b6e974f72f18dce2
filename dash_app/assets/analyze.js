/* factorscope: the Analyze page's tables, drawn in the browser from compact JSON.
 *
 * The server sends one small object (see dash_app/logic.py `analyze_text`); this file
 * turns it into one plain <table> per layer inside a <details>, in one innerHTML write
 * (a closed layer's table is drawn when it is first opened). Every string from the
 * data (the typed text, pieces, labels) goes through `esc`; numbers through Number(). Factor links are plain anchors; a plain left click is
 * routed through Dash's own history event (as dcc.Link does), any other click is left
 * to the browser (new tab, full page load).
 */
(function () {
  "use strict";

  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

  function esc(value) {
    return String(value == null ? "" : value).replace(/[&<>"']/g, function (c) {
      return ESCAPES[c];
    });
  }

  function num(value) {
    var n = Number(value);
    return isFinite(n) ? n : 0;
  }

  function layerTable(data, li, labels) {
    var layer = num(data.layers[li]);
    var rows = data.codes[li];
    var out = ['<table class="table table-sm mb-0 fs-decomp"><tbody>'];
    for (var t = 0; t < data.tokens.length; t++) {
      var tok = data.tokens[t];
      var terms = rows[t] || [];
      var cells = [];
      for (var k = 0; k + 1 < terms.length; k += 2) {
        var f = Math.trunc(num(terms[k]));
        var alpha = num(terms[k + 1]);
        var label = labels[f];
        var title = label != null ? label : "factor " + f;
        var term =
          '<span class="fs-factor-term">' + alpha.toFixed(2) + "·" +
          '<a class="fs-f" href="/factor/' + f + "?layer=" + layer + '" title="' +
          esc(title) + '">f' + f + "</a>";
        if (label != null) term += ' <span class="text-muted small">(' + esc(label) + ")</span>";
        cells.push(term + "</span>");
      }
      var wordTitle = "word “" + tok.word + "” · piece " + tok.piece;
      out.push(
        '<tr><td class="fs-decomp-word' + (tok.cont ? " fs-piece-cont" : "") + '" title="' +
          esc(wordTitle) + '">' + esc(tok.text) + '</td><td class="font-monospace small">= ' +
          (cells.length ? cells.join(" + ") : "0") + "</td></tr>"
      );
    }
    out.push("</tbody></table>");
    return out.join("");
  }

  function render(data) {
    if (!data || !data.tokens) return "";
    if (!data.tokens.length) {
      return '<p class="text-muted">The model kept no tokens of this sentence.</p>';
    }
    var labels = data.labels || {};
    var parts = [];
    for (var li = 0; li < data.layers.length; li++) {
      var layer = num(data.layers[li]);
      parts.push(
        '<details class="fs-layer mb-2"' + (li === 0 ? " open" : "") + ">" +
          '<summary class="fs-layer-summary">Layer ' + layer +
          (layer === 0 ? " (embeddings)" : "") + "</summary>" +
          '<div class="fs-layer-body" data-layer-index="' + li + '">' +
          (li === 0 ? layerTable(data, li, labels) : "") + "</div></details>"
      );
    }
    return parts.join("");
  }

  // A closed layer's table is drawn the first time it is opened (`toggle` does not
  // bubble: the container listens in the capture phase).
  function onToggle(event) {
    var details = event.target;
    var el = event.currentTarget;
    if (!details.open || !el.fsData) return;
    var body = details.querySelector(".fs-layer-body");
    if (body && !body.hasChildNodes()) {
      var li = Number(body.getAttribute("data-layer-index"));
      body.innerHTML = layerTable(el.fsData, li, el.fsData.labels || {});
    }
  }

  function onClick(event) {
    var a = event.target.closest ? event.target.closest("a.fs-f") : null;
    if (!a || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey ||
        event.altKey) {
      return;
    }
    event.preventDefault();
    window.history.pushState({}, "", a.getAttribute("href"));
    window.dispatchEvent(new CustomEvent("_dashprivate_pushstate"));
    window.scrollTo(0, 0);
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    factorscope_analyze: {
      render: function (data, outputId) {
        var el = document.getElementById(outputId);
        if (el) {
          el.fsData = data && data.tokens ? data : null;
          el.innerHTML = render(data);
          if (!el.dataset.fsWired) {
            el.addEventListener("click", onClick);
            el.addEventListener("toggle", onToggle, true);
            el.dataset.fsWired = "1";
          }
        }
        if (!data || !data.tokens || !data.tokens.length) return "";
        return data.tokens.length + " pieces × " + data.layers.length +
          " layers; open a layer to see its sums.";
      },
    },
  });
  window.factorscopeAnalyze = { esc: esc, render: render };
})();
