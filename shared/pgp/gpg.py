"""Debian's `gpg` driven through pipes: one throwaway home per operation, gpg's verdicts read from its
status lines (`--status-fd`, GnuPG's machine interface) rather than from its human messages.

Data flows stdin → gpg → stdout in chunks while the loop only moves bytes: the cryptography runs in the
gpg process, and full pipes hold each side back, so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from shared.pgp.colons import KeyFacts, parse_keys
from shared.pgp.errors import GpgUnavailable, KeyUnreadable

CHUNK = 64 * 1024
STATUS = "[GNUPG:] "
KEPT_MESSAGES = 20
KEPT_STATUSES = 500
# No passphrase is cached between the calls of one operation: each use proves the passphrase again.
# The agent re-protects an imported private key on its first use; it would first time its key derivation
# (seconds on a busy machine) to pick the work factor of a key it deletes a moment later with its home.
AGENT_CONF = "default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\ns2k-count 65536\n"
# gpg error codes (libgpg-error) in ERROR/FAILURE status lines, low 16 bits.
BAD_PASSPHRASE = 11
NO_PASSPHRASE = {67, 99, 177}  # no passphrase given, cancelled, no pinentry
SECRET_IMPORTED = 16  # IMPORT_OK's reason bit: the key came with its private part


@dataclass
class Outcome:
    """How a gpg run ended: its exit code, status lines (keyword, arguments) and its last messages."""

    returncode: int | None = None
    statuses: list[tuple[str, list[str]]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def has(self, keyword: str) -> bool:
        return any(word == keyword for word, _ in self.statuses)

    def args(self, keyword: str) -> list[list[str]]:
        return [args for word, args in self.statuses if word == keyword]

    def error_codes(self) -> set[int]:
        """The gpg error codes of ERROR and FAILURE lines (`ERROR pkdecrypt_failed 67108875` → 11)."""
        codes = set()
        for word, args in self.statuses:
            if word in ("ERROR", "FAILURE") and len(args) >= 2 and args[1].isdigit():
                codes.add(int(args[1]) & 0xFFFF)
        return codes

    def last_message(self) -> str:
        return self.messages[-1].removeprefix("gpg: ") if self.messages else "gpg failed"


def gpg_binary() -> str:
    path = shutil.which("gpg")
    if path is None:
        raise GpgUnavailable("the gpg program is missing: install Debian's gnupg package (make system-deps)")
    return path


AGENT_EXIT_POLLS, AGENT_EXIT_POLL_SECONDS = 250, 0.02  # up to 5 s


class GpgHome:
    """A temporary GNUPGHOME with only the keys of one operation; removed, its agent stopped, on exit."""

    def __init__(self) -> None:
        self.path = ""
        self.gpg = gpg_binary()

    async def __aenter__(self) -> GpgHome:
        self.path = await asyncio.to_thread(tempfile.mkdtemp, prefix="connect-pgp-")
        await asyncio.to_thread((Path(self.path) / "gpg-agent.conf").write_text, AGENT_CONF)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The agent gpg starts (for private keys) outlives gpg; stop it before its home goes. `--kill` only
        # asks: the agent removes its socket as it exits, and a home removed before that can be left half
        # gone (seen on a loaded machine), so wait for the socket first (bounded).
        await self._quiet("gpgconf", "--kill", "gpg-agent")
        socket = Path(self.path) / "S.gpg-agent"
        for _ in range(AGENT_EXIT_POLLS):
            if not await asyncio.to_thread(socket.exists):
                break
            await asyncio.sleep(AGENT_EXIT_POLL_SECONDS)
        await asyncio.to_thread(shutil.rmtree, self.path, True)

    async def _quiet(self, program: str, *args: str) -> None:
        with contextlib.suppress(OSError):
            process = await asyncio.create_subprocess_exec(
                program, *args, env=self._env(), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await process.wait()

    def _env(self) -> dict[str, str]:
        return {"GNUPGHOME": self.path, "LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    async def add(self, material: bytes, field: str) -> KeyFacts:
        """Import one key (armoured or binary, public or private); its facts as gpg sees them now."""
        _, outcome = await self.run(["--import"], material)
        imported = [args for args in outcome.args("IMPORT_OK") if len(args) > 1 and args[0].isdigit()]
        fingerprints = {args[1] for args in imported}
        if not fingerprints:
            raise KeyUnreadable(f"{field}: not an OpenPGP key (give it armoured or binary)", field=field)
        if len(fingerprints) > 1:
            raise KeyUnreadable(f"{field}: holds {len(fingerprints)} keys; give one key", field=field)
        (fingerprint,) = fingerprints
        public, _ = await self.run(["--with-colons", "--fixed-list-mode", "--list-keys", fingerprint], b"")
        (facts,) = parse_keys(public.decode())
        has_secret = any(int(args[0]) & SECRET_IMPORTED for args in imported)
        return dataclasses.replace(facts, has_secret=has_secret)

    async def export_public(self, fingerprint: str) -> str:
        armored, _ = await self.run(["--armor", "--export", fingerprint], b"")
        return armored.decode()

    async def run(
        self, args: Sequence[str], data: bytes, passphrase: str | None = None
    ) -> tuple[bytes, Outcome]:
        """A short gpg call on `data` in memory (keys, probes): its output and outcome."""
        outcome = Outcome()
        output = b"".join([chunk async for chunk in self.pipe(args, _once(data), outcome, passphrase)])
        return output, outcome

    async def pipe(
        self,
        args: Sequence[str],
        chunks: AsyncIterable[bytes],
        outcome: Outcome,
        passphrase: str | None = None,
    ) -> AsyncIterator[bytes]:
        """gpg `args` with `chunks` on its stdin; yields its stdout as it comes and fills `outcome` once gpg
        has exited. An error of `chunks` stops gpg and is raised here."""
        secret_fds: tuple[int, ...] = ()
        options = [
            "--homedir",
            self.path,
            "--batch",
            "--no-tty",
            "--status-fd",
            "2",
            "--pinentry-mode",
            "loopback",
        ]
        if passphrase is not None:
            # Through a pipe of its own: never on a command line or in a file.
            read_end, write_end = os.pipe()
            os.write(write_end, passphrase.encode() + b"\n")
            os.close(write_end)
            secret_fds = (read_end,)
            options += ["--passphrase-fd", str(read_end)]
        try:
            process = await asyncio.create_subprocess_exec(
                self.gpg, *options, *args, env=self._env(), pass_fds=secret_fds,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        finally:
            for fd in secret_fds:
                os.close(fd)
        assert process.stdin and process.stdout and process.stderr
        feeder = asyncio.create_task(_feed(process, process.stdin, chunks))
        reader = asyncio.create_task(_read_status(process.stderr, outcome))
        try:
            while chunk := await process.stdout.read(CHUNK):
                yield chunk
            await feeder
            await reader
            outcome.returncode = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            for task in (feeder, reader):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _feed(
    process: asyncio.subprocess.Process, stdin: asyncio.StreamWriter, chunks: AsyncIterable[bytes]
) -> None:
    try:
        async for chunk in chunks:
            try:
                stdin.write(chunk)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                return  # gpg stopped reading: it exited, and says why in its status lines
        stdin.close()
    except BaseException:
        process.kill()  # the source failed: gpg would wait for more input forever
        raise


async def _read_status(stderr: asyncio.StreamReader, outcome: Outcome) -> None:
    while line := await stderr.readline():
        text = line.decode(errors="replace").rstrip("\n")
        if text.startswith(STATUS):
            words = text.removeprefix(STATUS).split(" ")
            if len(outcome.statuses) < KEPT_STATUSES:
                outcome.statuses.append((words[0], words[1:]))
        elif text.strip():
            outcome.messages = [*outcome.messages[-(KEPT_MESSAGES - 1) :], text.strip()[:300]]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
