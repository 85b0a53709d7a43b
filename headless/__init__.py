"""Run EMO workflows without a ComfyUI server (or submit them to one): see cli.py."""
