/* factorscope: the Analyze page's tables, drawn in the browser from compact JSON.
 *
 * The server sends one small object (see dash_app/logic.py `analyze_text`); this file
 * turns it into one plain <table> per layer inside a <details>, in one innerHTML write
 * (a closed layer's table is drawn when it is first opened). Every string from the
 * data (the typed text, pieces, labels) goes through `esc`; numbers through Number(). Factor links are plain anchors; a plain left click is
 * routed through Dash's own history event (as dcc.Link does), any other click is left
 * to the browser (new tab, full page load).
 *
 * Above the layers, "word across layers": one word (a <select> of the sentence's words,
 * repeated ones first) with its top factors at every layer, one column per occurrence,
 * and where the occurrences share their top factor and where they part.
 * Every factor link names the dictionary the data was decomposed with (`data.dictionary`).
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

  function factorHref(data, f, layer) {
    var href = "/factor/" + f + "?layer=" + layer;
    if (data.dictionary != null) href += "&dictionary=" + Math.trunc(num(data.dictionary));
    return href;
  }

  function factorLink(data, f, layer, labels) {
    var label = labels[f];
    var title = label != null ? label : "factor " + f;
    return '<a class="fs-f" href="' + factorHref(data, f, layer) + '" title="' + esc(title) +
      '">f' + f + "</a>";
  }

  // The occurrence's neighbourhood, for the column header: "… turned [left] at …".
  function occurrenceTitle(data, t) {
    var before = [], after = [];
    for (var i = Math.max(0, t - 3); i < t; i++) before.push(data.tokens[i].text);
    for (var j = t + 1; j < Math.min(data.tokens.length, t + 4); j++) {
      after.push(data.tokens[j].text);
    }
    return before.join(" ") + " [" + data.tokens[t].text + "] " + after.join(" ");
  }

  var WORD_TOP = 3;

  function wordTable(data, wi, labels) {
    var entry = (data.words || [])[wi];
    if (!entry) return "";
    var occ = entry.tokens;
    var out = ['<table class="table table-sm mb-2 fs-word-table"><thead><tr><th>Layer</th>'];
    for (var o = 0; o < occ.length; o++) {
      out.push('<th title="' + esc(occurrenceTitle(data, occ[o])) + '">“' +
        esc(entry.word) + "” #" + (o + 1) + ' <span class="fw-normal text-muted small">' +
        esc(occurrenceTitle(data, occ[o])) + "</span></th>");
    }
    if (occ.length > 1) out.push("<th>Top factor</th>");
    out.push("</tr></thead><tbody>");
    var parted = null;
    var sharedUpTo = null;
    for (var li = 0; li < data.layers.length; li++) {
      var layer = num(data.layers[li]);
      var tops = [];
      out.push("<tr><td>" + layer + "</td>");
      for (var k = 0; k < occ.length; k++) {
        var terms = data.codes[li][occ[k]] || [];
        var cells = [];
        for (var q = 0; q + 1 < terms.length && q < 2 * WORD_TOP; q += 2) {
          var f = Math.trunc(num(terms[q]));
          var label = labels[f];
          cells.push(factorLink(data, f, layer, labels) + " " + num(terms[q + 1]).toFixed(2) +
            (label != null ? ' <span class="text-muted small">(' + esc(label) + ")</span>" : ""));
        }
        tops.push(terms.length ? Math.trunc(num(terms[0])) : null);
        out.push('<td class="small">' + (cells.length ? cells.join("<br>") : "0") + "</td>");
      }
      if (occ.length > 1) {
        var same = tops[0] !== null && tops.every(function (x) { return x === tops[0]; });
        if (same && parted === null) sharedUpTo = layer;
        if (!same && parted === null) parted = layer;
        out.push('<td class="small ' + (same ? "fs-same" : "fs-parted") + '">' +
          (same ? "shared: f" + tops[0] : "parted") + "</td>");
      }
      out.push("</tr>");
    }
    out.push("</tbody></table>");
    var verdict;
    if (occ.length < 2) {
      verdict = "“" + esc(entry.word) + "” occurs once here; type a sentence that repeats it " +
        "to see where its occurrences part.";
    } else if (parted === null) {
      verdict = "The " + occ.length + " occurrences of “" + esc(entry.word) +
        "” share their top factor at every layer.";
    } else if (sharedUpTo === null) {
      verdict = "The " + occ.length + " occurrences of “" + esc(entry.word) +
        "” have different top factors from layer " + parted + " on.";
    } else {
      verdict = "The " + occ.length + " occurrences of “" + esc(entry.word) +
        "” share their top factor up to layer " + sharedUpTo + " and part at layer " +
        parted + ".";
    }
    return '<p class="small mb-1 fs-word-verdict">' + verdict + "</p>" + out.join("");
  }

  function wordView(data, labels) {
    var words = data.words || [];
    if (!words.length) return "";
    var options = [];
    for (var w = 0; w < words.length; w++) {
      var n = words[w].tokens.length;
      options.push('<option value="' + w + '">' + esc(words[w].word) +
        (n > 1 ? " ×" + n : "") + "</option>");
    }
    return '<div class="card mb-3 fs-card fs-word-view"><div class="card-header">' +
      'Word across layers <select class="form-select form-select-sm d-inline-block w-auto ' +
      'ms-2 fs-word-select" aria-label="word">' + options.join("") + "</select></div>" +
      '<div class="card-body p-2 fs-word-body">' + wordTable(data, 0, labels) +
      "</div></div>";
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
          '<a class="fs-f" href="' + factorHref(data, f, layer) + '" title="' +
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
    var parts = [wordView(data, labels)];
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

  function onWordChange(event) {
    var select = event.target;
    var el = event.currentTarget;
    if (!select.classList || !select.classList.contains("fs-word-select") || !el.fsData) return;
    var body = el.querySelector(".fs-word-body");
    if (body) body.innerHTML = wordTable(el.fsData, Number(select.value), el.fsData.labels || {});
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
            el.addEventListener("change", onWordChange);
            el.dataset.fsWired = "1";
          }
        }
        if (!data || !data.tokens || !data.tokens.length) return "";
        return data.tokens.length + " pieces × " + data.layers.length +
          " layers; open a layer to see its sums.";
      },
    },
  });
  window.factorscopeAnalyze = { esc: esc, render: render, wordTable: wordTable };
})();
