"""The Signer seam: whatever holds the secret key signs events and en/decrypts for a peer.

``Keys`` (a secret in this process) is one Signer; anything with these six members is
another: a hardware or remote signer, another Nostr library's keys, a NIP-46 bunker
client. Everywhere the pure core signs or decrypts it takes a Signer: ``sign_event``,
``parse_image_job(provider=...)``, ``build_result`` / ``build_feedback`` / ``parse_result`` /
``parse_feedback(keys=...)``, ``encrypt`` / ``decrypt``, ``RelaySession(keys=...)`` (NIP-42).

    class MySigner:
        @property
        def public_key(self) -> str: ...                       # 64 lowercase hex
        def sign_event(self, template: UnsignedEvent) -> Event: ...
        def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str: ...
        def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str: ...
        def nip04_encrypt(self, peer_pubkey: str, plaintext: str) -> str: ...
        def nip04_decrypt(self, peer_pubkey: str, payload: str) -> str: ...

``sign_event`` receives a template whose ``created_at`` is set and must return the signed
``Event`` of exactly that template by ``public_key`` (build it with ``parse_event`` from the
other library's JSON). The module function ``sign_event(template, signer)`` checks that: a
Signer that is not ``Keys`` has the event it returns compared with the template and its id
and signature verified, so a signer that alters an event is caught before anything is
published. The argument order of the encryption methods is NIP-07's and NIP-46's: the peer's
public key first. Errors a foreign signer raises come out of the encryption helpers as
``EncryptionError`` (with the original as ``__cause__``).

Synchronous on purpose. The pure core has no event loop and no I/O: parsing, building and
signing stay plain function calls that any program can make, in threads or not. A signer
that is asynchronous or remote (NIP-46 over a relay, a hardware wallet) is bridged by
running the pure calls off the event loop, so that the signer may block::

    class BunkerSigner:                        # wraps an async NIP-46 client
        def __init__(self, client, loop, public_key):
            self._client, self._loop, self.public_key = client, loop, public_key

        def sign_event(self, template):
            future = asyncio.run_coroutine_threadsafe(self._client.sign(template), self._loop)
            return future.result(timeout=30)   # blocks this worker thread, not the loop
        ...

    # on the event loop: call the pure core from a worker thread
    event = await asyncio.to_thread(sign_event, template, bunker_signer)

Calling such a signer from the loop's own thread would deadlock: ``future.result`` waits for
a coroutine that the blocked loop cannot run. See docs/events-and-keys.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from nostr_imagegen.nostr.event import Event, UnsignedEvent

__all__ = ["Signer"]


@runtime_checkable
class Signer(Protocol):
    """Signs events and encrypts for peers with one key pair; ``Keys`` is one.

    ``isinstance(x, Signer)`` checks that the six members exist (not their signatures).
    """

    @property
    def public_key(self) -> str:
        """The x-only public key, 64 lowercase hex: the ``pubkey`` of the events signed."""
        ...

    def sign_event(self, template: UnsignedEvent) -> Event:
        """The signed event of ``template`` (whose ``created_at`` is set) by this key."""
        ...

    def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        """A NIP-44 v2 payload of ``plaintext`` from this key to ``peer_pubkey``."""
        ...

    def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str:
        """The plaintext of a NIP-44 v2 ``payload`` exchanged with ``peer_pubkey``."""
        ...

    def nip04_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        """A NIP-04 payload (``<base64>?iv=<base64>``) of ``plaintext`` to ``peer_pubkey``."""
        ...

    def nip04_decrypt(self, peer_pubkey: str, payload: str) -> str:
        """The plaintext of a NIP-04 ``payload`` exchanged with ``peer_pubkey``."""
        ...
