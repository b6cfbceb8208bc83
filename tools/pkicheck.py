"""Host-side checks of what `tools/flash.py provision` puts on a meter,
before anything is sent: certificates parse, the private key parses and
belongs to the client certificate, the key is the P-256 EC key the
uplink's TLS expects (meter/mqttlink.py), the TOTP secret is base32 of at
least 128 bits.

Uses the `cryptography` package, which is in .venv as a dependency of
esptool (espsecure needs it); nothing is added for this.
"""

import base64
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

MIN_TOTP_BYTES = 16  # = meter/cloudcmd.py MIN_SECRET_BYTES (RFC 4226, section 4)


class PkiError(ValueError):
    """Input that must not be provisioned; the message says why."""


def read_text(path, what):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PkiError("%s: cannot read %s: %s" % (what, path, e.strerror))
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise PkiError("%s: %s is not PEM text" % (what, path))


def certificates(text, what):
    """Parse every certificate in a PEM file (at least one)."""
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError as e:
        raise PkiError("%s: not a valid PEM certificate (%s)" % (what, e))
    if len(certs) != 1:  # meter/mqttlink.py converts one PEM block
        raise PkiError("%s: %d certificates in the file; the meter reads exactly one"
                       % (what, len(certs)))
    now = datetime.datetime.now(datetime.timezone.utc)
    for c in certs:
        if c.not_valid_after_utc < now:
            raise PkiError("%s: certificate %s expired on %s" % (
                what, c.subject.rfc4514_string(), c.not_valid_after_utc.date()))
    return certs


def key_matches(cert_text, key_text):
    """Refuse a key that does not parse, is encrypted, is not P-256, or does
    not belong to the certificate (compares the public keys)."""
    cert = certificates(cert_text, "client certificate")[0]
    try:
        key = serialization.load_pem_private_key(key_text.encode(), password=None)
    except TypeError:
        raise PkiError("client key: encrypted with a passphrase; the meter needs it plain "
                       "(it is protected on the device by flash encryption, docs/flashing.md)")
    except ValueError as e:
        raise PkiError("client key: not a valid PEM private key (%s)" % e)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PkiError("client key: the meter's TLS uses EC P-256 keys")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
        raise PkiError("client key: does not belong to the client certificate (%s)"
                       % cert.subject.rfc4514_string())
    return cert


def totp_secret(text=None):
    """(base32 text, newly made?): checks a given secret, else makes 160 bits."""
    if text is None:
        return base64.b32encode(os.urandom(20)).decode().rstrip("="), True
    t = text.strip().upper().replace(" ", "")
    try:
        raw = base64.b32decode(t + "=" * (-len(t) % 8))
    except ValueError:
        raise PkiError("TOTP secret: not base32")
    if len(raw) < MIN_TOTP_BYTES:
        raise PkiError("TOTP secret: %d bytes, at least %d needed" % (len(raw), MIN_TOTP_BYTES))
    return t.rstrip("="), False


def otpauth_uri(secret, serial, issuer="Meter"):
    """The URI an authenticator app reads (as a QR code): TOTP-SHA1, 6
    digits, 30 s, as meter/cloudcmd.py checks."""
    return "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=6&period=30" % (
        issuer, serial, secret, issuer)
