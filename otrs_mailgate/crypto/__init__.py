"""OpenPGP and S/MIME (issue 29): the queues' keys and the customers' public keys and
certificates (keyring.py), and mail unwrapped into what it says (unwrap.py). GnuPG
itself does the OpenPGP work (through python-gnupg), OpenSSL the S/MIME work; nothing
cryptographic is written here."""
