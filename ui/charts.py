"""Plotly figures of the app. Pure functions: data in, ``go.Figure`` out (no Streamlit here).

Keeping figures apart from pages lets the tests check them without a browser
and lets every page draw the same chart the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

#: Friendly axis titles for metric columns.
LABELS = {
    "accuracy": "Test accuracy",
    "val_accuracy": "Validation accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "worst_group_accuracy": "Worst-group accuracy",
    "unfairness": "Unfairness (lower is fairer)",
    "eodd": "EODD",
    "eopp1": "EOPP1",
    "eopp2": "EOPP2",
    "latency": "Latency (s / image)",
    "latency_cpu": "Latency, CPU time (s / image)",
    "params": "Parameters",
    "macs": "MACs",
    "memory": "Peak memory (MB)",
    "size_mb": "Size (MB)",
}


def label(name: str) -> str:
    """Human title of a metric column."""
    return LABELS.get(name, name.replace("_", " ").capitalize())


def _empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def pareto_scatter(df: pd.DataFrame, x: str, y: str, front_col: str = "on_front") -> go.Figure:
    """Measured candidates on two metrics; the non-dominated ones highlighted and joined.

    Args:
        df: one row per candidate with columns ``x``, ``y``, ``front_col`` (bool), ``id``, ``origin``,
            ``label`` (hover text) and optionally ``baseline`` (non-empty for hand-made models).
        x: metric on the horizontal axis.
        y: metric on the vertical axis.
        front_col: boolean column marking the non-dominated points.
    """
    data = df.dropna(subset=[x, y]) if not df.empty else df
    if data.empty:
        return _empty("No measured candidates yet: approve a proposal and let the worker train it.")
    data = data.copy()
    is_base = data.get("baseline", pd.Series("", index=data.index)).fillna("").astype(str) != ""
    data["kind"] = "searched"
    data.loc[data[front_col].astype(bool) & ~is_base, "kind"] = "Pareto front"
    data.loc[is_base, "kind"] = "baseline"
    fig = px.scatter(
        data,
        x=x,
        y=y,
        color="kind",
        symbol="kind",
        hover_name="label" if "label" in data else None,
        hover_data={"id": True, "origin": True, "kind": False},
        color_discrete_map={"Pareto front": "#d62728", "searched": "#7f7f7f", "baseline": "#1f77b4"},
        symbol_map={"Pareto front": "circle", "searched": "circle-open", "baseline": "diamond"},
        labels={x: label(x), y: label(y)},
    )
    front = data[data[front_col].astype(bool)].sort_values(x)
    if len(front) > 1:
        fig.add_trace(
            go.Scatter(x=front[x], y=front[y], mode="lines", line=dict(color="#d62728", dash="dot"),
                       name="front", hoverinfo="skip", showlegend=False)
        )
    fig.update_traces(marker=dict(size=11), selector=dict(mode="markers"))
    fig.update_layout(height=440, legend_title_text="", margin=dict(l=10, r=10, t=30, b=10))
    _sane_axes(fig, data[y])
    _sane_axes(fig, data[x], axis="x")
    return fig


def group_accuracy_bars(groups: pd.DataFrame, overall: dict[str, float], min_n: int = 10) -> go.Figure:
    """Per-group accuracy per candidate against each candidate's overall accuracy.

    Args:
        groups: rows with ``candidate``, ``attribute``, ``group``, ``n``, ``accuracy``, ``ci_low``, ``ci_high``.
        overall: candidate label -> overall test accuracy (drawn as a dashed line per candidate).
        min_n: groups with fewer test samples are marked as too small to trust.
    """
    if groups.empty:
        return _empty("No group metrics yet.")
    g = groups.copy()
    g["x"] = g["attribute"] + ": " + g["group"] + " (n=" + g["n"].astype(str) + ")"
    g["warn"] = g["n"] < min_n
    fig = go.Figure()
    for cand, part in g.groupby("candidate", sort=False):
        # A group too small to trust gets no interval: a bootstrap of 5 images says 100-100 %, which reads
        # as certainty; the hatching (with its legend entry below) says "do not trust this bar".
        err_hi = (part["ci_high"] - part["accuracy"]).fillna(0).where(~part["warn"], 0)
        err_lo = (part["accuracy"] - part["ci_low"]).fillna(0).where(~part["warn"], 0)
        fig.add_trace(
            go.Bar(
                x=part["x"], y=part["accuracy"], name=str(cand),
                error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True),
                marker_pattern_shape=["/" if w else "" for w in part["warn"]],
                hovertemplate="%{x}<br>accuracy %{y:.1%}<extra>" + str(cand) + "</extra>",
            )
        )
        if str(cand) in overall:
            fig.add_hline(y=overall[str(cand)], line_dash="dash", opacity=0.5,
                          annotation_text=f"{cand} overall", annotation_position="top left")
    if g["warn"].any():
        fig.add_trace(go.Bar(x=[None], y=[None], name=f"hatched: under {min_n} test images, no interval (do not trust)",
                             marker=dict(color="rgba(0,0,0,0)", line=dict(color="#555", width=1),
                                         pattern_shape="/", pattern_fgcolor="#555"), hoverinfo="skip"))
    fig.update_layout(barmode="group", yaxis_tickformat=".0%", yaxis_title="Accuracy", height=420,
                      yaxis_range=[0, 1.05], margin=dict(l=10, r=10, t=30, b=10))
    return fig


def metric_over_iterations(df: pd.DataFrame, metric: str) -> go.Figure:
    """A metric of every measured candidate in evaluation order, with the best so far as a step line.

    Args:
        df: rows with ``evaluation``, ``candidate``, ``metric``, ``best so far`` and ``kind``
            (``measured`` or ``estimate``; estimates are drawn as open markers).
    """
    if df.empty:
        return _empty("Nothing measured yet.")
    fig = go.Figure()
    for kind, symbol in (("measured", "circle"), ("estimate", "circle-open")):
        part = df[df["kind"] == kind]
        if not part.empty:
            fig.add_trace(go.Scatter(x=part["evaluation"], y=part[metric], mode="markers", name=kind,
                                     marker=dict(symbol=symbol, size=10), text=[f"#{c}" for c in part["candidate"]],
                                     hovertemplate="%{text}: %{y:.4g}<extra>" + kind + "</extra>"))
    fig.add_trace(go.Scatter(x=df["evaluation"], y=df["best so far"], mode="lines", line_shape="hv",
                             name="best so far", line=dict(color="#d62728")))
    fig.update_layout(height=360, xaxis_title="Evaluation", yaxis_title=label(metric),
                      margin=dict(l=10, r=10, t=30, b=10), legend_title_text="")
    _sane_axes(fig, df[metric])
    if metric in ("accuracy", "balanced_accuracy", "worst_group_accuracy", "val_accuracy"):
        fig.update_yaxes(tickformat=".0%")
    fig.update_xaxes(dtick=1 if len(df) < 15 else None)
    return fig


def _sane_axes(fig: go.Figure, values: pd.Series, axis: str = "y") -> None:
    """A single point (or identical values) gets a range around it, not a 1e-3 sliver with odd ticks."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.1 or 0.1
        (fig.update_xaxes if axis == "x" else fig.update_yaxes)(range=[lo - pad, hi + pad])


