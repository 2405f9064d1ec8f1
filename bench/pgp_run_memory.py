"""Peak memory of the executor's PGP pipelines through a real sshd, for a small and a large file.

    .venv/bin/python bench/pgp_run_memory.py [--sizes 100,1024] [--dir /tmp]

`bench/pgp_memory.py` measures `shared.pgp` alone; this one measures what an encrypted import or export
run does with the file, with the executor's own code, each in a fresh Python process:
  import: the partner's file (made by Debian's gpg: signed, encrypted to Connect's key) is downloaded
          from sshd (`SftpSession.read_chunks`), decrypted and verified into the run's spool
          (`pgp_files.Spool`), then read back from the spool and split and parsed into CSV records
          (`sources.decoded_chunks`, `sources.csv_pieces`), as `SourceReader` does. The database load
          is left out: it is row-batched (EXECUTOR_BATCH_SIZE rows and a bounded number of writes in
          flight), so what it holds does not grow with the file (docs/benchmarks.md, import throughput).
  export: generated rows in batches of 1000 → `CsvEncoder` → `encrypt_stream` (to the partner's key,
          signed with Connect's) → the upload (`destinations.write_csv_file`: a temporary name, then
          renamed), the uploaded file's size checked.
Printed per pipeline and size: peak RSS of the Python process and of the gpg process it drove, the
time, and the ratio of each peak for the largest size to the smallest (the goal: within 1.10). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402

from services.executor.domain.export import CsvEncoder  # noqa: E402
from services.executor.exporters.destinations import write_csv_file  # noqa: E402
from services.executor.importers import sources  # noqa: E402
from services.executor.pgp_files import DecryptKeys, EncryptKeys, Spool  # noqa: E402
from services.executor.sftp import open_sftp  # noqa: E402
from shared.catalog_records import ConnectionRecord  # noqa: E402
from shared.contracts.jobs import CsvFormat  # noqa: E402
from shared.secrets import Binding, SecretBox  # noqa: E402
from tests.support.gpg import Gpg  # noqa: E402
from tests.support.servers import Sshd, sshd_server  # noqa: E402

CHUNK = 256 * 1024  # EXECUTOR_READ_CHUNK_BYTES' default
PASSPHRASE = "bench passphrase"
COLUMNS = ["id", "email", "points"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1024", help="file sizes in MiB, comma-separated")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where sshd's files and the spool go")
    parser.add_argument("--child", choices=["import", "export"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.size_list = [int(size) for size in args.sizes.split(",")]
    if any(size < 1 for size in args.size_list):
        parser.error("--sizes: positive MiB")
    return args


def row(i: int) -> list[str]:
    return [f"C{i:010d}", f"{os.urandom(5).hex()}@example.com", str(i % 9973)]


def write_plain(path: Path, mib: int) -> int:
    """`mib` MiB of CSV rows (header first); returns the number of data rows."""
    count, size, limit = 0, 0, mib << 20
    with path.open("w") as handle:
        handle.write(",".join(COLUMNS) + "\n")
        while size < limit:
            lines = "".join(",".join(row(count + n)) + "\n" for n in range(10_000))
            handle.write(lines)
            size += len(lines)
            count += 10_000
    return count


def connection(sshd: Sshd, box: SecretBox) -> ConnectionRecord:
    return ConnectionRecord.model_validate({
        "_id": 1, "name": "bench", "host": sshd.host, "port": sshd.port, "username": sshd.username,
        "private_key_encrypted": box.encrypt(sshd.private_key, Binding("connection", 1, "private_key_encrypted")),
        "host_key": sshd.host_key,
        "base_dir": str(sshd.root), "created_at": datetime.now(UTC), "created_by": "bench",
    })  # fmt: skip


async def child(operation: str, work: Path, size: int) -> dict[str, Any]:
    setup = json.loads((work / "setup.json").read_text())
    box = SecretBox(setup["fernet"])
    record = ConnectionRecord.model_validate(setup["connection"])
    ours, partner = (work / "ours.asc").read_bytes(), (work / "partner.pub").read_bytes()
    started = time.monotonic()
    async with open_sftp(record, box) as sftp:
        if operation == "import":
            spool = Spool(str(work))
            try:
                remote = await sftp.stat(f"{size}.csv.gpg")
                keys = DecryptKeys(ours, PASSPHRASE, [partner])
                plain = await spool.decrypt(remote, sftp.read_chunks(remote, CHUNK), keys)
                compression = sources.compression_of(remote.path, "auto")
                chunks = sources.decoded_chunks(spool, plain, compression, CHUNK, lambda n: None)
                records = 0
                async for piece in sources.csv_pieces(chunks, CsvFormat(), 0):
                    records += len(piece.records)
            finally:
                spool.close()
            result: dict[str, Any] = {"records": records - 1, "plain_bytes": plain.size}
        else:
            target = size << 20

            async def rows() -> AsyncIterator[list[dict[str, Any]]]:
                made, written = 0, 0
                while written < target:
                    batch = [dict(zip(COLUMNS, row(made + n), strict=True)) for n in range(1000)]
                    made += 1000
                    written += sum(len(",".join(r.values())) + 2 for r in batch)
                    yield batch

            keys_ = EncryptKeys([partner], ours, PASSPHRASE, armor=False)
            _, count = await write_csv_file(sftp, f"out/{size}.csv.pgp", CsvEncoder(CsvFormat(), COLUMNS),
                                               rows(), header=True, gzip=False, encrypt=keys_)  # fmt: skip
            result = {"records": count, "uploaded_bytes": (await sftp.stat(f"out/{size}.csv.pgp")).size}
    result["seconds"] = time.monotonic() - started
    result["python_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["gpg_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


def measure(operation: str, work: Path, size: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", operation, "--work", str(work), "--size", str(size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{operation} {size} MiB failed: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> None:
    args = parse(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, Path(args.work), args.size))))
        return
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pgp-run-bench-") as tmp:
        work = Path(tmp)
        with sshd_server(work / "sshd") as sshd, Gpg(work / "gpg") as gpg:
            ours = gpg.generate("Connect <connect@example.com>", PASSPHRASE)
            partner = gpg.generate("Partner <feeds@partner.example>")
            (work / "ours.asc").write_bytes(ours.secret)
            (work / "partner.pub").write_bytes(partner.public)
            fernet = Fernet.generate_key().decode()
            record = connection(sshd, SecretBox(fernet)).model_dump(mode="json", by_alias=True)
            (work / "setup.json").write_text(json.dumps({"fernet": fernet, "connection": record}))
            (sshd.root / "out").mkdir()
            results: dict[str, dict[int, dict[str, Any]]] = {"import": {}, "export": {}}
            for size in args.size_list:
                plain = work / f"{size}.csv"
                rows = write_plain(plain, size)
                gpg.encrypt_file(plain, sshd.root / f"{size}.csv.gpg", [ours.fingerprint], partner)
                plain.unlink()
                for operation in ("import", "export"):
                    result = measure(operation, work, size)
                    if operation == "import" and result["records"] != rows:
                        raise SystemExit(f"import {size} MiB: {result['records']} records, expected {rows}")
                    results[operation][size] = result
                    print(
                        f"{operation} {size:>5} MiB: python peak RSS {result['python_kib'] / 1024:6.1f} MiB, "
                        f"gpg peak RSS {result['gpg_kib'] / 1024:5.1f} MiB, {result['seconds']:6.1f} s, "
                        f"{result['records']:,} records (load {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
                (sshd.root / f"{size}.csv.gpg").unlink()
                (sshd.root / "out" / f"{size}.csv.pgp").unlink()
        small, large = min(args.size_list), max(args.size_list)
        for operation, by_size in results.items():
            python = by_size[large]["python_kib"] / by_size[small]["python_kib"]
            gpg_ratio = by_size[large]["gpg_kib"] / by_size[small]["gpg_kib"]
            print(
                f"{operation}: {large} MiB / {small} MiB peak RSS ratio: python {python:.3f}, gpg {gpg_ratio:.3f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
