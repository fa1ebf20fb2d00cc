"""``rediss://`` with an ACL user, as a managed Redis serves it: a redis-server over TLS only (a
throwaway CA made here), whose default user is off and whose ``deskgate`` user has the ACL
docs/operations.md recommends. The store's client and the Celery broker (producing and
consuming) both work through it; a wrong password or an unknown CA is refused."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import AuthenticationError, ConnectionError

from connectors.registry import load_settings
from tests.conftest import TEST_CHAIN, settings_data
from tests.redis_servers import RedisProcess
from worker.celery_app import make_celery
from worker.dispatch import SWEEP
from worker.lifecycle.store import Store
from worker.redis_client import connect

PASSWORD = "tls-acl-test-password-0123456789"
# docs/operations.md, "Redis in production": every key and channel, every command but the
# dangerous ones (FLUSHALL, KEYS, CONFIG, DEBUG, ...), plus INFO for `deskgate doctor`.
ACL = f"deskgate on >{PASSWORD} ~* &* +@all -@dangerous +info"


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that signed nothing here


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    where = tmp_path_factory.mktemp("pki")
    ca_key, server_key, other_key = _key(), _key(), _key()
    ca = _cert("Deskgate test CA", ca_key, "Deskgate test CA", ca_key, ca=True)
    server = _cert("127.0.0.1", server_key, "Deskgate test CA", ca_key, ca=False)
    other = _cert("Someone else's CA", other_key, "Someone else's CA", other_key, ca=True)
    key = where / "server.key"
    key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    return Pki(
        _pem(where / "ca.pem", ca), _pem(where / "server.pem", server), key,
        _pem(where / "other-ca.pem", other),
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    tls = ["--tls-cert-file", str(pki.cert), "--tls-key-file", str(pki.key),
           "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no"]  # fmt: skip
    process = RedisProcess(
        tmp_path_factory.mktemp("redis-tls"),
        [*tls, "--user", "default", "off", "--user", *ACL.split()],
        tls=True,
        ssl=True,
        ssl_ca_certs=str(pki.ca),
        username="deskgate",
        password=PASSWORD,
    )
    yield process
    process.stop()


def url(server: RedisProcess, ca: Path, password: str = PASSWORD) -> str:
    return (
        f"rediss://deskgate:{password}@127.0.0.1:{server.port}/0"
        f"?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    )


def test_the_store_works_over_tls_as_an_acl_user(server: RedisProcess, pki: Pki) -> None:
    settings = load_settings(**settings_data(redis_url=url(server, pki.ca)))
    redis = connect(settings.redis_url, blocking=True, max_connections=4, timeout=5)
    try:
        store = Store(redis, "dgtls", 3600, chain=TEST_CHAIN)
        store.record_sweep(1234.0)  # a Lua script: EVALSHA and SCRIPT LOAD are allowed
        assert store.last_sweep() == 1234.0
        assert redis.info("server")["redis_version"]  # what `deskgate doctor` reads
    finally:
        redis.close()


def test_the_broker_produces_and_consumes_over_tls_as_an_acl_user(
    server: RedisProcess, pki: Pki
) -> None:
    settings = load_settings(**settings_data(redis_url=url(server, pki.ca), queue="dg-tls"))
    app = make_celery(settings)
    try:
        app.send_task(SWEEP, args=[1.0])
        with app.connection_for_read() as connection:
            queue = connection.SimpleQueue("dg-tls")
            message = queue.get(timeout=10)
            assert message.headers["task"] == SWEEP
            message.ack()  # the transport's unacked index, as a worker's late ack
            queue.close()
    finally:
        app.close()


def test_a_wrong_password_or_an_unknown_ca_is_refused(server: RedisProcess, pki: Pki) -> None:
    with pytest.raises(AuthenticationError):
        connect(url(server, pki.ca, password="not-the-password-at-all")).ping()
    with pytest.raises(ConnectionError, match="certificate verify failed"):
        connect(url(server, pki.other_ca)).ping()
    plain = f"redis://deskgate:{PASSWORD}@127.0.0.1:{server.port}/0"
    with pytest.raises(ConnectionError):
        connect(plain, socket_timeout=2).ping()  # TLS only: no plain-text port
