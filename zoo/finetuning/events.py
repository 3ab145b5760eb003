"""A fine-tune's events as readable text: the one place their wording lives.

The library emits each state change as a dict (`{"event": "epoch", ...}`); `zoo finetune`
prints `describe(event)`, and the server stores it as the message of the job event that
`zoo --server ... finetune` and `zoo jobs watch` print. Events with nothing to say to a
person (per-step progress, results) describe as None.
"""

from __future__ import annotations

from typing import Any

Event = dict[str, Any]

# Numbers an epoch event carries besides its metrics.
EPOCH_FIELDS = ("phase", "epoch", "epochs", "seconds", "l2", "iterations", "gradient_norm")
_SHOWN_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def epoch_metrics(event: Event) -> dict[str, float]:
    """An epoch event's metrics (loss, accuracy, val_*), as floats."""
    return {k: float(v) for k, v in event.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in EPOCH_FIELDS}


def describe(event: Event) -> str | None:
    """One line for a person, or None for an event that says nothing to one."""
    kind = event.get("event")
    if kind == "data":
        skipped = len(event.get("skipped") or [])
        return (f"data: {len(event.get('classes') or [])} classes, {event.get('train')} train / "
                f"{event.get('val')} validation examples"
                + (f", {skipped} unreadable skipped" if skipped else ""))
    if kind == "features":
        shape = event.get("shape") or [0, 0]
        truncated = event.get("truncated")
        return (f"features: {shape[0]} x {shape[-1]} computed in "
                f"{float(event.get('seconds', 0)):.1f} s"
                + (f", {truncated} long text(s) truncated" if truncated else ""))
    if kind == "phase":
        resumed = event.get("resumed_from_epoch")
        after = f" (resumed after epoch {resumed})" if resumed else ""
        if int(event.get("phase", 1)) == 1:
            how = ("cached features" if event.get("cached_features")
                   else "images through the frozen base")
            return f"phase 1: training the new head on {how}{after}"
        length = (f", texts of {event['sequence_length']} tokens"
                  if event.get("sequence_length") else "")
        return (f"phase 2: {event.get('unfrozen_layers', 0)} top layers unfrozen, learning rate "
                f"{float(event.get('learning_rate', 0)):g}{length}{after}")
    if kind == "epoch":
        parts = [f"epoch {int(event.get('epoch', 0)):>2}/{event.get('epochs', 0)}"]
        metrics = epoch_metrics(event)
        parts += [f"{key} {metrics[key]:.4f}" for key in _SHOWN_METRICS if key in metrics]
        parts.append(f"{float(event.get('seconds', 0)):.1f}s")
        return "  ".join(parts)
    if kind == "head":
        metrics = epoch_metrics(event)
        shown = "  ".join(f"{key} {metrics[key]:.4f}" for key in _SHOWN_METRICS
                          if key in metrics)
        how = (f"{event.get('iterations')} L-BFGS iterations"
               + ("" if event.get("converged") else ", not converged")
               + f"; L2 {float(event.get('l2', 0)):.2g} chosen by {event.get('selection')}")
        return (f"phase 1: head fitted to its optimum in {float(event.get('seconds', 0)):.1f} s "
                f"({how})  {shown}")
    if kind == "phase_kept":
        return (f"phase 2 did not improve validation loss ({event.get('phase2_val_loss'):.4f} "
                f"against {event.get('phase1_val_loss'):.4f}); keeping the phase-1 model")
    if kind == "stopped":
        return f"stopped after epoch {event.get('epoch', 0)}; checkpoint saved"
    if kind == "node":  # a job on a Ray cluster (zoo serve --ray)
        resumed = event.get("resumed_from_epoch")
        return (f"running on Ray node {str(event.get('node', ''))[:12]} "
                f"({event.get('address', '?')})"
                + (f", resuming from the checkpoint after epoch {resumed}" if resumed else ""))
    if kind == "node_lost":
        epoch = event.get("resume_epoch") or 0
        return (f"the job's node was lost ({event.get('error', 'no reason given')}); starting "
                "again on another node, "
                + (f"from the checkpoint after epoch {epoch}" if epoch else "from the start"))
    if kind == "done":
        return f"done: validation accuracy {float(event.get('accuracy', 0)):.4f}"
    return None


__all__ = ["EPOCH_FIELDS", "Event", "describe", "epoch_metrics"]
