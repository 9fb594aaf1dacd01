"""The whole run model as plain data, to compare two models (a replay's and a fold from the start)."""

from __future__ import annotations

import dataclasses
from typing import Any

from rlm_tui.model.run import RunModel


def model_state(model: RunModel) -> dict[str, Any]:
    """Tree, every node's transcript blocks, run state and questions (the clock left out: replay sets it)."""
    tree = model.tree
    return {
        "nodes": {k: dataclasses.asdict(v) for k, v in tree.nodes.items()},
        "tree": (tree.root, tree.answer, tree.stopped_by, tree.finished),
        "transcripts": {k: [(b.kind, b.text, b.data) for b in model.transcripts.blocks(k)] for k in tree.nodes},
        "run": dataclasses.asdict(model.run),
        "questions": ({k: dataclasses.asdict(q) for k, q in model.questions.items.items()}, model.questions.paused,
                      model.questions.step_mode, model.questions.policy, sorted(model.questions.cells),
                      model.questions.finished),
        "events": model.events,
    }
