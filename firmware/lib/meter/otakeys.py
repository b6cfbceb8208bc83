"""Public keys that sign firmware updates (docs/ota.md, "Keys").

key id (the header's byte 5) -> RSA-3072 modulus, 384 bytes big-endian
(e = 65537). Up to a few at once, so that a key can be rotated: a release
signed with the new key that still lists the old one, then one that drops
it. `python3 tools/sign.py pubkey KEY.pem --id N` prints an entry.

Empty in the repository: no signing key is made yet (the private key never
enters the repository). With no key every update file is refused as
"signed with an unknown key".
"""

KEYS = {}
