"""Peak memory of decrypting and encrypting PGP files while streaming, for a small and a large file.

    .venv/bin/python bench/pgp_memory.py [--sizes 100,1024] [--dir /tmp]

For each size (MiB) it writes a CSV-like file, has Debian's gpg (the independent tool, a home of its
own) sign it with a partner's key and encrypt it to Connect's key, then runs, each in a fresh Python
process so that its peak is its own:
  decrypt: `shared.pgp.decrypt_stream` of the partner's file with Connect's passphrase-protected key,
           the signature verified against the partner's public key, the plaintext hashed (the digest is
           checked against the file's);
  encrypt: `shared.pgp.encrypt_stream` of the plain file to the partner's key, signed with Connect's,
           written to disk.
The file is read and written in 256 KiB chunks, as an SFTP transfer gives them. Printed per operation
and size: peak RSS of the Python process and of the gpg process it drove (`ru_maxrss`), the time, and
the ratio of each peak for the largest size to the smallest (the goal: within 1.10). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.pgp import decrypt_stream, encrypt_stream  # noqa: E402
from tests.support.gpg import Gpg  # noqa: E402

CHUNK = 256 * 1024
PASSPHRASE = "bench passphrase"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1024", help="file sizes in MiB, comma-separated")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the files are written")
    parser.add_argument("--child", choices=["decrypt", "encrypt"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.size_list = [int(size) for size in args.sizes.split(",")]
    if any(size < 1 for size in args.size_list):
        parser.error("--sizes: positive MiB")
    return args


def write_plain(path: Path, mib: int) -> str:
    """`mib` MiB of CSV rows; one random MiB block repeated (zlib's 32 KiB window sees no repeat)."""
    rows, size = [], 0
    while size < 1 << 20:
        row = f"{os.urandom(6).hex()}@example.com,{os.urandom(4).hex()},{int.from_bytes(os.urandom(2))}\n"
        rows.append(row)
        size += len(row)
    block = "".join(rows).encode()[: 1 << 20]
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for _ in range(mib):
            handle.write(block)
            digest.update(block)
    return digest.hexdigest()


async def read(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk


async def child(operation: str, work: Path, size: int) -> dict[str, Any]:
    ours, partner = (work / "ours.asc").read_bytes(), (work / "partner.pub").read_bytes()
    started = time.monotonic()
    if operation == "decrypt":
        digest, total = hashlib.sha256(), 0
        async for chunk in decrypt_stream(read(work / f"{size}.csv.gpg"), ours, PASSPHRASE, [partner]):
            digest.update(chunk)
            total += len(chunk)
        result: dict[str, Any] = {"bytes": total, "sha256": digest.hexdigest()}
    else:
        target, total = work / f"{size}.out.gpg", 0
        with target.open("wb") as handle:
            async for chunk in encrypt_stream(read(work / f"{size}.csv"), [partner], ours, PASSPHRASE):
                await asyncio.to_thread(handle.write, chunk)
                total += len(chunk)
        target.unlink()
        result = {"bytes": total}
    result["seconds"] = time.monotonic() - started
    result["python_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["gpg_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


def measure(operation: str, work: Path, size: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", operation, "--work", str(work), "--size", str(size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{operation} {size} MiB failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout))


def main(argv: list[str]) -> None:
    args = parse(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, Path(args.work), args.size))))
        return
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pgp-bench-") as tmp:
        work = Path(tmp)
        with Gpg(work / "gpg") as gpg:
            ours = gpg.generate("Connect <connect@example.com>", PASSPHRASE)
            partner = gpg.generate("Partner <feeds@partner.example>")
            (work / "ours.asc").write_bytes(ours.secret)
            (work / "partner.pub").write_bytes(partner.public)
            results: dict[str, dict[int, dict[str, Any]]] = {"decrypt": {}, "encrypt": {}}
            for size in args.size_list:
                digest = write_plain(work / f"{size}.csv", size)
                gpg.encrypt_file(work / f"{size}.csv", work / f"{size}.csv.gpg", [ours.fingerprint], partner)
                for operation in ("decrypt", "encrypt"):
                    result = measure(operation, work, size)
                    if operation == "decrypt" and result["sha256"] != digest:
                        raise SystemExit(f"decrypt {size} MiB: the plaintext differs from the file")
                    results[operation][size] = result
                    print(
                        f"{operation} {size:>5} MiB: python peak RSS {result['python_kib'] / 1024:6.1f} MiB, "
                        f"gpg peak RSS {result['gpg_kib'] / 1024:5.1f} MiB, {result['seconds']:6.1f} s "
                        f"(load {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
                for name in (f"{size}.csv", f"{size}.csv.gpg"):
                    (work / name).unlink()
        small, large = min(args.size_list), max(args.size_list)
        for operation, by_size in results.items():
            python = by_size[large]["python_kib"] / by_size[small]["python_kib"]
            gpg_ratio = by_size[large]["gpg_kib"] / by_size[small]["gpg_kib"]
            print(
                f"{operation}: {large} MiB / {small} MiB peak RSS ratio: python {python:.3f}, gpg {gpg_ratio:.3f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
