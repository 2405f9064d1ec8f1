"""Reading a key offered to the catalog: its facts, and proof that its passphrase opens it."""

from __future__ import annotations

from dataclasses import dataclass

from shared.pgp.colons import KeyFacts
from shared.pgp.errors import KeyUnsuitable
from shared.pgp.gpg import GpgHome, Outcome
from shared.pgp.verdicts import check_usable, passphrase_error

PROBE = b"connect passphrase probe"


@dataclass(frozen=True)
class InspectedKey:
    facts: KeyFacts
    public_key: str  # the armoured public part (of a private key too): safe to show and to hand out


async def inspect_key(material: bytes, passphrase: str | None = None, field: str = "key") -> InspectedKey:
    """The facts of one key (armoured or binary, public or private). Refuses what is not one key, a
    revoked or expired key, and a private key its passphrase does not open (errors name `field`, where
    the key was given, or `passphrase`)."""
    async with GpgHome() as home:
        facts = await home.add(material, field)
        check_usable(facts, field)
        if facts.has_secret:
            await _prove_passphrase(home, facts, passphrase, field)
        return InspectedKey(facts, await home.export_public(facts.fingerprint))


async def _prove_passphrase(home: GpgHome, key: KeyFacts, passphrase: str | None, field: str) -> None:
    """Use the private key once, as a run will: decrypt a probe encrypted to it, or sign one."""
    if key.can("encrypt"):
        probe, _ = await home.run(["--trust-model", "always", "--encrypt", "-r", key.fingerprint], PROBE)
        output, outcome = await home.run(["--decrypt"], probe, passphrase)
    else:
        output, outcome = await home.run(["--sign", "--local-user", key.fingerprint], PROBE, passphrase)
    refused = passphrase_error(outcome, key, passphrase is not None, "passphrase")
    if refused is not None:
        raise refused
    if outcome.returncode != 0 or not output:
        raise _unusable(key, outcome, field)


def _unusable(key: KeyFacts, outcome: Outcome, field: str) -> KeyUnsuitable:
    return KeyUnsuitable(
        f"{field}: the private key {key.fingerprint} cannot be used: {outcome.last_message()}", field=field
    )
