"""Run an API-format prompt in this process, the way ComfyUI's executor does (without a server).

Only the nodes that output nodes depend on run, each once, in dependency order; a node's
outputs feed the inputs linked to them. Nodes return a tuple or {"ui": ..., "result": ...}.
"""
from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .workflow import WorkflowError, validate

log = logging.getLogger("emo")


@dataclass
class RunResult:
    outputs: dict = field(default_factory=dict)  # node id → output tuple
    ui: dict = field(default_factory=dict)       # node id → ui dict (previews, written files)
    seconds: dict = field(default_factory=dict)  # node id → run time


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def execution_order(prompt: dict, node_classes: dict) -> list[str]:
    """Ids of the nodes the output nodes need, dependencies first."""
    outputs = [i for i, n in prompt.items() if getattr(node_classes[n["class_type"]], "OUTPUT_NODE", False)]
    if not outputs:
        raise WorkflowError("the workflow has no output node (e.g. EMO Video Combine): nothing would be produced")
    order, state = [], {}

    def visit(node_id: str, chain: tuple):
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "visiting":
            raise WorkflowError(f"the workflow has a cycle through nodes {' → '.join(chain + (node_id,))}")
        state[node_id] = "visiting"
        for value in prompt[node_id]["inputs"].values():
            if _is_link(value):
                visit(value[0], chain + (node_id,))
        state[node_id] = "done"
        order.append(node_id)

    for node_id in sorted(outputs, key=lambda i: (len(i), i)):
        visit(node_id, ())
    return order


def run_prompt(prompt: dict, node_classes: dict, on_node: Callable[[str, str], None] | None = None) -> RunResult:
    """Validate and execute `prompt`; raises WorkflowError listing every validation problem."""
    errors = validate(prompt, node_classes)
    for node_id, node in prompt.items():
        cls = node_classes.get(node["class_type"])
        check = getattr(cls, "VALIDATE_INPUTS", None)
        if check is not None:
            constants = {k: v for k, v in node["inputs"].items() if not _is_link(v)}
            wanted = _validate_args(check, constants)
            verdict = check(**wanted)
            if verdict is not True:
                errors.append(f"node {node_id} ({node['class_type']}): {verdict}")
    if errors:
        raise WorkflowError("the workflow is not valid:\n  " + "\n  ".join(errors))

    result = RunResult()
    for node_id in execution_order(prompt, node_classes):
        node = prompt[node_id]
        cls = node_classes[node["class_type"]]
        kwargs = {k: (result.outputs[v[0]][v[1]] if _is_link(v) else v) for k, v in node["inputs"].items()}
        if on_node is not None:
            on_node(node_id, node["class_type"])
        start = time.perf_counter()
        with torch.inference_mode():  # as ComfyUI runs nodes
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
        result.seconds[node_id] = time.perf_counter() - start
        if isinstance(out, dict):
            result.ui[node_id] = out.get("ui", {})
            out = out.get("result", ())
        result.outputs[node_id] = tuple(out)
    return result


def _validate_args(check, constants: dict) -> dict:
    spec = inspect.getfullargspec(check)
    if spec.varkw:
        return constants
    return {k: v for k, v in constants.items() if k in spec.args}
