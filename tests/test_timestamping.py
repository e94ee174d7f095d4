"""RFC 3161 client and verifier: verify on receipt, fail over, and fail closed (invariant 4).

Every TSA here is a real HTTP server on loopback: the local TSA, certomancer's TSA (tokens
made by other software, ECDSA, with an intermediate CA), and small scripted servers that
misbehave on purpose (foreign tokens, replays, errors, silence). No HTTP path is mocked.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import rfc3161_client
from asn1crypto import cms

from ledger.local_tsa import TSA_COMMON_NAME, LocalTimestampAuthority, LocalTsaServer
from ledger.timestamping import (
    TimestampClient,
    TimestampError,
    TimestampInvalid,
    TimestampToken,
    TimestampUnavailable,
    verify_timestamp,
)
from tests.pki import CertomancerTsa, start_certomancer_tsa

NOTE = b"evidence-ledger.example/log\n7\nq1bC0s3bWbq5JxQ3KkXbX7yLQ7q1bC0s3bWbq5JxQ3I=\n"

Answer = Callable[[bytes], tuple[int, bytes]]


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> LocalTimestampAuthority:
    return LocalTimestampAuthority.load_or_create(tmp_path_factory.mktemp("ts") / "tsa")


@pytest.fixture(scope="module")
def other_authority(tmp_path_factory: pytest.TempPathFactory) -> LocalTimestampAuthority:
    return LocalTimestampAuthority.load_or_create(tmp_path_factory.mktemp("ts-other") / "tsa")


@pytest.fixture(scope="module")
def local_tsa(authority: LocalTimestampAuthority) -> Iterator[LocalTsaServer]:
    with authority.serve() as server:
        yield server


@pytest.fixture(scope="module")
def certomancer_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertomancerTsa]:
    with start_certomancer_tsa(tmp_path_factory.mktemp("certomancer")) as running:
        yield running


@pytest.fixture
def client(authority: LocalTimestampAuthority, local_tsa: LocalTsaServer) -> TimestampClient:
    return TimestampClient([local_tsa.url], [authority.root_certificate], timeout=5)


def closed_port_url() -> str:
    """A loopback URL nothing listens on: bind a port, then let it go."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@contextmanager
