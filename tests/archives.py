"""Archives for upload tests, well-formed and hostile: a valid two-class image dataset as
tar, tar.gz or zip, and the shapes a bad-input campaign sends (long-name and pax records
that claim hundreds of MiB, archives of nothing but folders, zips of countless entries).

Hostile archives are written as streams (header blocks, then compressed filler), so a
300 MiB claim costs the test a 300 KB file, never 300 MiB of memory.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from pathlib import Path

CLASSES = ("cat", "dog")


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG_1PX = _png()


def valid_members(per_class: int = 2) -> list[tuple[str, bytes]]:
    return [(f"{c}/{i}.png", PNG_1PX) for c in CLASSES for i in range(per_class)]


def tar_bytes(members: list[tuple[str, bytes]], *, gz: bool = False,
              fmt: int = tarfile.GNU_FORMAT, folders: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=fmt) as tar:
        if folders:
            for folder in sorted({name.rsplit("/", 1)[0] for name, _ in members if "/" in name}):
                info = tarfile.TarInfo(folder)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: list[tuple[str, bytes]], *, folders: bool = True,
              compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        if folders:
            for folder in sorted({name.rsplit("/", 1)[0] for name, _ in members if "/" in name}):
                zf.writestr(folder + "/", b"")
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _gnu_header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def metadata_bomb(path: Path, claim: int, kind: bytes = tarfile.GNUTYPE_LONGNAME) -> Path:
    """A tar.gz whose first record is a GNU long-name (or long-link, or pax: `kind`) record
    of `claim` bytes, all present, followed by one small file: what tarfile reads whole."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    with open(path, "wb") as out:
        name = "././@PaxHeader" if kind in (tarfile.XHDTYPE, tarfile.XGLTYPE) else "././@LongLink"
        out.write(comp.compress(_gnu_header(name, kind, claim)))
        chunk = b"a" * (1 << 20)
        left = claim
        while left > 0:
            n = min(left, len(chunk))
            out.write(comp.compress(chunk[:n]))
            left -= n
        out.write(comp.compress(b"\0" * ((-claim) % 512)))
        out.write(comp.compress(_gnu_header("cat/1.png", tarfile.REGTYPE, len(PNG_1PX))))
        out.write(comp.compress(PNG_1PX + b"\0" * ((-len(PNG_1PX)) % 512) + b"\0" * 1024))
        out.write(comp.flush())
    return path


def folders_tar(n: int, *, gz: bool = True) -> bytes:
    """A tar(.gz) of `n` empty folders beside a valid two-class dataset."""
    extra = [tarfile.TarInfo(f"empty/{i}") for i in range(n)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for info in extra:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in valid_members():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def folders_zip(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            zf.writestr(f"empty/{i}/", b"")
        for name, data in valid_members():
            zf.writestr(name, data)
    return buf.getvalue()
