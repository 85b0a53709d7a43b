"""EMO for ComfyUI: ComfyUI loads this file as the node pack (custom_nodes/<pack>/__init__.py).

`nodes/` is imported relative to the pack only: ComfyUI has its own top-level `nodes` module,
and this pack never puts its folder on sys.path.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