def scripted_tsa(answer: Answer) -> Iterator[str]:
    """A TSA that answers every POST with ``answer(request body)``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, payload = answer(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            """A client that gave up (the timeout test) is expected; keep stderr clean."""

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def request_der(data: bytes) -> bytes:
    return (
        rfc3161_client.TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(rfc3161_client.HashAlgorithm.SHA256)
        .build()
        .as_bytes()
    )


def test_token_from_the_local_tsa_verifies_over_the_exact_bytes(
    client: TimestampClient, authority: LocalTimestampAuthority, local_tsa: LocalTsaServer
) -> None:
    token = client.timestamp(NOTE)

    assert token.tsa_url == local_tsa.url
    assert token.hash_algorithm == "sha256"
    assert token.gen_time.tzinfo is not None and token.gen_time.utcoffset() == timedelta(0)
    assert abs(token.gen_time - datetime.now(UTC)) < timedelta(seconds=5)
    assert f"CN={TSA_COMMON_NAME}" in token.tsa_name

    response = rfc3161_client.decode_timestamp_response(token.response_der)
    assert response.tst_info.message_imprint.message == hashlib.sha256(NOTE).digest()
    assert response.tst_info.serial_number == token.serial_number
    assert cms.ContentInfo.load(token.token_der)["content_type"].native == "signed_data"

    again = verify_timestamp(
        token.response_der, NOTE, [authority.root_certificate], tsa_url=token.tsa_url
    )
    assert again == token


def test_sha512_imprints_are_supported(
    authority: LocalTimestampAuthority, local_tsa: LocalTsaServer
) -> None:
    client = TimestampClient([local_tsa.url], [authority.root_certificate], hash_algorithm="sha512")
    token = client.timestamp(NOTE)
    assert token.hash_algorithm == "sha512"
    assert verify_timestamp(token.response_der, NOTE, [authority.root_certificate]).serial_number


def test_failover_skips_a_closed_port(
    authority: LocalTimestampAuthority, local_tsa: LocalTsaServer
) -> None:
    dead = closed_port_url()
    client = TimestampClient([dead, local_tsa.url], [authority.root_certificate], timeout=5)
    token = client.timestamp(NOTE)
    assert token.tsa_url == local_tsa.url


def test_all_tsas_down_raises_unavailable_and_yields_no_token(
    authority: LocalTimestampAuthority,
) -> None:
    dead = [closed_port_url(), closed_port_url()]
    client = TimestampClient(dead, [authority.root_certificate], timeout=2)
    token: TimestampToken | None = None
    with pytest.raises(TimestampUnavailable) as info:
        token = client.timestamp(NOTE)
    assert token is None
    assert [url for url, _ in info.value.failures] == dead
    assert all("unreachable" in reason for _, reason in info.value.failures)
    assert all(url in str(info.value) for url in dead)
    assert isinstance(info.value, TimestampError)


def test_a_token_for_other_data_is_rejected(
    authority: LocalTimestampAuthority, local_tsa: LocalTsaServer
) -> None:
    # A genuine, correctly signed token from a trusted TSA, but over different bytes.
    foreign = authority.respond(request_der(b"some other checkpoint"))
    with scripted_tsa(lambda _request: (200, foreign)) as malicious:
        client = TimestampClient([malicious], [authority.root_certificate])
        with pytest.raises(TimestampUnavailable) as info:
            client.timestamp(NOTE)
        assert "message imprint does not match" in info.value.failures[0][1]

        # And the next TSA in the list is asked instead.
        both = TimestampClient([malicious, local_tsa.url], [authority.root_certificate])
        assert both.timestamp(NOTE).tsa_url == local_tsa.url


def test_a_replayed_response_fails_the_nonce_check(authority: LocalTimestampAuthority) -> None:
    recorded: list[bytes] = []

    def replay(request: bytes) -> tuple[int, bytes]:
        if not recorded:
            recorded.append(authority.respond(request))
        return 200, recorded[0]

    with scripted_tsa(replay) as replaying:
        client = TimestampClient([replaying], [authority.root_certificate])
        first = client.timestamp(NOTE)  # genuine answer to this very request
        with pytest.raises(TimestampUnavailable) as info:
            client.timestamp(NOTE)  # same bytes, same imprint, but an old nonce
    assert first.response_der == recorded[0]
    assert "nonce does not match" in info.value.failures[0][1]


def test_a_tsa_outside_the_trust_roots_is_rejected(
    other_authority: LocalTimestampAuthority, local_tsa: LocalTsaServer
) -> None:
    client = TimestampClient([local_tsa.url], [other_authority.root_certificate])
    with pytest.raises(TimestampUnavailable) as info:
        client.timestamp(NOTE)
    reason = info.value.failures[0][1]
    assert "certificate path check failed" in reason
    assert "unable to get local issuer certificate" in reason


def test_tokens_from_certomancer_verify(certomancer_tsa: CertomancerTsa) -> None:
    """Our client against another implementation's TSA: ECDSA, and an intermediate CA."""
    client = TimestampClient([certomancer_tsa.url()], [certomancer_tsa.root_certificate])
    token = client.timestamp(NOTE)
    assert "CN=Test TSA" in token.tsa_name
    assert abs(token.gen_time - datetime.now(UTC)) < timedelta(seconds=5)
    assert (
        verify_timestamp(token.response_der, NOTE, [certomancer_tsa.root_certificate]).gen_time
        == token.gen_time
    )
    # The intermediate alone is not a trust root: the path must end at a self-signed root.
    with pytest.raises(TimestampInvalid):
        verify_timestamp(token.response_der, NOTE, [certomancer_tsa.intermediate_certificate])


def test_an_intermediate_missing_from_the_token_can_be_configured(
    certomancer_tsa: CertomancerTsa,
) -> None:
    root, interm = certomancer_tsa.root_certificate, certomancer_tsa.intermediate_certificate
    bare = certomancer_tsa.url("tsa-bare")
    with pytest.raises(TimestampUnavailable, match="unable to get local issuer certificate"):
        TimestampClient([bare], [root]).timestamp(NOTE)
    token = TimestampClient([bare], [root], intermediates=[interm]).timestamp(NOTE)
    assert verify_timestamp(token.response_der, NOTE, [root], intermediates=[interm])
    with pytest.raises(TimestampInvalid, match="unable to get local issuer certificate"):
        verify_timestamp(token.response_der, NOTE, [root])
    # An intermediate is not a trust anchor, however it is passed in.
    with pytest.raises(TimestampInvalid):
        verify_timestamp(token.response_der, NOTE, [interm], intermediates=[interm])


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        ("tsa-no-eku", "no extended key usage"),
        ("tsa-noncritical-eku", "extended key usage is not critical"),
    ],
)
def test_a_tsa_certificate_without_a_critical_time_stamping_eku_is_rejected(
    certomancer_tsa: CertomancerTsa, service: str, reason: str
) -> None:
    client = TimestampClient([certomancer_tsa.url(service)], [certomancer_tsa.root_certificate])
    with pytest.raises(TimestampUnavailable) as info:
        client.timestamp(NOTE)
    assert reason in info.value.failures[0][1]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda _r: (500, b"oops"), "HTTP 500"),
        (lambda _r: (503, b""), "HTTP 503"),
        (lambda _r: (200, b"<html>not a TSA</html>"), "not a DER TimeStampResp"),
        (lambda _r: (200, b""), "not a DER TimeStampResp"),
    ],
    ids=["500", "503", "html", "empty"],
)
def test_misbehaving_tsas_are_reported_and_skipped(
    authority: LocalTimestampAuthority, local_tsa: LocalTsaServer, answer: Answer, reason: str
) -> None:
    with scripted_tsa(answer) as bad:
        failing = TimestampClient([bad], [authority.root_certificate])
        with pytest.raises(TimestampUnavailable) as info:
            failing.timestamp(NOTE)
        assert reason in info.value.failures[0][1]
        recovering = TimestampClient([bad, local_tsa.url], [authority.root_certificate])
        assert recovering.timestamp(NOTE).tsa_url == local_tsa.url


