"""C2SP signed notes, verifier keys and tlog-checkpoint bodies.

Known-answer keys and notes are copied from golang.org/x/mod, file sumdb/note/note_test.go
(BSD-3-Clause), the reference implementation the C2SP signed-note spec grew out of; the
checkpoint body example is the one in C2SP's tlog-checkpoint.md.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier._internal.note import (
    MAX_SIGNATURES,
    VerifierKey,
    format_verifier_key,
    key_id,
    parse_verifier_key,
    split_signed_note,
    verify_note,
)
from verifier.errors import (
    CheckpointError,
    NoteFormatError,
    NoteSignatureError,
    UntrustedNoteError,
    Verdict,
    VerificationError,
    VerifierKeyError,
)
from verifier.models import Checkpoint

# --- Vectors from golang.org/x/mod/sumdb/note/note_test.go ---------------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
PETER_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfq"
    "dngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnW"
    "Lox33WWd1RvMc+QQ=\n"
)
PETER_NOTE = PETER_TEXT + "\n" + PETER_SIG

# The example checkpoint body of c2sp.org/tlog-checkpoint.
C2SP_CHECKPOINT_TEXT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)

PETER = parse_verifier_key(PETER_VKEY)
ENOCH = parse_verifier_key(ENOCH_VKEY)


# --- Helpers: notes signed here with fresh Ed25519 keys ------------------------------------


class NoteSigner:
    """A test-only C2SP note signer over a fresh Ed25519 key."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.private_key = Ed25519PrivateKey.generate()
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key = VerifierKey.from_ed25519(name, raw)

    def line(self, text: str, *, key_id_override: int | None = None) -> str:
        kid = self.key.key_id if key_id_override is None else key_id_override
        signature = self.private_key.sign(text.encode("utf-8"))
        encoded = base64.b64encode(kid.to_bytes(4, "big") + signature).decode("ascii")
        return f"— {self.name} {encoded}\n"

    def sign(self, text: str) -> str:
        return text + "\n" + self.line(text)


ORIGIN = "ledger.example/log"
ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode("ascii")
CHECKPOINT_TEXT = f"{ORIGIN}\n42\n{ROOT_B64}\n"


@pytest.fixture(scope="module")
def log_signer() -> NoteSigner:
    return NoteSigner(ORIGIN)


# --- Verifier keys -------------------------------------------------------------------------


def test_published_verifier_keys_parse_with_their_key_ids() -> None:
    assert (PETER.name, PETER.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert (ENOCH.name, ENOCH.key_id) == ("EnochRoot", 0xAF0CFE78)
    assert str(PETER) == PETER_VKEY
    assert format_verifier_key(ENOCH.name, ENOCH.public_key) == ENOCH_VKEY
    assert key_id(PETER.name, PETER.public_key) == 0xC74F20A3


def test_every_mangling_of_a_verifier_key_is_rejected() -> None:
    # The same manglings as TestNewVerifier: every proper substring, every character + 1.
    mangled = {
        PETER_VKEY[i:j]
        for i in range(len(PETER_VKEY) + 1)
        for j in range(i + 1, len(PETER_VKEY) + 1)
        if (i, j) != (0, len(PETER_VKEY))
    }
    mangled |= {
        PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        for i in range(len(PETER_VKEY))
    }
    for vkey in sorted(mangled):
        with pytest.raises(VerifierKeyError):
            parse_verifier_key(vkey)


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        # Wrong key length and unknown algorithm, each with an adjusted key ID (note_test.go);
        # the first one already fails as non-canonical base64 here.
        ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==", "base64"),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "type 0x65"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8-digit"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "space"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "empty"),
        ("PeterNeumann+c74f20a3+", "missing"),
    ],
)
def test_bad_verifier_keys_say_what_is_wrong(vkey: str, reason: str) -> None:
    with pytest.raises(VerifierKeyError, match=reason):
        parse_verifier_key(vkey)


