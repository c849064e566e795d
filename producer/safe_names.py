"""Safe, unique output names from user-given names (custom_ids, uploaded file names).

Every command that writes one file per job (`mmq transcribe --write`, `generate-images`, `speak`,
`mmq results --files`, a template run's `--out`) names the file after the job's custom_id, and a
custom_id is whatever the batch's author wrote: `../../etc/passwd`, `/abs`, NUL bytes, 600 bytes of
UTF-8, `CON`, or two ids that differ only in characters a file name cannot hold (`a?`, `a*`). This module
is the one place that turns such a name into a relative path that

- stays under the output folder: no absolute path, no `..`, no control characters, none of the
  characters or device names Windows refuses (outputs are often copied there);
- fits every common filesystem: each component is at most MAX_COMPONENT_BYTES of UTF-8, cut on a
  character boundary (filesystems count bytes, not characters, and stop at 255);
- is unique within one output run (OutputNames): when two distinct names come out the same, the later
  one gets `-<8 hex digits of the SHA-256 of the original name>` before its extension
  (`collide_-3f2a9c1b.png`), so no job's file overwrites another's and the number of files a command
  reports is the number on disk.

It also builds the Content-Disposition header of a download named by its uploader (RFC 6266 / 5987).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import PurePosixPath
from urllib.parse import quote

# filesystems cap a name at 255 bytes: this leaves room for `-<hash>`, `-<n>` and the extension
MAX_COMPONENT_BYTES = 200
HASH_LEN = 8
# control characters (C0, DEL, C1), what Windows refuses in a name, and lone surrogates (not encodable)
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f<>:"|?*\ud800-\udfff]')
_TRAILING = re.compile(r"[. ]+$")  # Windows drops trailing dots and spaces: `a.` would become `a`
_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL"} | {f"{d}{n}" for d in ("COM", "LPT") for n in range(1, 10)})


def _cut_utf8(text: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8, never half a character. `text` must hold no lone surrogates."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def digest(name: str) -> str:
    """The short, stable disambiguator of a name: the same name always gets the same one."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LEN]


def safe_component(part: str) -> str:
    """One path component that names an ordinary file on any filesystem; "" for one that names nothing
    ("", ".", "..")."""
    if part in ("", ".", ".."):
        return ""
    part = _UNSAFE.sub("_", part)
    if part.split(".")[0].rstrip(" ").upper() in _DEVICES:  # CON, con.txt, COM1.png: devices on Windows
        part = "_" + part
    part = _cut_utf8(part, MAX_COMPONENT_BYTES)
    return _TRAILING.sub(lambda m: "_" * len(m[0]), part)


def safe_relpath(name: str, *, keep_dirs: bool = True) -> PurePosixPath:
    """`name` as a relative path that stays under the output folder. `a/b/c.wav` keeps its folders (the
    workflows mirror their input folder), or with keep_dirs=False becomes one name, `a_b_c.wav`. `\\`
    counts as a separator too; empty, `.` and `..` parts are dropped; a name with nothing left is `_`."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not keep_dirs:
        parts = ["_".join(parts)]
    safe = [c for c in map(safe_component, parts) if c]
    return PurePosixPath(*safe) if safe else PurePosixPath("_")


def _key(path: str) -> str:
    # case- and normalisation-insensitive, as on macOS and Windows: `A.png` and `a.png` are one file there
    return unicodedata.normalize("NFC", path).casefold()


class OutputNames:
    """The file names handed out in one output run (one folder): safe, and never the same twice.

    `claim` gives a job's files one base name; when that is taken (by an earlier job whose name came out
    the same, a reserved name such as the run's index file, or a folder), the base gets `-<digest of the
    original name>`, then `-<digest>-2`, … (the same custom_id twice in a batch)."""

    def __init__(self, *, keep_dirs: bool = True, reserved: Iterable[str] = ()) -> None:
        self.keep_dirs = keep_dirs
        self._files = {_key(r) for r in reserved}
        self._dirs: set[str] = set()

    def claim(self, name: str, suffixes: Sequence[str] = ("",), *, replace_ext: bool = False) -> list[str]:
        """One relative POSIX path per suffix (`.srt`, `-1.png`), all on one base so that a job's files
        stay together. replace_ext: `a.wav` tries `a.srt` first and then `a.wav.srt` (the workflows'
        documented names), before any digest."""
        if not suffixes:  # a job with nothing to write takes no name (nor folder) from the others
            return []
        rel = safe_relpath(name, keep_dirs=self.keep_dirs)
        folder = self._folder(rel.parent)
        for base in self._bases(rel, name, replace_ext):
            paths = [str(folder / (base + s)) for s in suffixes]
            keys = {_key(p) for p in paths}
            if len(keys) == len(paths) and not any(k in self._files or k in self._dirs for k in keys):
                self._files |= keys
                self._dirs |= {_key(str(p)) for p in (folder, *folder.parents) if p.parts}
                return paths
        raise AssertionError("unreachable: _bases never ends")

    def _folder(self, parent: PurePosixPath) -> PurePosixPath:
        """`parent`, with any folder that is already a file's name renamed (`a.png` the file, then
        `a.png/b` the job: its folder becomes `a.png-<digest>`)."""
        folder = PurePosixPath()
        for part in parent.parts:
            path = folder / part
            while _key(str(path)) in self._files:
                path = path.with_name(f"{path.name}-{digest(str(path))}")
            folder = path
        return folder

    @staticmethod
    def _bases(rel: PurePosixPath, name: str, replace_ext: bool) -> Iterator[str]:
        if replace_ext and rel.suffix:
            yield rel.stem
        yield rel.name
        tagged = f"{rel.name}-{digest(name)}"
        yield tagged
        n = 2
        while True:
            yield f"{tagged}-{n}"
            n += 1


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """The header value for a download named `filename` (RFC 6266): an ASCII `filename` every client
    reads, plus `filename*` (RFC 5987, UTF-8) carrying the real name when it is not plain ASCII. Headers
    are Latin-1 at best: `文件.jsonl` put in as is failed the whole response, and a quote or a line break
    would have changed the header."""
    fallback = _ascii_fallback(filename)
    header = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        header += "; filename*=UTF-8''" + quote(filename.encode("utf-8", "replace"), safe="")
    return header


def _ascii_fallback(filename: str) -> str:
    """Printable ASCII without `"`, `\\` or `%` (some clients decode it): `naïve.jsonl` → `naive.jsonl`,
    `文件.jsonl` → `__.jsonl`."""
    decomposed = unicodedata.normalize("NFKD", filename)
    letters = (c for c in decomposed if not unicodedata.combining(c))
    return "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in letters) or "download"
