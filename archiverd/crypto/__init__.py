"""Encryption at rest (opt-in: ARCHIVERD_ENCRYPTION_KEY_FILE): AEAD primitives (`aead`), the master
key file (`keyring`), per-segment data keys wrapped by the master key (`envelope`), key rotation
(`rotation`) and the paper backup (`paper`). No MongoDB, no segment format: the format code calls in.
"""
