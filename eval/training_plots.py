"""The NPNet training loss figure (plotly): per-step loss and per-epoch validation MSE vs its baselines."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go


def loss_figure(history: list[dict[str, Any]], step_losses: list[float]):
    """Training loss per step and validation MSE vs the identity and zero baselines per epoch."""
    per_epoch = len(step_losses) / max(1, len(history))
    epochs = [r["epoch"] for r in history]
    fig = go.Figure()
    steps_x = [(i + 1) / per_epoch for i in range(len(step_losses))]
    fig.add_scatter(x=steps_x, y=step_losses, name="train (per step)", mode="lines", opacity=0.5)
    for key, name in (
        ("val_loss", "val: NPNet"),
        ("val_identity", "val: identity x_T"),
        ("val_zero", "val: zero"),
    ):
        fig.add_scatter(x=epochs, y=[r[key] for r in history], name=name, mode="lines+markers")
    fig.update_layout(title="NPNet training: MSE(pred, x'_T)", xaxis_title="epoch", yaxis_title="MSE")
    fig.update_yaxes(type="log")
    return fig
