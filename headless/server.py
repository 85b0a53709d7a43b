"""Submit a prompt to a running ComfyUI over its HTTP API, wait for it, download the outputs.

Only the standard library: POST /upload/image for input files (ComfyUI takes audio there too),
POST /prompt, GET /history/<id> until the prompt is done, GET /view for each written file.
"""
from __future__ import annotations

import json
import mimetypes
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

from ..emo_model.atomic import write_bytes_atomic


class ServerError(RuntimeError):
    pass


class ComfyClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            raise ServerError(f"{self.url}{path}: HTTP {e.code}: {e.read().decode(errors='replace')[:4000]}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ServerError(f"cannot reach ComfyUI at {self.url}: {e}. Is it running?") from None

    def get_json(self, path: str):
        return json.loads(self._request(path))

    def upload(self, file: Path, subfolder: str = "emo") -> str:
        """Upload a local file into the server's input folder; returns the name to use in the prompt."""
        boundary = uuid.uuid4().hex
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        body = b"".join([
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"subfolder\"\r\n\r\n{subfolder}\r\n".encode(),
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n".encode(),
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{file.name}\"\r\n"
            f"Content-Type: {mime}\r\n\r\n".encode(), file.read_bytes(), f"\r\n--{boundary}--\r\n".encode()])
        answer = json.loads(self._request("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def queue(self, prompt: dict) -> str:
        data = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        try:
            answer = json.loads(self._request("/prompt", data, {"Content-Type": "application/json"}))
        except ServerError as e:
            raise ServerError(f"ComfyUI refused the workflow: {e}") from None
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float, on_wait: Callable[[float], None] | None = None) -> dict:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            history = self.get_json(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry:  # ComfyUI adds the history entry when the prompt has finished
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    messages = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                    detail = messages[0][1].get("exception_message", "") if messages else ""
                    raise ServerError(f"the workflow failed in ComfyUI: {detail.strip()}")
                return entry
            if on_wait is not None:
                on_wait(time.monotonic() - start)
            time.sleep(1.0)
        raise ServerError(f"ComfyUI did not finish within {timeout:.0f} s (prompt {prompt_id})")

    def download(self, item: dict, target: Path) -> Path:
        """Fetch one output file (an entry of a node's ui output) to `target`, atomically."""
        query = urllib.parse.urlencode({k: item.get(k, "") for k in ("filename", "subfolder", "type")})
        write_bytes_atomic(target, self._request(f"/view?{query}"))
        return target


def written_files(entry: dict) -> list[dict]:
    """Files a finished prompt wrote (video previews and images of its output nodes)."""
    files = []
    for output in entry.get("outputs", {}).values():
        for key in ("images", "videos", "gifs"):
            files.extend(i for i in output.get(key, []) if isinstance(i, dict) and "filename" in i)
    return files
