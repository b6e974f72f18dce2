"""SQL console: ``/sql`` runs read-only queries over the database.

Queries go through :func:`factorscope.warehouse.safe_sql.run_safe_query`, which
refuses anything but reads and caps rows, time and memory; refusals come back as a
message. Each query runs in its own worker process, and at most ``SQL_CONSOLE_SLOTS``
run at once in the server (a query past them is refused at once, with one line, rather
than holding a server thread): the console cannot starve the other pages.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import numpy as np
import polars as pl
from dash import Input, Output, State, callback, dash_table, dcc, html, no_update

from factorscope.dash_app import config, ids, logic
from factorscope.errors import FactorscopeError
from factorscope.limits import SQL_CONSOLE_SLOTS, SQL_MAX_ROWS, SQL_TIMEOUT_S
from factorscope.warehouse.safe_sql import CONSOLE_EXAMPLES, console_memory_mb

dash.register_page(__name__, path="/sql", name="SQL", title="factorscope · SQL")

ROW_CAP = SQL_MAX_ROWS
FIRST_EXAMPLE = next(iter(CONSOLE_EXAMPLES))


def _limits_note() -> str:
    """The console's limits as the server applies them (the memory limit may be set
    through the environment; a bad value is reported by each query, not here)."""
    try:
        memory = f" or {console_memory_mb():,} MB"
    except FactorscopeError:
        memory = ""
    return (
        f"{ROW_CAP} rows are shown; a query stops after {SQL_TIMEOUT_S:g} s{memory}, and "
        f"{SQL_CONSOLE_SLOTS} run at a time."
    )


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            html.H3("SQL console"),
            html.P(
                [
                    "Read-only DuckDB SQL over the tables (",
                    html.Code("runs, sentences, tokens, codes, dictionaries, layer_quality"),
                    ", …) and views. At most ",
                    _limits_note(),
                ],
                className="text-muted small",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Select(
                            id=ids.SQL_EXAMPLES,
                            options=[{"label": name, "value": name} for name in CONSOLE_EXAMPLES],
                            value=FIRST_EXAMPLE,
                        ),
                        md=6,
                    )
                ],
                className="mb-2",
            ),
            dbc.Textarea(
                id=ids.SQL_TEXT,
                value=CONSOLE_EXAMPLES[FIRST_EXAMPLE],
                rows=7,
                className="mb-2 fs-sql-text",
                spellCheck=False,
            ),
            html.Div(
                [
                    dbc.Button("Run", id=ids.SQL_RUN, color="primary", className="me-2"),
                    dbc.Button(
                        "Download CSV",
                        id=ids.SQL_DOWNLOAD_BTN,
                        color="secondary",
                        outline=True,
                        disabled=True,
                    ),
                ],
                className="mb-3",
            ),
            html.Div(id=ids.SQL_FEEDBACK),
            dcc.Loading(html.Div(id=ids.SQL_TABLE), type="default"),
            dcc.Store(id=ids.SQL_RESULT),
            dcc.Download(id=ids.SQL_DOWNLOAD),
        ]
    )


def render_result(result: logic.SqlResult) -> tuple[Any, Any]:
    """(feedback, table) for a console result."""
    if result.error:
        return dbc.Alert(result.error, color="danger", className="fs-sql-error"), None
    frame = result.frame if result.frame is not None else pl.DataFrame()
    note = f"{frame.height} row{'s' if frame.height != 1 else ''}"
    if result.truncated:
        note += f" (truncated at {ROW_CAP}; download the CSV for the shown rows)"
    columns = [
        {"name": c, "id": c, "type": "numeric"} if dtype.is_numeric() else {"name": c, "id": c}
        for c, dtype in frame.schema.items()
    ]
    table = dash_table.DataTable(
        data=_records(frame),
        columns=columns,
        page_size=25,
        sort_action="native",
        style_table={"overflowX": "auto"},
        style_cell={
            "fontFamily": "var(--bs-font-monospace)",
            "fontSize": "0.85rem",
            "maxWidth": "40em",
            "overflow": "hidden",
            "textOverflow": "ellipsis",
            "textAlign": "left",
        },
        style_header={"fontWeight": "600", "backgroundColor": "#f1f3f5"},
        tooltip_delay=300,
    )
    return html.Div(note, className="small text-muted mb-1"), table


def _records(frame: pl.DataFrame) -> list[dict]:
    """Rows as JSON-safe dicts (lists and structs shown as text).

    A FLOAT (32-bit) column is shown with the digits it holds: ``round(alpha, 3)`` is the
    float32 nearest 0.379, which as a Python float prints 0.3790000081062317; its shortest
    float32 text, "0.379", read back as a float prints 0.379.
    """
    float32 = [c for c, dtype in frame.schema.items() if dtype == pl.Float32]
    if float32:
        frame = frame.with_columns(
            pl.col(c).map_elements(_float32_value, return_dtype=pl.Float64) for c in float32
        )
    out = []
    for row in frame.iter_rows(named=True):
        out.append(
            {
                k: (v if isinstance(v, int | float | str | bool) or v is None else str(v))
                for k, v in row.items()
            }
        )
    return out


def _float32_value(value: float) -> float:
    return float(str(np.float32(value)))


@callback(
    Output(ids.SQL_TEXT, "value"),
    Input(ids.SQL_EXAMPLES, "value"),
    prevent_initial_call=True,
)
def pick_example(name: Any) -> Any:
    return CONSOLE_EXAMPLES.get(name, no_update)


@callback(
    Output(ids.SQL_FEEDBACK, "children"),
    Output(ids.SQL_TABLE, "children"),
    Output(ids.SQL_RESULT, "data"),
    Output(ids.SQL_DOWNLOAD_BTN, "disabled"),
    Input(ids.SQL_RUN, "n_clicks"),
    State(ids.SQL_TEXT, "value"),
    prevent_initial_call=True,
)
def run_query(_clicks: Any, sql: Any) -> tuple:
    result = logic.run_console_query(config.db_path(), sql, row_cap=ROW_CAP)
    feedback, table = render_result(result)
    ok = result.error is None
    return feedback, table, (sql if ok else None), not ok


@callback(
    Output(ids.SQL_DOWNLOAD, "data"),
    Input(ids.SQL_DOWNLOAD_BTN, "n_clicks"),
    State(ids.SQL_RESULT, "data"),
    prevent_initial_call=True,
)
def download_csv(_clicks: Any, sql: Any) -> Any:
    if not sql:
        return no_update
    result = logic.run_console_query(config.db_path(), sql, row_cap=ROW_CAP)
    if result.error or result.frame is None:
        return no_update
    return dcc.send_string(logic.frame_to_csv(result.frame), "factorscope-query.csv")
