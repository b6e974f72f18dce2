"""The navbar, and one dictionary in view everywhere: its picker and links that carry it.

A run may hold several encoded dictionaries. The one a reader picks travels in the URL
(``?dictionary=N``), never in server state, so every page can be shared as a link. This
module keeps that choice in view across pages:

- the navbar's picker (``ids.DICTIONARY_SELECT``) shows the dictionary of the current
  URL (or the active one, the last encoded, when the URL names none) on every page;
  choosing another navigates: a factor page goes to that dictionary's default factor
  (factor numbers differ between dictionaries), any other page reloads itself with the
  new ``dictionary``;
- the navbar's links carry the URL's ``dictionary`` (a clientside callback rewrites
  them whenever the URL changes), so going from a factor page of dictionary 1 to
  Analyze, Search, Evidence, Run or Senses stays on dictionary 1;
- the pages read ``dictionary`` from their URL (``logic.dictionary_scope``), say which
  dictionary they show, and draw their factor links inside that scope, so those links
  carry it too.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, dcc, html, no_update

from factorscope.dash_app import config, ids, logic
from factorscope.errors import FactorscopeError

NAV_LINKS = (
    ("Factors", "/factor"),
    ("Analyze", "/analyze"),
    ("Search", "/search"),
    ("Compare", "/compare"),
    ("Evidence", "/evidence"),
    ("Senses", "/senses"),
    ("SQL", "/sql"),
    ("Run", "/run"),
)


def nav_link_id(href: str) -> str:
    """The id of a navbar link (its ``href`` is rewritten to carry the dictionary)."""
    return f"nav-{href.strip('/') or 'home'}"


def navbar() -> dbc.Navbar:
    """The pages, and the dictionary picker; built at every page load (a new encode
    adds a dictionary to the picker)."""
    links = [
        dbc.NavItem(dbc.NavLink(name, href=href, active="partial", id=nav_link_id(href)))
        for name, href in NAV_LINKS
    ]
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand(
                    "factorscope", href="/", className="fw-semibold", id=nav_link_id("/")
                ),
                dbc.Nav(links, navbar=True, className="me-auto"),
                picker(),
            ],
            fluid=True,
        ),
        id=ids.NAVBAR,
        color="dark",
        dark=True,
        className="mb-3",
    )


def picker() -> html.Div:
    """The navbar's dictionary picker, filled from the published file at page load."""
    try:
        dictionaries = logic.encoded_dictionaries(config.db_path())
    except FactorscopeError:
        dictionaries = []
    active = next((d["dictionary_id"] for d in dictionaries if d.get("active")), None)
    options = [
        {
            "label": f"dictionary {d['dictionary_id']} · {d['n_factors']:,} factors"
            + (f" · seed {d['seed']}" if d.get("seed") is not None else "")
            + (" (active)" if d.get("active") else ""),
            "value": d["dictionary_id"],
        }
        for d in dictionaries
    ]
    return html.Div(
        [
            dcc.Dropdown(
                id=ids.DICTIONARY_SELECT,
                options=options,
                value=active,
                clearable=False,
                searchable=False,
                className="small fs-nav-dictionary",
                style={"minWidth": "17rem"},
            ),
            dcc.Store(id=ids.NAV_ACTIVE, data=active),
            dcc.Store(id=ids.NAV_WANT),
        ],
        className="ms-auto",
        title="The dictionary every page shows (its factors, labels, codes)",
    )


def url_dictionary(search: str | None) -> int | None:
    """The ``dictionary`` of a URL's query string (None when absent or not a number)."""
    value = dict(parse_qsl((search or "").lstrip("?"))).get("dictionary")
    try:
        return logic.parse_dictionary(value)
    except FactorscopeError:
        return None


def href_for(chosen: int, pathname: str | None, search: str | None) -> str:
    """Where choosing dictionary ``chosen`` leads from the page at ``pathname?search``."""
    path = pathname or "/"
    if path == "/" or path.startswith("/factor"):
        with logic.dictionary_scope(chosen):
            return logic.factor_href(logic.default_factor(config.db_path()))
    query = dict(parse_qsl((search or "").lstrip("?")))
    query["dictionary"] = str(int(chosen))
    return f"{path}?{urlencode(query)}"


# A choice is read in the browser: the page shown already (the URL's dictionary, or the
# active one) costs no request; another page than a factor page navigates at once; a
# factor page asks the server (below) for the chosen dictionary's default factor.
clientside_callback(
    """
    function (chosen, pathname, search, active) {
        var nu = window.dash_clientside.no_update;
        if (chosen === null || chosen === undefined) return [nu, nu];
        var match = /[?&]dictionary=(\\d+)/.exec(search || "");
        var shown = match ? Number(match[1]) : active;
        if (String(chosen) === String(shown)) return [nu, nu];
        var path = pathname || "/";
        if (path === "/" || path.indexOf("/factor") === 0) return [nu, Number(chosen)];
        var params = new URLSearchParams(search || "");
        params.set("dictionary", String(chosen));
        return [path + "?" + params.toString(), nu];
    }
    """,
    Output(ids.URL, "href", allow_duplicate=True),
    Output(ids.NAV_WANT, "data"),
    Input(ids.DICTIONARY_SELECT, "value"),
    State(ids.URL, "pathname"),
    State(ids.URL, "search"),
    State(ids.NAV_ACTIVE, "data"),
    prevent_initial_call=True,
)


@callback(
    Output(ids.URL, "href", allow_duplicate=True),
    Input(ids.NAV_WANT, "data"),
    State(ids.URL, "pathname"),
    State(ids.URL, "search"),
    prevent_initial_call=True,
)
def pick_dictionary(chosen: Any, pathname: Any, search: Any) -> Any:
    """A factor page's navigation to the chosen dictionary (its default factor)."""
    if chosen is None:
        return no_update
    try:
        return href_for(int(chosen), pathname, search)
    except (FactorscopeError, ValueError):
        return no_update


_HREFS = ("/", *(href for _name, href in NAV_LINKS))

# The navbar's links and the picker follow the URL (in the browser: no request).
clientside_callback(
    """
    function (pathname, search, active) {
        var match = /[?&]dictionary=(\\d+)/.exec(search || "");
        var suffix = match ? "?dictionary=" + match[1] : "";
        var hrefs = HREFS.map(function (href) { return href + suffix; });
        var value = match ? Number(match[1]) : active;
        if (value === null || value === undefined) value = window.dash_clientside.no_update;
        return [value].concat(hrefs);
    }
    """.replace("HREFS", json.dumps(list(_HREFS))),
    Output(ids.DICTIONARY_SELECT, "value"),
    *[Output(nav_link_id(href), "href") for href in _HREFS],
    Input(ids.URL, "pathname"),
    Input(ids.URL, "search"),
    State(ids.NAV_ACTIVE, "data"),
)


def dictionary_badge(shown: int) -> dbc.Badge:
    """Which dictionary a page shows, for pages that draw factors."""
    return dbc.Badge(
        f"dictionary {shown}", color="light", text_color="dark", id=ids.DICTIONARY_BADGE
    )
