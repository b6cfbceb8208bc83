"""A throw-away test PKI made with the `openssl` command (EC P-256).

    make(dir, device_cn) -> Pki   (paths of every file below)

server-ca    signs the broker's certificates (the device trusts only it)
client-ca    signs client certificates (the broker trusts only it)
other-ca     an unrelated CA: "wrong CA" and rogue clients
broker       CN broker.test; SAN broker.test, localhost, IP 127.0.0.1 (for paho)
expired      broker.test, valid Jan 2020 only
device       CN = the device's serial (mosquitto: user name = CN)
cloud        CN cloud: the test's paho client
rogue        CN = the device's serial, but signed by other-ca

Private keys are left 0600 in a private directory (the broker is started
so that it can read them: see mqttlab.Mosquitto).
"""

import os
import subprocess

DAYS = "3"


class Pki:
    def __init__(self, d):
        self.dir = d

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()


def _ssl(d, *args):
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)


def _key_csr(d, name, cn):
    _ssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)


def _ca(d, name):
    _ssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", name + ".key", "-out", name + ".crt", "-days", DAYS, "-subj", "/CN=" + name,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _sign(d, name, ca, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext + "\n")
    _ssl(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
         "-CAcreateserial", "-out", name + ".crt", "-days", DAYS, "-extfile", name + ".ext")


SERVER_EXT = "subjectAltName=DNS:broker.test,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
CLIENT_EXT = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth"


def _expired(d):
    """broker.test certificate valid only in January 2020 (`openssl ca`
    takes explicit dates, `x509 -req` does not)."""
    _key_csr(d, "expired", "broker.test")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n"
                "serial = serial\ndefault_md = sha256\npolicy = p\n"
                "x509_extensions = e\n[p]\ncommonName = supplied\n"
                "[e]\nsubjectAltName = DNS:broker.test\n")
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    _ssl(d, "ca", "-batch", "-config", "ca.cnf", "-cert", "server-ca.crt", "-keyfile",
         "server-ca.key", "-in", "expired.csr", "-out", "expired.crt", "-notext",
         "-startdate", "20200101000000Z", "-enddate", "20200201000000Z")


def make(d, device_cn):
    os.makedirs(d, exist_ok=True)
    for ca in ("server-ca", "client-ca", "other-ca"):
        _ca(d, ca)
    _key_csr(d, "broker", "broker.test")
    _sign(d, "broker", "server-ca", SERVER_EXT)
    _expired(d)
    for name, cn, ca in (("device", device_cn, "client-ca"), ("cloud", "cloud", "client-ca"),
                         ("rogue", device_cn, "other-ca")):
        _key_csr(d, name, cn)
        _sign(d, name, ca, CLIENT_EXT)
    return Pki(d)
