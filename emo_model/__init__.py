"""EMO (Emote Portrait Alive) as a plain PyTorch package; no ComfyUI import anywhere here."""