def test_a_verifier_key_of_the_wrong_length_is_rejected() -> None:
    short = b"\x01" + PETER.public_key[:31]
    vkey = (
        f"PeterNeumann+{key_id('PeterNeumann', short[1:]):08x}+{base64.b64encode(short).decode()}"
    )
    with pytest.raises(VerifierKeyError, match="31 bytes"):
        parse_verifier_key(vkey)


def test_key_ids_follow_the_c2sp_formula_for_fresh_keys(log_signer: NoteSigner) -> None:
    key = log_signer.key
    assert parse_verifier_key(str(key)) == key
    assert str(key).startswith(f"{ORIGIN}+{key.key_id:08x}+")


# --- Signed notes: the published examples --------------------------------------------------


def test_published_note_verifies_with_its_key() -> None:
    note = verify_note(PETER_NOTE, [PETER])
    assert note.text == PETER_TEXT
    assert [s.key_label for s in note.signatures] == ["PeterNeumann+c74f20a3"]
    assert note.unverified == ()


def test_signatures_from_unknown_keys_are_ignored() -> None:
    note = verify_note(PETER_NOTE.encode() + ENOCH_SIG.encode(), [PETER])
    assert [s.name for s in note.signatures] == ["PeterNeumann"]
    assert [s.key_label for s in note.unverified] == ["EnochRoot+af0cfe78"]


def test_every_trusted_signature_is_verified() -> None:
    note = verify_note(PETER_NOTE + ENOCH_SIG, [PETER, ENOCH])
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]


def test_note_without_a_trusted_signature_is_indeterminate() -> None:
    for keys in ([], [ENOCH]):
        with pytest.raises(UntrustedNoteError, match="no signature on the note") as caught:
            verify_note(PETER_NOTE, keys)
        assert caught.value.verdict is Verdict.INDETERMINATE


def test_repeated_signatures_are_counted_once() -> None:
    note = verify_note(PETER_TEXT + "\n" + PETER_SIG * 2 + ENOCH_SIG * 2, [PETER])
    assert len(note.signatures) == 1
    assert len(note.unverified) == 1


def test_a_trusted_signature_that_does_not_verify_rejects_the_note() -> None:
    corrupted = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]  # as TestOpen does
    with pytest.raises(NoteSignatureError, match="PeterNeumann\\+c74f20a3") as caught:
        verify_note(PETER_TEXT + "\n" + corrupted, [PETER])
    assert caught.value.verdict is Verdict.FAILED


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (PETER_TEXT, "no blank line"),
        (PETER_TEXT + "\n", "no signature lines"),
        (PETER_TEXT + "\n" + PETER_SIG[:-1], "does not end with a newline"),
        ("\x01" + PETER_NOTE, "control character U\\+0001"),
        (PETER_NOTE.replace("\n", "\r\n"), "control character U\\+000D"),
        (b"\xff" + PETER_NOTE.encode(), "not valid UTF-8"),
        ("\ud800" + PETER_NOTE, "not valid UTF-8"),
        (PETER_TEXT + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQ=\n", "not canonical base64"),
        (PETER_TEXT + "\n— Bad+Name x08go/ZJkuBS9UG/SffcvIAQ=\n", "invalid key name"),
        (PETER_TEXT + "\n— PeterNeumann\n", "not canonical base64"),
        (PETER_TEXT + "\n— PeterNeumann AAAA\n", "not canonical base64"),
        (PETER_NOTE + "Unexpected line.\n", "not a signature line"),
        (PETER_TEXT + "\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQ=\n", "not a signature line"),
    ],
)
def test_malformed_notes_are_rejected(message: str | bytes, reason: str) -> None:
    with pytest.raises(NoteFormatError, match=reason):
        verify_note(message, [PETER])


