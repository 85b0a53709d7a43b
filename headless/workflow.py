"""Workflows as ComfyUI stores them: read UI or API format, convert UI → API, validate like ComfyUI.

API format (what `POST /prompt` takes): {"<id>": {"class_type": str, "inputs": {name: value or
[source_id, output_index]}}}. UI format (what the frontend saves): "nodes" with positional
`widgets_values` and "links" [id, from, from_slot, to, to_slot, TYPE]. Widget values follow the
order of the node's widget inputs (required, then optional); the frontend adds one extra value
after a seed-like INT (its "control after generate" mode) and one at the end for an upload button.
Checked against ComfyUI 0.33 / frontend 1.49.6: its `graphToPrompt()` of our UI workflows gives
exactly our API workflows.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

PRIMITIVES = ("INT", "FLOAT", "STRING", "BOOLEAN")
UI_ONLY_WIDGETS = ("AUDIO_UI",)  # take a place in widgets_values, never sent to the server


class WorkflowError(ValueError):
    pass


def load_workflow(path, node_classes: dict) -> dict:
    """A workflow file in UI or API format → API prompt."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WorkflowError(f"cannot read workflow {path}: {e}") from None
    if is_ui_format(data):
        return ui_to_api(data, node_classes)
    if not isinstance(data, dict) or not all(isinstance(n, dict) and "class_type" in n for n in data.values()):
        raise WorkflowError(f"{path} is neither a ComfyUI UI workflow nor an API prompt")
    return data


def is_ui_format(data: dict) -> bool:
    return isinstance(data.get("nodes"), list) and "links" in data


def input_specs(node_class) -> list[tuple[str, object, dict, bool]]:
    """(name, type or combo list, options, required) in the node's declared order."""
    types = node_class.INPUT_TYPES()
    specs = []
    for section, required in (("required", True), ("optional", False)):
        for name, spec in types.get(section, {}).items():
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            specs.append((name, kind, options, required))
    return specs


def is_widget(kind, options: dict) -> bool:
    return (isinstance(kind, list) or kind in PRIMITIVES + UI_ONLY_WIDGETS) and not options.get("forceInput")


def extra_widget_values(name: str, kind, options: dict) -> int:
    """Values the frontend stores right after this widget's own: the control-after-generate mode of
    seed-like INTs. (An upload button's value comes last, after every declared widget.)"""
    if kind == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed")):
        return 1
    return 0


def ui_to_api(workflow: dict, node_classes: dict) -> dict:
    """UI-format workflow → API prompt, using the node classes' INPUT_TYPES for widget order."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) in (2, 4):  # muted / bypassed nodes do not run
            continue
        cls = node_classes.get(node["type"])
        if cls is None:
            raise WorkflowError(f"node {node['id']}: unknown node type {node['type']!r}")
        values = list(node.get("widgets_values") or [])
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs, position = {}, 0
        for name, kind, options, _ in input_specs(cls):
            if is_widget(kind, options):
                if position < len(values) and kind not in UI_ONLY_WIDGETS:
                    inputs[name] = values[position]
                position += 1 + extra_widget_values(name, kind, options)
            if name in linked:
                link = linked[name]
                inputs[name] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def validate(prompt: dict, node_classes: dict) -> list[str]:
    """ComfyUI's checks before running: known node ids, required inputs, links of the right type,
    widget values of the right type, within min/max, and in the combo lists. Returns the errors."""
    errors = []
    for node_id, node in prompt.items():
        cls = node_classes.get(node.get("class_type"))
        where = f"node {node_id} ({node.get('class_type')})"
        if cls is None:
            errors.append(f"{where}: unknown node type")
            continue
        specs = {s[0]: s for s in input_specs(cls)}
        custom = _custom_validated(cls)
        for name in node["inputs"]:
            if name not in specs:
                errors.append(f"{where}: unknown input {name!r}")
        for name, kind, options, required in specs.values():
            value = node["inputs"].get(name)
            if value is None:
                if required:
                    errors.append(f"{where}: required input {name!r} is missing")
                continue
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and isinstance(value[0], str):
                errors.extend(_check_link(prompt, node_classes, where, name, kind, value))
            elif name not in custom:
                errors.extend(f"{where}: {e}" for e in _check_value(name, kind, options, value))
    return errors


def _custom_validated(cls) -> set[str]:
    """Inputs the node validates itself (ComfyUI then skips its own checks of those)."""
    if not hasattr(cls, "VALIDATE_INPUTS"):
        return set()
    spec = inspect.getfullargspec(cls.VALIDATE_INPUTS)
    return {"*"} if spec.varkw else set(spec.args)


def _check_link(prompt, node_classes, where, name, kind, link) -> list[str]:
    source = prompt.get(link[0])
    if source is None:
        return [f"{where}: input {name!r} links to missing node {link[0]}"]
    source_cls = node_classes.get(source["class_type"])
    if source_cls is None:
        return []  # reported for that node
    outputs = source_cls.RETURN_TYPES
    if not 0 <= link[1] < len(outputs):
        return [f"{where}: input {name!r} links to output {link[1]} of node {link[0]}, which has {len(outputs)}"]
    produced = outputs[link[1]]
    expected = "COMBO" if isinstance(kind, list) else kind
    if produced != expected and "*" not in (produced, expected) and not (isinstance(kind, list) and produced == "COMBO"):
        return [f"{where}: input {name!r} expects {expected}, node {link[0]} output {link[1]} is {produced}"]
    return []


def _check_value(name, kind, options, value) -> list[str]:
    if isinstance(kind, list):
        return [] if value in kind else [f"{name}={value!r} is not one of the choices {kind[:8]}"]
    if kind not in PRIMITIVES:
        return [f"input {name!r} of type {kind} must be connected, got the value {value!r}"]
    expected = {"INT": int, "FLOAT": (int, float), "STRING": str, "BOOLEAN": bool}[kind]
    if not isinstance(value, expected) or (kind in ("INT", "FLOAT") and isinstance(value, bool)):
        return [f"{name}={value!r} is not a {kind}"]
    problems = []
    if "min" in options and value < options["min"]:
        problems.append(f"{name}={value} is below the minimum {options['min']}")
    if "max" in options and value > options["max"]:
        problems.append(f"{name}={value} is above the maximum {options['max']}")
    return problems


def classes_from_object_info(object_info: dict) -> dict:
    """Stand-in node classes from ComfyUI's /object_info (for nodes that exist only in the server)."""
    classes = {}
    for name, info in object_info.items():
        inputs = {section: {name: _combo_as_list(spec) for name, spec in info.get("input", {}).get(section, {}).items()}
                  for section in ("required", "optional")}
        classes[name] = type(name, (), {
            "INPUT_TYPES": classmethod(lambda cls, inputs=inputs: inputs),
            "RETURN_TYPES": tuple(info.get("output", ())),
            "OUTPUT_NODE": bool(info.get("output_node")),
        })
    return classes


def _combo_as_list(spec: list) -> tuple:
    """V3 nodes describe combos as ["COMBO", {"options": [...]}]; V1 as [[...], {...}]."""
    if spec and spec[0] == "COMBO":
        options = dict(spec[1]) if len(spec) > 1 else {}
        return (list(options.pop("options", [])), options)
    return tuple(spec)
