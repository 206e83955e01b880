"""Issue 18, item 7: a renewed certificate is served without a restart. The server reads its
`[tls]` files again when they change (checked periodically, and at once on SIGHUP): new
connections get the new certificate, streams already open go on; files that do not load (a
half-written renewal) leave the previous pair served, with a warning."""

import asyncio
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import PASSWORD, own_server
from harness import Account, Env, Target

pytestmark = pytest.mark.starling_only


def issue(directory, name: str) -> tuple:
    """A self-signed certificate for localhost and its key, as PEM files."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=localhost/O={name}",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def replace(source, target) -> None:
    """Swaps `target` for a copy of `source` in one rename, as a Secret volume update does."""
    staged = target.with_suffix(".new")
    staged.write_bytes(source.read_bytes())
    os.replace(staged, target)


def served_fingerprint(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["xmpp-client"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def fingerprint(cert) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()


async def until_served(port: int, expected: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (served := await asyncio.to_thread(served_fingerprint, port)) != expected:
        assert time.monotonic() < deadline, f"still serving {served}"
        await asyncio.sleep(0.2)


async def test_a_renewed_certificate_is_served_without_a_restart(workdir):
    tls_dir = workdir / "reload-tls"
    tls_dir.mkdir(exist_ok=True)
    first, second = issue(tls_dir, "first"), issue(tls_dir, "second")
    cert, key = tls_dir / "served.crt", tls_dir / "served.key"
    replace(first[0], cert)
    replace(first[1], key)
    # SIGHUP only: the periodic check would make the test's timing depend on it.
    tls = f'cert_file = "{cert}"\nkey_file = "{key}"\nreload_check_seconds = 0'
    with own_server(workdir, "reload", "", ("ralice",), PASSWORD, tls=tls) as server:
        env = Env(Target("starling", server.endpoint, []))
        assert await asyncio.to_thread(served_fingerprint, server.tls_port) == fingerprint(first[0])
        alice = await env.online(Account("ralice", PASSWORD, server.domain))

        replace(second[1], key)
        replace(second[0], cert)
        server.proc.send_signal(signal.SIGHUP)
        await until_served(server.tls_port, fingerprint(second[0]))
        assert "TLS certificate reloaded" in server.log_since(0)
        # The stream opened before goes on.
        assert (await alice.iq("<ping xmlns='urn:xmpp:ping'/>", to=server.domain)).get("type") == "result"

        cert.write_text("-----BEGIN CERTIFICATE-----\nhalf a renewal")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "do not load" not in server.log_since(0):
            assert time.monotonic() < deadline, "no warning about the files that do not load"
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(served_fingerprint, server.tls_port) == fingerprint(second[0])
        assert server.alive()
