"""meter.crypto, the boundary shims and the pinned device libraries, under MicroPython.

Known answers are the published RFC vectors (RFC 2202, 4231, 4226, 6238),
as listed in shared/notes/security.md section 3.
"""

from binascii import hexlify, unhexlify

from upytest import raises

from meter import crypto

SEED = b"12345678901234567890"  # RFC 4226 / RFC 6238 SHA1 seed
SEED32 = b"1234567890" * 3 + b"12"  # RFC 6238 SHA256 seed

LONG_DATA = (b"This is a test using a larger than block-size key and a larger than "
             b"block-size data. The key needs to be hashed before being used by "
             b"the HMAC algorithm.")

# (key, data, hex digest) for RFC 2202 HMAC-SHA-1 TC1-7
RFC2202 = [
    (b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
    (b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    (b"\xaa" * 20, b"\xdd" * 50, "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
    (bytes(range(1, 26)), b"\xcd" * 50, "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
    (b"\x0c" * 20, b"Test With Truncation", "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
    (b"\xaa" * 80, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "aa4ae5e15272d00e95705637ce8a3b55ed402112"),
    (b"\xaa" * 80, b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
     "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"),
]

# RFC 4231 HMAC-SHA-256 TC1-7 (TC5 is compared on its first 128 bits)
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, LONG_DATA,
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


def _hex(b):
    return hexlify(b).decode()


def test_hmac_sha1_rfc2202():
    for i, (key, data, want) in enumerate(RFC2202):
        got = _hex(crypto.hmac_digest(key, data, "sha1"))
        assert got == want, "RFC 2202 TC%d: %s" % (i + 1, got)


def test_hmac_sha256_rfc4231():
    for i, (key, data, want) in enumerate(RFC4231):
        got = _hex(crypto.hmac_digest(key, data))  # sha256 is the default
        if i == 4:  # TC5: truncated to 128 bits
            got = got[:32]
        assert got == want, "RFC 4231 TC%d: %s" % (i + 1, got)


def test_hmac_bytes_like_inputs():
    want = crypto.hmac_digest(b"Jefe", b"what do ya want for nothing?")
    assert crypto.hmac_digest(bytearray(b"Jefe"), memoryview(b"what do ya want for nothing?")) == want


def test_hmac_zero_padding_semantics():
    # RFC 2104: keys shorter than the block are zero-padded, so b"" and b"\0"
    # give the same MAC, while a key longer than the block is hashed first.
    assert crypto.hmac_digest(b"", b"x") == crypto.hmac_digest(b"\x00", b"x")
    assert crypto.hmac_digest(b"k", b"x") != crypto.hmac_digest(b"K", b"x")


def test_hmac_uses_pinned_module():
    import sys

    crypto.hmac_digest(b"k", b"m")  # loads hmac on first use
    hmac = sys.modules["hmac"]
    assert hmac.__file__.endswith("build/lib/hmac.py"), hmac.__file__


def test_hash_adapter():
    import hashlib
    for algo in ("sha1", "sha256", "md5"):
        h = crypto._digestmod(algo)(b"abc")
        ref = getattr(hashlib, algo)(b"abcdef").digest()
        c = h.copy()
        c.update(b"def")
        assert h.digest() == getattr(hashlib, algo)(b"abc").digest()  # copy is independent
        assert h.digest() == h.digest()  # digest() does not finalise
        assert c.digest() == ref and c.hexdigest() == _hex(ref)
        assert len(ref) == c.digest_size and c.name == algo and c.block_size == 64
    raises(ValueError, crypto.hmac_digest, b"k", b"m", "sha3_256")
    raises(ValueError, crypto.hmac_digest, b"k", b"m", "nope")


def test_compare_digest_truth_table():
    cd = crypto.compare_digest
    x = bytes(range(32))
    cases = [
        (x, bytes(x), True),
        (b"", b"", True),
        (b"\x01" + x[1:], x, False),   # first byte differs
        (x[:-1] + b"\xff", x, False),  # last byte differs
        (x[:-1], x, False),            # prefix (shorter)
        (x + b"\x00", x, False),       # longer
        (b"", x, False),
        (x, b"", False),
        (bytearray(x), x, True),
        (memoryview(x), bytearray(x), True),
        ("abc123", "abc123", True),
        ("abc123", "abc124", False),
        ("", "", True),
    ]
    for a, b, want in cases:
        assert cd(a, b) is want, (a, b, want)
    raises(TypeError, cd, "abc", b"abc")
    raises(TypeError, cd, b"abc", "abc")


def test_hotp_rfc4226_appendix_d():
    want = ["755224", "287082", "359152", "969429", "338314",
            "254676", "287922", "162583", "399871", "520489"]
    assert [crypto.hotp(SEED, c) for c in range(10)] == want


def test_totp_rfc6238_appendix_b():
    rows = [  # time, SHA1, SHA256 (8 digits)
        (59, "94287082", "46119246"),
        (1111111109, "07081804", "68084774"),
        (1111111111, "14050471", "67062674"),
        (1234567890, "89005924", "91819424"),
        (2000000000, "69279037", "90698825"),
        (20000000000, "65353130", "77737706"),  # T = 0x27BC86AA; time > 32 bits
    ]
    for t, sha1, sha256 in rows:
        assert crypto.totp(SEED, t, digits=8) == sha1, t
        assert crypto.totp(SEED32, t, digits=8, algo="sha256") == sha256, t
        assert crypto.totp(SEED, t) == sha1[-6:], t  # 6 digits: the last six
        assert crypto.totp(SEED, float(t) + 0.5, digits=8) == sha1  # time.time() floats


def test_totp_counter_beyond_32_bits():
    # T itself past 2**32 (step 1) must equal HOTP with the same 64-bit counter,
    # and differ from the value of the counter truncated to 32 bits.
    t = (1 << 32) + 5
    assert crypto.totp(SEED, t, step=1, digits=8) == crypto.hotp(SEED, t, 8)
    assert crypto.hotp(SEED, t, 8) != crypto.hotp(SEED, 5, 8)
    assert len(crypto.hotp(SEED, (1 << 64) - 1, 8)) == 8


def test_totp_t0_and_step():
    assert crypto.totp(SEED, 1000 + 59, t0=1000, digits=8) == "94287082"
    assert crypto.totp(SEED, 118, step=60, digits=8) == "94287082"
    raises(ValueError, crypto.totp, SEED, 10, 30, 6, 100)  # before t0
    raises(ValueError, crypto.totp, SEED, 10, 0)


def test_hotp_argument_checks():
    raises(ValueError, crypto.hotp, SEED, -1)
    raises(ValueError, crypto.hotp, SEED, 1 << 64)
    raises(ValueError, crypto.hotp, SEED, 0, 5)
    raises(ValueError, crypto.hotp, SEED, 0, 11)
    assert len(crypto.hotp(SEED, 0, 10)) == 10


def test_warnings_shim_harmless():
    import warnings
    warnings.warn("test", None, 2)  # the call hmac makes: category None
    warnings.warn("test", RuntimeError)


def test_device_libs_import():
    import umqtt.simple
    import umqtt.robust
    import microdot
    import microdot.websocket
    import microdot.sse
    import microdot.cors
    import microdot.csrf
    import microdot.auth
    import microdot.multipart
    assert microdot.__version__ == "2.7.0"
    assert issubclass(umqtt.robust.MQTTClient, umqtt.simple.MQTTClient)
    for m in (umqtt.simple, umqtt.robust, microdot):
        assert "build/lib/" in m.__file__, m.__file__


def test_microdot_serves_a_request():
    import asyncio
    from microdot import Microdot
    from microdot.test_client import TestClient

    app = Microdot()

    @app.route("/x/<int:n>")
    async def x(request, n):
        return {"n": n + 1}

    async def go():
        client = TestClient(app)
        r = await client.get("/x/41")
        assert r.status_code == 200, r.status_code
        assert r.json == {"n": 42}, r.json
        r = await client.get("/missing")
        assert r.status_code == 404

    asyncio.run(go())


def test_ussl_refuses_to_wrap_insecurely():
    import socket
    import ussl

    ca = b"not a real CA, never parsed: wrap_socket must refuse first"
    s = socket.socket()
    try:
        e = raises(ValueError, ussl.wrap_socket, s)  # no CA at all
        assert "CA" in str(e)
        raises(ValueError, ussl.wrap_socket, s, server_hostname="broker")  # still no CA
        raises(ValueError, ussl.wrap_socket, s, cadata=b"", server_hostname="broker")
        raises(ValueError, ussl.wrap_socket, s, cadata=ca)  # no hostname
        import ssl
        for reqs in (ssl.CERT_NONE, ssl.CERT_OPTIONAL):
            raises(ValueError, ussl.wrap_socket, s, cadata=ca, server_hostname="broker",
                   cert_reqs=reqs)
        raises(ValueError, ussl.wrap_socket, s, cadata=ca, server_hostname="broker",
               cert=b"cert without key")
        raises(ValueError, ussl.wrap_socket, s, cadata=ca, server_hostname="broker",
               server_side=True)
    finally:
        s.close()


def test_ussl_keeps_der_whole_and_converts_one_pem_block():
    # A DER certificate or key ends in a signature's or a key's random
    # byte: one time in 40 that is a space, tab or newline code, which a
    # strip() cut off (an "invalid cert" on the device, 1 test run in 10).
    import ussl
    from binascii import b2a_base64

    for last in b" \t\n\x0b\x0c\r\x00\xff":
        der = b"\x30\x04\x04\x02\x41" + bytes([last])
        assert ussl._der(der, "x") == der, last
        assert ussl._der(bytearray(der), "x") == der, last
    der = b"\x30\x04\x04\x02\x41\x20"
    pem = b"\n-----BEGIN CERTIFICATE-----\n" + b2a_base64(der) + b"-----END CERTIFICATE-----\n\n"
    assert ussl._der(pem, "x") == der
    assert ussl._der(pem.decode(), "x") == der
    raises(ValueError, ussl._der, pem + pem, "x")  # one block only
    raises(ValueError, ussl._der, b"", "x")


def _listen():
    import random
    import socket
    for _ in range(50):
        port = random.randint(20000, 60000)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            s.listen(1)
            return s, port
        except OSError:
            s.close()
    raise OSError("no free port")


def test_umqtt_tls_without_ca_is_refused():
    # umqtt.simple's own `import ussl` reaches the shim, which refuses to
    # connect unverified when the application forgot the CA.
    from umqtt.simple import MQTTClient

    srv, port = _listen()
    try:
        c = MQTTClient("meter-test", "127.0.0.1", port, ssl=True,
                       ssl_params={"server_hostname": "broker"})
        e = raises(ValueError, c.connect)
        assert "CA" in str(e)
        c.sock.close()
    finally:
        srv.close()
