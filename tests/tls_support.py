"""Certificates for the TLS tests, made with `cryptography`: a CA, server and client certificates it signs, an
expired server certificate, and a second CA that signed nothing the server trusts."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    return path


@dataclass(frozen=True)
class Authority:
    """A CA: its key and self-signed certificate, written as `<name>.pem` / `<name>.key`."""

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    pem: Path

    @classmethod
    def create(cls, folder: Path, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        pem = folder / f"{name}.pem"
        pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key, folder / f"{name}.key")
        return cls(name, key, certificate, pem)

    def issue(self, folder: Path, name: str, *, client: bool = False, expired: bool = False) -> tuple[Path, Path]:
        """`<name>.pem` and `<name>.key`: a leaf for localhost and 127.0.0.1 (a server's, or a client's)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = (now - 10 * DAY, now - DAY) if expired else (now - DAY, now + 30 * DAY)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        certificate = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.certificate.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        pem = folder / f"{name}.pem"
        pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return pem, _write_key(key, folder / f"{name}.key")


@dataclass(frozen=True)
class Certificates:
    """Everything the TLS tests use, in one folder."""

    folder: Path
    ca: Path  # the CA that signed server, renewed, client and expired
    other_ca: Path  # a CA that signed `stranger`
    server: tuple[Path, Path]
    renewed: tuple[Path, Path]  # a second server certificate, to replace the first
    expired: tuple[Path, Path]  # a server certificate past its end
    client: tuple[Path, Path]
    expired_client: tuple[Path, Path]
    stranger: tuple[Path, Path]  # a client certificate from the other CA

    @classmethod
    def create(cls, folder: Path) -> Certificates:
        folder.mkdir(parents=True, exist_ok=True)
        ca, other = Authority.create(folder, "ca"), Authority.create(folder, "other-ca")
        return cls(
            folder, ca.pem, other.pem, ca.issue(folder, "server"), ca.issue(folder, "renewed"),
            ca.issue(folder, "expired", expired=True), ca.issue(folder, "client", client=True),
            ca.issue(folder, "expired-client", client=True, expired=True), other.issue(folder, "stranger", client=True),
        )  # fmt: skip


def serial_of(pem: bytes) -> int:
    """The serial number of a PEM certificate (which of two certificates a server presented)."""
    return x509.load_pem_x509_certificate(pem).serial_number