def test_text_is_split_at_the_last_blank_line() -> None:
    text, signatures = split_signed_note("para one\n\npara two\n\n" + PETER_SIG)
    assert text == "para one\n\npara two\n"
    assert [s.name for s in signatures] == ["PeterNeumann"]


# --- Signed notes: keys made here ----------------------------------------------------------


def test_note_signed_here_verifies(log_signer: NoteSigner) -> None:
    note = verify_note(log_signer.sign("hello\n"), [log_signer.key])
    assert note.text == "hello\n"


def test_a_different_key_with_the_same_name_is_not_trusted(log_signer: NoteSigner) -> None:
    impostor = NoteSigner(ORIGIN)
    with pytest.raises(UntrustedNoteError):
        verify_note(impostor.sign("hello\n"), [log_signer.key])


def test_a_signature_claiming_a_trusted_key_id_must_verify(log_signer: NoteSigner) -> None:
    impostor = NoteSigner(ORIGIN)
    forged = "hello\n\n" + impostor.line("hello\n", key_id_override=log_signer.key.key_id)
    with pytest.raises(NoteSignatureError):
        verify_note(forged, [log_signer.key])


def test_a_wrong_key_id_on_the_signature_line_makes_it_unknown(log_signer: NoteSigner) -> None:
    bad_id = "hello\n\n" + log_signer.line("hello\n", key_id_override=log_signer.key.key_id ^ 1)
    with pytest.raises(UntrustedNoteError):
        verify_note(bad_id, [log_signer.key])


def test_changing_any_byte_of_a_signed_note_fails_verification(log_signer: NoteSigner) -> None:
    message = log_signer.sign(CHECKPOINT_TEXT).encode("utf-8")
    Checkpoint.from_signed_note(message, [log_signer.key])
    for position in range(len(message)):
        changed = bytearray(message)
        changed[position] ^= 0x01
        with pytest.raises(VerificationError):
            Checkpoint.from_signed_note(bytes(changed), [log_signer.key])


def test_sixteen_signature_lines_are_accepted_and_seventeen_are_not(
    log_signer: NoteSigner,
) -> None:
    witnesses = [NoteSigner(f"witness.example/{n}") for n in range(MAX_SIGNATURES)]
    lines = [log_signer.line("hello\n")] + [w.line("hello\n") for w in witnesses]
    note = verify_note("hello\n\n" + "".join(lines[:16]), [log_signer.key])
    assert len(note.unverified) == 15
    with pytest.raises(NoteFormatError, match="17 signature lines"):
        verify_note("hello\n\n" + "".join(lines[:17]), [log_signer.key])


def test_two_different_trusted_keys_may_not_share_name_and_id() -> None:
    clash = VerifierKey.__new__(VerifierKey)  # bypasses the key-ID check on purpose
    object.__setattr__(clash, "name", PETER.name)
    object.__setattr__(clash, "key_id", PETER.key_id)
    object.__setattr__(clash, "public_key", ENOCH.public_key)
    with pytest.raises(VerifierKeyError, match="share name and ID"):
        verify_note(PETER_NOTE, [PETER, clash])


# --- Checkpoints ---------------------------------------------------------------------------


def test_c2sp_example_checkpoint_body_parses() -> None:
    checkpoint = Checkpoint.from_note_text(C2SP_CHECKPOINT_TEXT)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.to_note_text() == C2SP_CHECKPOINT_TEXT


def test_signed_checkpoint_verifies(log_signer: NoteSigner) -> None:
    checkpoint = Checkpoint.from_signed_note(log_signer.sign(CHECKPOINT_TEXT), [log_signer.key])
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (ORIGIN, 42, ROOT)


def test_extension_lines_are_kept(log_signer: NoteSigner) -> None:
    text = CHECKPOINT_TEXT + "ext one\next two\n"
    checkpoint = Checkpoint.from_signed_note(log_signer.sign(text), [log_signer.key])
    assert checkpoint.extensions == ("ext one", "ext two")
    assert checkpoint.to_note_text() == text