def test_a_rejection_from_the_tsa_is_not_a_token(authority: LocalTimestampAuthority) -> None:
    with scripted_tsa(lambda _request: (200, authority.respond(b"junk"))) as rejecting:
        client = TimestampClient([rejecting], [authority.root_certificate])
        with pytest.raises(TimestampUnavailable) as info:
            client.timestamp(NOTE)
    assert "REJECTION" in info.value.failures[0][1]
    assert "not a DER TimeStampReq" in info.value.failures[0][1]


def test_a_silent_tsa_times_out(authority: LocalTimestampAuthority) -> None:
    release = threading.Event()

    def hang(_request: bytes) -> tuple[int, bytes]:
        release.wait(5)
        return 500, b""

    try:
        with scripted_tsa(hang) as silent:
            client = TimestampClient([silent], [authority.root_certificate], timeout=0.3)
            with pytest.raises(TimestampUnavailable) as info:
                client.timestamp(NOTE)
            assert "timed out" in info.value.failures[0][1]
            release.set()
    finally:
        release.set()


def test_verify_timestamp_detects_changed_data_and_tampering(
    client: TimestampClient, authority: LocalTimestampAuthority
) -> None:
    token = client.timestamp(NOTE)
    roots = [authority.root_certificate]
    assert verify_timestamp(token.response_der, NOTE, roots).serial_number == token.serial_number

    with pytest.raises(TimestampInvalid, match="message imprint does not match"):
        verify_timestamp(token.response_der, NOTE.replace(b"7", b"8"), roots)

    tampered = bytearray(token.response_der)
    tampered[-1] ^= 0x01  # last byte of the RSA signature
    with pytest.raises(TimestampInvalid, match="signature or certificate path check failed"):
        verify_timestamp(bytes(tampered), NOTE, roots)

    with pytest.raises(TimestampInvalid, match="not a DER TimeStampResp"):
        verify_timestamp(token.response_der[:-10], NOTE, roots)
    with pytest.raises(TimestampInvalid, match="REJECTION"):
        verify_timestamp(authority.respond(b"junk"), NOTE, roots)


def test_constructor_refuses_unusable_settings(authority: LocalTimestampAuthority) -> None:
    roots = [authority.root_certificate]
    with pytest.raises(ValueError, match="at least one TSA URL"):
        TimestampClient([], roots)
    with pytest.raises(TypeError):
        TimestampClient("http://tsa.example/", roots)
    with pytest.raises(ValueError, match="http"):
        TimestampClient(["file:///etc/passwd"], roots)
    with pytest.raises(ValueError, match="credentials"):
        TimestampClient(["https://user:secret@tsa.example/"], roots)
    with pytest.raises(ValueError, match="trust root"):
        TimestampClient(["https://tsa.example/"], [])
    with pytest.raises(ValueError, match="unsupported hash"):
        TimestampClient(["https://tsa.example/"], roots, hash_algorithm="sha1")
    with pytest.raises(ValueError, match="empty"):
        TimestampClient(["https://tsa.example/"], roots).timestamp(b"")


def test_query_strings_stay_out_of_tokens_and_messages(
    authority: LocalTimestampAuthority, local_tsa: LocalTsaServer
) -> None:
    dead = closed_port_url() + "?apikey=s3cret"
    with_key = local_tsa.url + "?apikey=s3cret"
    client = TimestampClient([dead, with_key], [authority.root_certificate])
    token = client.timestamp(NOTE)
    assert token.tsa_url == local_tsa.url
    with pytest.raises(TimestampUnavailable) as info:
        TimestampClient([dead], [authority.root_certificate]).timestamp(NOTE)
    assert "s3cret" not in str(info.value)


def test_the_client_can_be_pointed_at_a_token_file_workflow(
    client: TimestampClient, authority: LocalTimestampAuthority, tmp_path: Path
) -> None:
    """A stored .tsr (the whole TimeStampResp) is enough to verify later, offline."""
    token = client.timestamp(NOTE)
    stored = tmp_path / "checkpoint.tsr"
    stored.write_bytes(token.response_der)
    reloaded = verify_timestamp(stored.read_bytes(), NOTE, [authority.root_certificate])
    assert (reloaded.gen_time, reloaded.serial_number) == (token.gen_time, token.serial_number)
