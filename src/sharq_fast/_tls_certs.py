"""Throw-away TLS files for a private redis-server: a CA and a server certificate it signs
(valid for 127.0.0.1 and localhost, one day).

Made with the `cryptography` package (in the `test` extra) when it is installed, else with
the `openssl` command.
"""

import datetime
import ipaddress
import os
import shutil
import subprocess
from typing import NamedTuple


class TlsFiles(NamedTuple):
    """Paths of the PEM files: the CA certificate, the server certificate and its key."""

    ca_cert: str
    cert: str
    key: str


def make_tls_files(directory: str) -> TlsFiles:
    """Write a fresh CA and a server certificate signed by it into `directory`."""
    files = TlsFiles(
        os.path.join(directory, "ca.crt"), os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")
    )
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _with_openssl(directory, files)
    else:
        _with_cryptography(files)
    return files


def _with_cryptography(files: TlsFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sharq-fast test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    with open(files.ca_cert, "wb") as f:
        f.write(ca_cert.public_bytes(pem))
    with open(files.cert, "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(files.key, "wb") as f:
        f.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


def _with_openssl(directory: str, files: TlsFiles) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("TLS needs the `cryptography` package (pip install cryptography) or the openssl command")
    ca_key = os.path.join(directory, "ca.key")
    csr = os.path.join(directory, "server.csr")
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", files.ca_cert, "-days", "1",
         "-subj", "/CN=sharq-fast test CA"],
        [openssl, "req", *ec, "-keyout", files.key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, "-CA", files.ca_cert, "-CAkey", ca_key, "-CAcreateserial",
         "-out", files.cert, "-days", "1", "-extfile", ext],
    ]
    for argv in steps:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"openssl failed: {done.stdout.decode('utf-8', 'replace')[-2000:]}")