def test_empty_tree_checkpoint_has_size_zero(log_signer: NoteSigner) -> None:
    empty = base64.b64encode(
        bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    )
    text = f"{ORIGIN}\n0\n{empty.decode()}\n"
    assert Checkpoint.from_signed_note(log_signer.sign(text), [log_signer.key]).size == 0


def test_checkpoint_must_be_signed_by_a_key_named_after_its_origin() -> None:
    witness = NoteSigner("witness.example")
    with pytest.raises(UntrustedNoteError, match="named after the origin"):
        Checkpoint.from_signed_note(witness.sign(CHECKPOINT_TEXT), [witness.key])


def test_checkpoint_origin_can_be_pinned(log_signer: NoteSigner) -> None:
    message = log_signer.sign(CHECKPOINT_TEXT)
    Checkpoint.from_signed_note(message, [log_signer.key], origin=ORIGIN)
    with pytest.raises(CheckpointError, match=r"expected 'other\.example/log'"):
        Checkpoint.from_signed_note(message, [log_signer.key], origin="other.example/log")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{ORIGIN}\n42\n", "has 2 lines"),
        (f"{ORIGIN}\n42\n{ROOT_B64}", "does not end with a newline"),
        (f"\n42\n{ROOT_B64}\n", "origin is empty"),
        (f"{ORIGIN}\n042\n{ROOT_B64}\n", "tree size line"),
        (f"{ORIGIN}\n-1\n{ROOT_B64}\n", "tree size line"),
        (f"{ORIGIN}\n+1\n{ROOT_B64}\n", "tree size line"),
        (f"{ORIGIN}\n4_2\n{ROOT_B64}\n", "tree size line"),
        (f"{ORIGIN}\n４２\n{ROOT_B64}\n", "tree size line"),
        (f"{ORIGIN}\n 42\n{ROOT_B64}\n", "tree size line"),
        (f"{ORIGIN}\n\n{ROOT_B64}\n", "tree size line"),
        (f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n", "outside"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT + b'x').decode()}\n", "33 bytes"),
        (f"{ORIGIN}\n42\n{ROOT.hex()}\n", "not base64|bytes"),
        (f"{ORIGIN}\n42\n{ROOT_B64[:-2]}B=\n", "not canonical"),
        (f"{ORIGIN}\n42\n{ROOT_B64}\n\next\n", "extension line 4 is empty"),
    ],
)
def test_malformed_checkpoint_bodies_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        Checkpoint.from_note_text(text)


def test_malformed_checkpoint_is_rejected_even_when_signed(log_signer: NoteSigner) -> None:
    text = f"{ORIGIN}\n042\n{ROOT_B64}\n"
    with pytest.raises(CheckpointError, match="leading zeros"):
        Checkpoint.from_signed_note(log_signer.sign(text), [log_signer.key])


def test_checkpoint_values_are_checked_when_built_directly() -> None:
    with pytest.raises(CheckpointError, match="root hash is 31 bytes"):
        Checkpoint(ORIGIN, 1, ROOT[:31])
    with pytest.raises(CheckpointError, match="outside"):
        Checkpoint(ORIGIN, -1, ROOT)
    with pytest.raises(CheckpointError, match="newline"):
        Checkpoint("a\nb", 1, ROOT)


_LINE = st.text(
    alphabet=st.characters(min_codepoint=0x20, codec="utf-8"),
    min_size=1,
    max_size=30,
)


@settings(max_examples=50, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_LINE, max_size=3),
)
def test_any_well_formed_checkpoint_round_trips_through_a_signed_note(
    size: int, root: bytes, extensions: list[str]
) -> None:
    signer = NoteSigner(ORIGIN)
    checkpoint = Checkpoint(ORIGIN, size, root, tuple(extensions))
    verified = Checkpoint.from_signed_note(signer.sign(checkpoint.to_note_text()), [signer.key])
    assert verified == checkpoint
