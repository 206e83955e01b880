"""Federation helpers: certificates from a test CA ([`make_ca`], also used by
loadtest/scripts/s2s-idle-streams.py), and Prosody (the Debian package) as a federation peer of a
Starling under test ([`prosody`]), each on its own loopback address with s2s on port 5269 there —
where a server finds another when DNS has no SRV record. Prosody resolves the names from a hosts
file of the test's own (libunbound's `hoststxt`), Starling from `[s2s] hosts`; the machine's
resolver is untouched. Their certificates are self-signed, so they authenticate each other by
dialback."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

# Each server's loopback address; its conference service resolves there too.
ADDRESSES = {"starling.test": "127.0.0.21", "prosody.test": "127.0.0.22"}
S2S_PORT = 5269


def hosts_file(directory: Path) -> Path:
    path = directory / "hosts"
    lines = [f"{ip} {domain} conference.{domain}" for domain, ip in ADDRESSES.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def self_signed(directory: Path, domain: str) -> tuple[Path, Path]:
    cert, key = directory / f"{domain}.crt", directory / f"{domain}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain},DNS:*.{domain}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def make_ca(directory: Path, domains: tuple[str, ...]) -> Path:
    """A CA, and a certificate for each of `domains` (and its subdomains) signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=Federation Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", "-keyout", str(ca_key), "-out", str(ca))
    for domain in domains:
        key, csr, cert, ext = (directory / f"{domain}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
        ext.write_text(f"subjectAltName=DNS:{domain},DNS:*.{domain}\nextendedKeyUsage=serverAuth,clientAuth\n"
                       "basicConstraints=CA:FALSE\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={domain}",
                "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
                "-extfile", str(ext), "-out", str(cert))
    return ca


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-4000:] if log.exists() else ''}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{host}:{port} not up in {timeout}s:\n{log.read_text()[-4000:] if log.exists() else ''}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


PROSODY_CONFIG = """
run_as_root = true
daemonize = false
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ debug = "{dir}/prosody.log" }}
network_backend = "epoll"
plugin_paths = {{ }}
interfaces = {{ "{ip}" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
legacy_ssl_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
unbound = {{ hoststxt = "{hosts}" }}
certificates = "{dir}/certs"
ssl = {{ certificate = "{dir}/certs/prosody.test.crt", key = "{dir}/certs/prosody.test.key" }}
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{
  "roster"; "saslauth"; "tls"; "dialback"; "disco"; "vcard"; "mam"; "ping"; "offline"; "s2s_bidi";
}}
default_archive_policy = true
VirtualHost "prosody.test"
Component "conference.prosody.test" "muc"
  modules_enabled = {{ "muc_mam" }}
"""


@contextlib.contextmanager
def prosody(directory: Path, c2s_port: int, users: dict[str, str]):
    """Prosody serving prosody.test (and conference.prosody.test) with `users` (name → password)."""
    if not shutil.which("prosody"):
        raise RuntimeError("prosody is not installed (scripts/test installs it: apt-get install prosody lua-unbound)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "certs").mkdir(exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    self_signed(directory / "certs", "prosody.test")
    config = directory / "prosody.cfg.lua"
    config.write_text(PROSODY_CONFIG.format(dir=directory, ip=ADDRESSES["prosody.test"], c2s=c2s_port, s2s=S2S_PORT,
                                            hosts=hosts_file(directory)))
    for user, password in users.items():
        subprocess.run(["prosodyctl", "--config", str(config), "register", user, "prosody.test", password], check=True, capture_output=True)
    log = directory / "stdout.log"
    proc = subprocess.Popen(["prosody", "--config", str(config), "-F"], stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(ADDRESSES["prosody.test"], S2S_PORT, 30, proc, directory / "prosody.log")
        wait_port(ADDRESSES["prosody.test"], c2s_port, 30, proc, directory / "prosody.log")
        yield proc
    finally:
        stop(proc)
