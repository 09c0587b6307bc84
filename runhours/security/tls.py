"""A small local certificate authority: the broker's server certificate and client
certificates for mutual TLS (the certificate's common name is the broker user name).

Keys are ECDSA P-256; certificates are X.509 v3 with the extensions a TLS client checks
(subject alternative names, key usage, extended key usage). Keys are written 0600.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runhours.security.errors import SecurityError
from runhours.security.files import write_private

CA_DAYS = 3650
CERT_DAYS = 825  # what browsers and most TLS stacks accept for a leaf certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "runhours"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as written."""

    cert: Path
    key: Path


class CertificateAuthority:
    """The CA in ``ca.pem`` / ``ca.key`` (created by ``create``)."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file

    @property
    def exists(self) -> bool:
        return self.cert_file.exists() and self.key_file.exists()

    @classmethod
    def create(
        cls, cert_file: Path, key_file: Path, name: str = "runhours local CA"
    ) -> CertificateAuthority:
        key = _key()
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        write_private(key_file, _pem_key(key), mode=0o600)
        write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return cls(cert_file, key_file)

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SecurityError(f"{self.key_file}: not an EC key")
        return cert, key

    def issue(
        self,
        common_name: str,
        cert_file: Path,
        key_file: Path,
        *,
        server_names: list[str] | None = None,
        client: bool = False,
        key_mode: int = 0o600,
    ) -> Issued:
        """A leaf certificate for a server (``server_names``: DNS names and IP addresses
        it answers on) or a client (``client``: CN = its broker user name)."""
        ca_cert, ca_key = self._load()
        key = _key()
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        usages = []
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                critical=False,
            )
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write_private(key_file, _pem_key(key), mode=key_mode)
        write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return Issued(cert_file, key_file)

    def write_crl(self, serials: list[int], crl_file: Path) -> Path:
        """The certificate revocation list: the certificates with these serial numbers."""
        ca_cert, ca_key = self._load()
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + timedelta(days=CA_DAYS))
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(ca_key, hashes.SHA256())
        write_private(crl_file, crl.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return crl_file


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def read_certificate(cert_file: Path) -> tuple[str, int]:
    """The subject's common name and the serial number of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    [attribute] = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value), cert.serial_number