def hypervolume_lines(hv: pd.DataFrame) -> go.Figure:
    """Hypervolume of the measured front against evaluations, one line per run.

    Args:
        hv: rows with ``run`` (label), ``evaluations`` and ``hypervolume``.
    """
    if hv.empty:
        return _empty("No hypervolume yet: it appears once a multi-objective run has measured candidates.")
    fig = px.line(hv, x="evaluations", y="hypervolume", color="run", markers=True,
                  labels={"evaluations": "Evaluations", "hypervolume": "Hypervolume (normalized)"})
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10))
    _sane_axes(fig, hv["hypervolume"])
    if hv["evaluations"].max() < 15:
        fig.update_xaxes(dtick=1)
    return fig


def parallel_coordinates(df: pd.DataFrame, metrics: Sequence[str], color: str) -> go.Figure:
    """One line per candidate across three or more metrics."""
    cols = [m for m in metrics if m in df.columns]
    data = df.dropna(subset=cols) if cols else df
    if len(cols) < 3 or data.empty:
        return _empty("Pick three or more metrics with measured values.")
    fig = px.parallel_coordinates(data, dimensions=cols, color=color if color in data else None,
                                  labels={c: label(c) for c in cols})
    fig.update_layout(height=420, margin=dict(l=40, r=40, t=50, b=10))
    return fig


def confusion_heatmap(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> go.Figure:
    """A confusion matrix (rows: true class, columns: predicted class)."""
    fig = px.imshow(
        [list(r) for r in matrix], x=list(class_names), y=list(class_names), text_auto=True,
        color_continuous_scale="Blues", labels=dict(x="Predicted", y="True", color="Count"),
    )
    fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=40, b=10), coloraxis_showscale=False)
    return fig


def count_bars(counts: pd.DataFrame, x: str, color: str) -> go.Figure:
    """Stacked counts (e.g. class x group) for the data page."""
    if counts.empty:
        return _empty("No rows.")
    fig = px.bar(counts, x=x, y="count", color=color, barmode="stack")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def progress_lines(progress: pd.DataFrame) -> go.Figure:
    """Training and validation loss by epoch for one candidate."""
    if progress.empty:
        return _empty("Waiting for the first epoch.")
    long = progress.melt(id_vars="epoch", value_vars=[c for c in ("train_loss", "val_loss") if c in progress],
                         var_name="curve", value_name="loss")
    fig = px.line(long, x="epoch", y="loss", color="curve", markers=True)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=20, b=10))
    return fig
