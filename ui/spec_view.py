"""Readable views of an architecture spec: a table of blocks and a small diagram (no Streamlit here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # annotations only: ui/ reaches the engine through nas_core.studio
    from nas_core.space import ArchSpec


def blocks_table(spec: ArchSpec) -> pd.DataFrame:
    """One row per layer group: stem, every block, head."""
    rows = [{"layer": "stem", "type": "conv", "out": spec.stem.out_channels, "kernel": spec.stem.kernel,
             "stride": spec.stem.stride, "expand": "", "norm": "batch", "act": "", "se": "", "dropout": "",
             "pool": ""}]
    for i, b in enumerate(spec.blocks):
        rows.append({"layer": f"block {i}", "type": b.type, "out": b.out_channels, "kernel": b.kernel,
                     "stride": b.stride, "expand": b.expand if b.type == "mbconv" else "", "norm": b.norm,
                     "act": b.act, "se": "yes" if b.se else "", "dropout": b.dropout or "",
                     "pool": "" if b.pool == "none" else b.pool})
    rows.append({"layer": "head", "type": "linear", "out": spec.head.hidden or "classes", "kernel": "",
                 "stride": "", "expand": "", "norm": "", "act": "", "se": "",
                 "dropout": spec.head.dropout or "", "pool": "global avg"})
    return pd.DataFrame(rows).astype(str)


def diagram_dot(spec: ArchSpec) -> str:
    """A left-to-right Graphviz DOT diagram (rendered in the browser by st.graphviz_chart)."""
    colours = {"conv": "#c6dbef", "residual": "#fdd0a2", "mbconv": "#c7e9c0", "dwsep": "#dadaeb"}
    nodes = ['in [label="image", shape=plaintext]',
             f'stem [label="stem\\n{spec.stem.out_channels}ch k{spec.stem.kernel} s{spec.stem.stride}"]']
    names = ["in", "stem"]
    for i, b in enumerate(spec.blocks):
        extra = (f" x{b.expand}" if b.type == "mbconv" else "") + (" SE" if b.se else "")
        pool = f"\\n{b.pool}pool" if b.pool != "none" else ""
        nodes.append(
            f'b{i} [label="{b.type}{extra}\\n{b.out_channels}ch k{b.kernel} s{b.stride}{pool}", '
            f'fillcolor="{colours.get(b.type, "#eeeeee")}"]'
        )
        names.append(f"b{i}")
    hidden = f"fc {spec.head.hidden} + " if spec.head.hidden else ""
    nodes.append(f'head [label="{hidden}classifier"]')
    names.append("head")
    edges = " -> ".join(names)
    return (
        "digraph G { rankdir=LR; node [shape=box, style=\"rounded,filled\", fillcolor=\"#f0f0f0\", "
        "fontsize=10]; " + "; ".join(nodes) + "; " + edges + "; }"
    )
