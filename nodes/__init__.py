"""ComfyUI nodes of the pack (V1 API), each a thin wrapper around one emo_model stage.

The node classes arrive with the node-pack issue; the maps exist now so the pack imports cleanly.
"""
NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
