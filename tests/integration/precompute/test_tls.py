"""Publish and read over TLS (memcached built with -Z), verifying the server's certificate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_mlp.precompute import CacheError, CacheReader, MemcachedOptions, publish
from tests.support.memcached import MemcachedProcess

pytestmark = pytest.mark.integration


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o644)  # memcached drops root privileges before reading it
    return cert_file, key_file


def test_publish_and_read_over_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    tmp_path.chmod(0o755)
    with MemcachedProcess(args=("-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}")) as server:
        options = MemcachedOptions.resolve(server.address, tls=True, tls_ca_file=str(cert))
        table = pa.table({"k": [f"key-{i}" for i in range(5_000)], "v": list(range(5_000))})
        result = publish(table, key="k", namespace="tls", options=options, batch_rows=1_000)
        assert result.rows == 5_000
        with CacheReader("tls", options=options) as reader:
            assert reader.get_many(["key-7", "key-4999"]) == {"key-7": {"v": 7}, "key-4999": {"v": 4999}}
        with pytest.raises(CacheError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            publish(table, key="k", namespace="tls", options=MemcachedOptions.resolve(server.address, tls=True))
