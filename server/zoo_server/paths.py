"""What a client may see of a server path: never the absolute path, which tells an attacker
the user name, the layout of the disk and where to aim.

A path under the server's home is said relative to it (`models/cats/2/model.keras`), one in
the Hugging Face cache relative to that (`<hf-cache>/models--org--name/...`), and any other
absolute path by its last component only (`.../worker.log`). `public_path` does it for one
path (FetchModel's `path` field); `PathScrubber` does it for every path inside a message
(status messages, job errors and events), so library errors that name files keep working
unchanged and are made safe in one place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HF_CACHE_LABEL = "<hf-cache>"
_ELSEWHERE = "..."
# An absolute path inside a sentence: a '/' that starts a word (not inside a URL or a
# relative path), then at least one more component.
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/:,;()]+/)+[^\s'\"/:,;()]*")


def _roots(home: Path, hf_cache: Path | None) -> list[tuple[str, str]]:
    """(absolute prefix, what replaces it), longest first, resolved and as given."""
    pairs: dict[str, str] = {}
    for root, label in ((home, ""), (hf_cache, HF_CACHE_LABEL)):
        if root is None:
            continue
        for form in {str(root), str(root.resolve()), os.path.abspath(root)}:
            if form not in ("", "/"):
                pairs[form.rstrip("/")] = label
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def public_path(path: str | Path, home: Path, hf_cache: Path | None = None) -> str:
    """`path` as a client may see it: relative to `home` (or the HF cache), else its name."""
    text = str(path)
    for prefix, label in _roots(home, hf_cache):
        if text == prefix:
            return label or "."
        if text.startswith(prefix + "/"):
            rest = text[len(prefix) + 1:]
            return f"{label}/{rest}" if label else rest
    if os.path.isabs(text):
        return f"{_ELSEWHERE}/{Path(text).name}" if Path(text).name else _ELSEWHERE
    return text


class PathScrubber:
    """Rewrites every absolute path in a message as `public_path` would."""

    def __init__(self, home: Path, hf_cache: Path | None = None):
        self.home, self.hf_cache = home, hf_cache
        self._roots = _roots(home, hf_cache)

    def path(self, path: str | Path) -> str:
        return public_path(path, self.home, self.hf_cache)

    def __call__(self, message: str) -> str:
        for prefix, label in self._roots:
            # "<home>/models/x" -> "models/x"; "<home>" alone -> "the server's home".
            message = message.replace(prefix + "/", f"{label}/" if label else "")
            message = re.sub(re.escape(prefix) + r"(?![\w/.-])",
                             label or "the server's home", message)
        return _ABSOLUTE.sub(lambda m: self.path(m.group(0)), message)
