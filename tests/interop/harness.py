"""Test harness for the interop suite: the server under test, slixmpp clients, raw XML streams.

Everything a test sees comes from the wire: incoming stanzas are recorded as ElementTree elements
(through a slixmpp 'in' filter, or by the raw stream's own parser) and tests wait on predicates
over them with deadlines. Nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import copy
import hashlib
import hmac
import itertools
import os
import shutil
import signal
import random
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from xml.sax.saxutils import quoteattr

import slixmpp

# Default deadline for one awaited condition (seconds); raise on slow machines.
WAIT = float(os.environ.get("XMPP_WAIT", "10"))

NS = {
    "c": "jabber:client",
    "stream": "http://etherx.jabber.org/streams",
    "streams": "urn:ietf:params:xml:ns:xmpp-streams",
    "tls": "urn:ietf:params:xml:ns:xmpp-tls",
    "sasl": "urn:ietf:params:xml:ns:xmpp-sasl",
    "bind": "urn:ietf:params:xml:ns:xmpp-bind",
    "stanzas": "urn:ietf:params:xml:ns:xmpp-stanzas",
    "roster": "jabber:iq:roster",
    "rosterver": "urn:xmpp:features:rosterver",
    "preapproval": "urn:xmpp:features:pre-approval",
    "disco_info": "http://jabber.org/protocol/disco#info",
    "disco_items": "http://jabber.org/protocol/disco#items",
    "caps": "http://jabber.org/protocol/caps",
    "xdata": "jabber:x:data",
    "ping": "urn:xmpp:ping",
    "vcard": "vcard-temp",
    "private": "jabber:iq:private",
    "blocking": "urn:xmpp:blocking",
    "blocking_errors": "urn:xmpp:blocking:errors",
    "carbons": "urn:xmpp:carbons:2",
    "forward": "urn:xmpp:forward:0",
    "hints": "urn:xmpp:hints",
    "delay": "urn:xmpp:delay",
    "version": "jabber:iq:version",
    "last": "jabber:iq:last",
    "register": "jabber:iq:register",
    "register_feature": "http://jabber.org/features/iq-register",
    "sm": "urn:xmpp:sm:3",
    "sid": "urn:xmpp:sid:0",
}


def tag(prefix: str, local: str) -> str:
    """Clark notation: tag('c', 'message') -> '{jabber:client}message'."""
    return "{%s}%s" % (NS[prefix], local)


def local(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def to_str(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")


def bare(jid: str) -> str:
    return jid.split("/", 1)[0]


def new_id() -> str:
    return uuid.uuid4().hex[:12]


# ---------------------------------------------------------------------------------------------
# Predicates over received top-level elements
# ---------------------------------------------------------------------------------------------

def is_message(frm: str | None = None, body: str | None = None, type_: str | None = None) -> Callable:
    def pred(el: ET.Element) -> bool:
        if el.tag != tag("c", "message"):
            return False
        if frm is not None and el.get("from") != frm:
            return False
        if type_ is not None and el.get("type", "normal") != type_:
            return False
        if body is not None and el.findtext("c:body", namespaces=NS) != body:
            return False
        return True
    pred.__doc__ = f"message from={frm} body={body!r} type={type_}"
    return pred


def is_presence(frm: str | None = None, type_: str | None = "available", from_bare: str | None = None) -> Callable:
    """type_='available' matches presence without a type attribute; None matches any type."""
    def pred(el: ET.Element) -> bool:
        if el.tag != tag("c", "presence"):
            return False
        t = el.get("type", "available")
        if type_ is not None and t != type_:
            return False
        if frm is not None and el.get("from") != frm:
            return False
        if from_bare is not None and bare(el.get("from", "")) != from_bare:
            return False
        return True
    pred.__doc__ = f"presence type={type_} from={frm or from_bare}"
    return pred


def is_roster_push(jid: str | None = None, subscription: str | None = None, **attrs) -> Callable:
    """A roster push (iq set with jabber:iq:roster) whose item matches."""
    def pred(el: ET.Element) -> bool:
        if el.tag != tag("c", "iq") or el.get("type") != "set":
            return False
        item = el.find("roster:query/roster:item", NS)
        if item is None:
            return False
        if jid is not None and item.get("jid") != jid:
            return False
        if subscription is not None and item.get("subscription", "none") != subscription:
            return False
        for k, v in attrs.items():
            if item.get(k) != v:
                return False
        return True
    pred.__doc__ = f"roster push jid={jid} subscription={subscription} {attrs}"
    return pred


def json_lines(output: bytes) -> list[dict]:
    """What a JavaScript client printed: its JSON lines, and any other line as {"log": line}."""
    lines = []
    for line in output.decode(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            lines.append({"log": line})
    return lines


def stanza_error(el: ET.Element) -> tuple[str | None, str | None]:
    """(type, condition) of a stanza error, or (None, None)."""
    err = el.find("c:error", NS)
    if err is None:
        return None, None
    for child in err:
        if child.tag.startswith("{%s}" % NS["stanzas"]) and local(child) != "text":
            return err.get("type"), local(child)
    return err.get("type"), None


# ---------------------------------------------------------------------------------------------
# Inbox: recorded elements + waiting on predicates
# ---------------------------------------------------------------------------------------------

class Inbox:
    def __init__(self, name: str):
        self.name = name
        self.items: list[ET.Element] = []
        self._taken: set[int] = set()
        self._waiters: list[tuple[Callable, asyncio.Future]] = []

    def push(self, el: ET.Element) -> None:
        self.items.append(el)
        for w in list(self._waiters):
            pred, fut = w
            if fut.done():
                self._waiters.remove(w)
                continue
            if id(el) not in self._taken and _safe(pred, el):
                self._taken.add(id(el))
                fut.set_result(el)
                self._waiters.remove(w)

    def find(self, pred: Callable) -> list[ET.Element]:
        """All recorded elements matching pred (taken or not); does not wait."""
        return [el for el in self.items if _safe(pred, el)]

    async def wait(self, pred: Callable, timeout: float | None = None, what: str | None = None) -> ET.Element:
        """Next recorded element matching pred that no earlier wait consumed."""
        for el in self.items:
            if id(el) not in self._taken and _safe(pred, el):
                self._taken.add(id(el))
                return el
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        try:
            return await asyncio.wait_for(fut, timeout if timeout is not None else WAIT)
        except (asyncio.TimeoutError, TimeoutError):
            desc = what or (pred.__doc__ or getattr(pred, "__name__", "condition")).strip()
            raise AssertionError(
                f"{self.name}: no {desc} within {timeout if timeout is not None else WAIT}s; "
                f"last received:\n  " + "\n  ".join(to_str(e)[:400] for e in self.items[-8:])
            ) from None

    def summary(self) -> str:
        return "\n".join(to_str(e)[:400] for e in self.items)


def _safe(pred: Callable, el: ET.Element) -> bool:
    try:
        return bool(pred(el))
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------
# Targets: the server(s) under test
# ---------------------------------------------------------------------------------------------

@dataclass
class Account:
    localpart: str
    password: str
    domain: str

    @property
    def jid(self) -> str:
        return f"{self.localpart}@{self.domain}"


@dataclass
class Endpoint:
    host: str
    port: int          # STARTTLS c2s port
    tls_port: int      # XEP-0368 direct TLS port
    domain: str


@dataclass
class Target:
    kind: str                      # 'starling' or 'external'
    ep: Endpoint
    pool: list[Account]
    admin_url: str | None = None
    server: "StarlingServer | None" = None
    # Accounts prepared through the CLI before start (starling mode only).
    special: dict[str, Account] = field(default_factory=dict)
    ping_idle: float | None = None  # configured idle ping delay (starling mode)
    # XEP-0114: the component port and the secret of each domain a component may serve.
    component_port: int | None = None
    component_secrets: dict[str, str] = field(default_factory=dict)
    _next: int = 0

    @property
    def domain(self) -> str:
        return self.ep.domain

    def take_account(self) -> Account:
        if self._next >= len(self.pool):
            raise RuntimeError("account pool exhausted: raise POOL_SIZE in conftest.py")
        acc = self.pool[self._next]
        self._next += 1
        return acc


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, below the kernel's ephemeral range: a port from that range (what binding
    port 0 gives) can be taken by any process's outgoing connection — a server's to Kafka,
    Cassandra or S3 — between being picked and being bound (seen: a cluster edge could not bind
    its port). Never the same port twice in one run."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(10_000):
        port = random.randrange(10_000, low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between 10000 and {low}")


_source_ips = (f"127.{a}.{b}.{c}" for a in range(100, 110) for b in range(0, 256) for c in range(1, 255))


def fresh_source_ip() -> str:
    """A loopback source address not used before in this run (per-address limits stay isolated)."""
    return next(_source_ips)


class StarlingServer:
    """One `starling serve` process with its own temp data dir, config and free loopback ports."""

    def __init__(self, binary: str, workdir: Path, *, domain: str = "localhost", ip: str = "127.0.0.1",
                 c2s_port: int | None = None, tls_port: int | None = None, registration: bool = False,
                 extra: dict[str, str] | None = None, name: str = "starling", log_filter: str | None = None):
        self.binary = binary
        self.log_filter = log_filter
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ip = ip
        self.domain = domain
        self.c2s_port = c2s_port or free_port(ip)
        self.tls_port = tls_port or free_port(ip)
        self.admin_port = free_port("127.0.0.1")
        self.config = self.dir / "starling.toml"
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None
        extra = extra or {}
        self.config.write_text(
            f"""[server]
domain = "{domain}"
data_dir = "{self.dir / 'data'}"

[c2s]
starttls_listen = ["{ip}:{self.c2s_port}"]
direct_tls_listen = ["{ip}:{self.tls_port}"]
require_tls = true
{extra.get('c2s', '')}
[tls]
{extra.get('tls', 'cert_file = ""' + chr(10) + 'key_file = ""')}

[admin]
listen = "127.0.0.1:{self.admin_port}"
{extra.get('admin', '')}

[registration]
enabled = {'true' if registration else 'false'}
{extra.get('registration', '')}
{extra.get('store', '')}
{extra.get('sections', '')}
"""
        )

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.ip, self.c2s_port, self.tls_port, self.domain)

    def env(self) -> dict:
        env = dict(os.environ)
        if self.log_filter:
            env["RUST_LOG"] = self.log_filter
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.binary, "--config", str(self.config), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, env=self.env(), timeout=120)
        with open(self.dir / "cli.log", "a") as f:
            f.write(f"$ {' '.join(cmd)}\n[rc={res.returncode}]\n{res.stdout}{res.stderr}\n")
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def start(self, ready_timeout: float = 60.0) -> None:
        self.log_start = self.log_size()  # where this process's lines begin (the log is appended to)
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(self.config), "serve"],
            stdout=logf, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout
        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before ready:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.admin_url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except Exception as e:  # not listening yet
                last_err = e
            time.sleep(0.05)  # polling interval while waiting for readiness, bounded by the deadline
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {ready_timeout}s ({last_err}):\n{self.log_tail()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 200) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


# ---------------------------------------------------------------------------------------------
# TLS contexts (the server's certificate is self-signed)
# ---------------------------------------------------------------------------------------------

def insecure_context(alpn: Iterable[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


# ---------------------------------------------------------------------------------------------
# slixmpp client wrapper
# ---------------------------------------------------------------------------------------------

class ConnectFailed(AssertionError):
    pass


class Client:
    """A slixmpp ClientXMPP that records every incoming top-level element in `inbox`.

    Tests send raw XML (`send`, `iq`) so what goes on the wire is exactly what the spec example shows;
    slixmpp does TLS, SASL and binding.
    """

    def __init__(self, env: "Env", account: Account, resource: str | None, *, mech: str | None,
                 direct_tls: bool, password: str | None, plugins: Iterable[str] = ()):
        self.env = env
        self.account = account
        jid = account.jid + (f"/{resource}" if resource else "")
        self.x = slixmpp.ClientXMPP(jid, password if password is not None else account.password, sasl_mech=mech)
        self.x.ssl_context = insecure_context()
        self.x.enable_direct_tls = direct_tls
        self.x.enable_starttls = not direct_tls
        self.x.enable_plaintext = False
        self.x.auto_authorize = None   # never answer subscription requests by itself
        self.x.auto_subscribe = False
        self.x.whitespace_keepalive = False
        self.inbox = Inbox(jid)
        self.stream_errors: list[str] = []
        self.roster_requested = False
        self.session_started = asyncio.Event()
        self.auth_failed = asyncio.Event()
        self.disconnected = asyncio.Event()
        # Real client-side protocol implementations that tests drive (XEP-0313 over XEP-0059).
        self.x.register_plugin("xep_0313")
        for plugin in plugins:  # e.g. "xep_0198": slixmpp's own stream management
            self.x.register_plugin(plugin)
        self.x.add_filter("in", self._record)
        self.x.add_event_handler("session_start", lambda _e: self.session_started.set())
        self.x.add_event_handler("failed_all_auth", lambda _e: self.auth_failed.set())
        self.x.add_event_handler("failed_auth", lambda _e: self.auth_failed.set())
        self.x.add_event_handler("stream_error", self._on_stream_error)
        self.x.add_event_handler("disconnected", lambda _e: self.disconnected.set())

    def _record(self, stanza):
        self.inbox.push(copy.deepcopy(stanza.xml))
        return stanza

    def _on_stream_error(self, err):
        self.stream_errors.append(err["condition"])

    @property
    def jid(self) -> str:
        """Full JID bound by the server."""
        return str(self.x.boundjid.full)

    @property
    def bare(self) -> str:
        return self.account.jid

    @property
    def mechanism(self) -> str | None:
        mech = getattr(self.x.plugin["feature_mechanisms"], "mech", None)
        return getattr(mech, "name", None)

    async def connect(self, host: str, port: int, timeout: float) -> None:
        self.x.connect(host, port)
        waits = {asyncio.ensure_future(e.wait()): name for e, name in (
            (self.session_started, "session"), (self.auth_failed, "auth failed"), (self.disconnected, "disconnected"))}
        done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        if not self.session_started.is_set():
            why = ", ".join(waits[d] for d in done) or f"timeout {timeout}s"
            self.x.cancel_connection_attempt()
            self.x.abort()
            raise ConnectFailed(f"{self.account.jid}: no session ({why}); stream errors {self.stream_errors}; "
                                f"received:\n{self.inbox.summary()[-3000:]}")

    def send(self, xml: str) -> None:
        self.x.send_raw(xml)

    async def iq(self, payload: str = "", type_: str = "get", to: str | None = None,
                 timeout: float | None = None) -> ET.Element:
        """Sends an IQ with the given child XML and returns the matching result or error."""
        iq_id = new_id()
        to_attr = f" to={quoteattr(to)}" if to else ""
        self.send(f"<iq type='{type_}' id='{iq_id}'{to_attr}>{payload}</iq>")
        return await self.inbox.wait(
            lambda e: e.tag == tag("c", "iq") and e.get("id") == iq_id and e.get("type") in ("result", "error"),
            timeout, what=f"reply to iq {iq_id} ({payload[:80]})")

    async def iq_ok(self, payload: str = "", type_: str = "get", to: str | None = None) -> ET.Element:
        res = await self.iq(payload, type_, to)
        assert res.get("type") == "result", f"expected result, got {to_str(res)}"
        return res

    def presence(self, to: str | None = None, type_: str | None = None, status: str | None = None,
                 priority: int | None = None, show: str | None = None, extra: str = "") -> None:
        attrs = (f" to={quoteattr(to)}" if to else "") + (f" type='{type_}'" if type_ else "")
        kids = (f"<show>{show}</show>" if show else "") + (f"<status>{status}</status>" if status else "") \
            + (f"<priority>{priority}</priority>" if priority is not None else "") + extra
        self.send(f"<presence{attrs}>{kids}</presence>" if kids else f"<presence{attrs}/>")

    def message(self, to: str, body: str | None = None, type_: str = "chat", extra: str = "") -> None:
        b = f"<body>{body}</body>" if body is not None else ""
        self.send(f"<message to={quoteattr(to)} type='{type_}' id='{new_id()}'>{b}{extra}</message>")

    async def barrier(self, receiver: "Client") -> None:
        """Sends a marker message to receiver's full JID and waits for it.

        Stanzas from one sender are routed in order (RFC 6120 §10.1), so anything this client sent to
        `receiver` before the barrier that was going to arrive has arrived once the marker has.
        """
        marker = f"barrier-{new_id()}"
        self.message(receiver.jid, marker, type_="normal")
        await receiver.inbox.wait(is_message(body=marker), what=f"barrier message {marker}")

    async def get_roster(self, ver: str | None = None) -> ET.Element:
        v = f" ver={quoteattr(ver)}" if ver is not None else ""
        res = await self.iq_ok(f"<query xmlns='jabber:iq:roster'{v}/>")
        self.roster_requested = True  # now an "interested resource" (RFC 6121 §2.1.6)
        return res

    async def close(self) -> None:
        self.x.cancel_connection_attempt()
        if self.x.transport is not None:
            try:
                await asyncio.wait_for(self.x.disconnect(wait=1), 3)
            except Exception:
                pass
        if self.x.transport is not None:
            self.x.abort()

    def kill(self) -> None:
        """Drops the TCP connection without closing the stream (like a crashed client)."""
        self.x.cancel_connection_attempt()
        transport = self.x.transport
        if transport is not None:
            transport.abort()


# ---------------------------------------------------------------------------------------------
# Raw XML stream over asyncio (for bad input and feature inspection)
# ---------------------------------------------------------------------------------------------

class StreamClosed(Exception):
    pass


class RawStream:
    """A hand-driven client stream: exactly the bytes a test writes go on the wire."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str, name: str):
        self.reader = reader
        self.writer = writer
        self.domain = domain
        self.inbox = Inbox(name)
        self.header: dict | None = None
        self.closed = asyncio.Event()     # server ended the stream or TCP
        self.eof = False
        self._reset_parser()
        self._task = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def open(cls, ep: Endpoint, *, direct_tls: bool = False, source_ip: str | None = None,
                   server_hostname: str | None = None, alpn: Iterable[str] | None = ("xmpp-client",)) -> "RawStream":
        kwargs = {}
        if source_ip:
            kwargs["local_addr"] = (source_ip, 0)
        if direct_tls:
            kwargs["ssl"] = insecure_context(alpn)
            kwargs["server_hostname"] = server_hostname or ep.domain
        port = ep.tls_port if direct_tls else ep.port
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ep.host, port, **kwargs), WAIT)
        return cls(reader, writer, ep.domain, f"raw:{ep.host}:{port}")

    def _reset_parser(self) -> None:
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    self.eof = True
                    break
                self._feed(data)
        except (ConnectionError, ssl.SSLError, OSError):
            self.eof = True
        except ET.ParseError as e:
            self.inbox.push(ET.Element("parse-error", {"text": str(e)}))
        finally:
            self.closed.set()

    def _feed(self, data: bytes) -> None:
        self.parser.feed(data)
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.depth == 1:
                    self.header = dict(el.attrib)
                    self.inbox.push(ET.Element("stream-header", dict(el.attrib)))
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.inbox.push(el)
                elif self.depth == 0:
                    self.inbox.push(ET.Element("stream-end"))

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)

    def stream_header(self, to: str | None = None, version: str = "1.0", ns: str = "jabber:client",
                      decl: bool = True) -> str:
        to = to or self.domain
        return ((("<?xml version='1.0'?>") if decl else "")
                + f"<stream:stream to={quoteattr(to)} version='{version}' xml:lang='en' xmlns={quoteattr(ns)} "
                  "xmlns:stream='http://etherx.jabber.org/streams'>")

    async def open_stream(self, to: str | None = None) -> ET.Element:
        """Sends a stream header and returns the stream features."""
        self._reset_parser()
        self.send(self.stream_header(to))
        return await self.next(tag("stream", "features"))

    async def next(self, tag_name: str | None = None, timeout: float | None = None) -> ET.Element:
        if tag_name is None:
            return await self.inbox.wait(lambda e: e.tag not in ("stream-header",), timeout)
        return await self.inbox.wait(lambda e: e.tag == tag_name, timeout, what=f"<{tag_name}>")

    async def starttls(self, context: ssl.SSLContext | None = None, header: str | None = None) -> ET.Element:
        """STARTTLS on the current stream; returns the features of the restarted stream. `context`
        (e.g. with a client certificate) replaces the default one that verifies nothing; `header`
        opens the restarted stream instead of a client's (e.g. a server's, for s2s)."""
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        resp = await self.inbox.wait(lambda e: e.tag in (tag("tls", "proceed"), tag("tls", "failure")))
        assert resp.tag == tag("tls", "proceed"), f"STARTTLS refused: {to_str(resp)}"
        # Stop our reader before handing the transport to TLS.
        self._task.cancel()
        try:
            await self._task
        except BaseException:
            pass
        await self.writer.start_tls(context or insecure_context(), server_hostname=self.domain)
        self.closed.clear()
        self._reset_parser()
        self._task = asyncio.ensure_future(self._read_loop())
        if header is None:
            return await self.open_stream()
        self.send(header)
        return await self.next(tag("stream", "features"))

    async def auth_plain(self, localpart: str, password: str) -> ET.Element:
        """Sends a SASL PLAIN auth; returns <success/>, <failure/> or whatever ended the stream."""
        blob = base64.b64encode(f"\0{localpart}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{blob}</auth>")
        return await self.inbox.wait(lambda e: e.tag in (
            tag("sasl", "success"), tag("sasl", "failure"), tag("stream", "error"), "stream-end"))

    async def auth_scram(self, localpart: str, password: str, hash_name: str = "SHA-256") -> ET.Element:
        """SCRAM-SHA-1 / SCRAM-SHA-256 without channel binding (RFC 5802, RFC 7677).

        Returns <success/> (after checking the server signature), <failure/>, or the stream end.
        """
        algo = {"SHA-1": "sha1", "SHA-256": "sha256"}[hash_name]
        nonce = base64.b64encode(os.urandom(18)).decode()
        user = localpart.replace("=", "=3D").replace(",", "=2C")
        client_first_bare = f"n={user},r={nonce}"
        blob = base64.b64encode(("n,," + client_first_bare).encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-{hash_name}'>{blob}</auth>")
        ends = (tag("sasl", "success"), tag("sasl", "failure"), tag("stream", "error"), "stream-end")
        el = await self.inbox.wait(lambda e: e.tag in ends + (tag("sasl", "challenge"),))
        if el.tag != tag("sasl", "challenge"):
            return el
        server_first = base64.b64decode(el.text or "").decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(nonce), f"server nonce does not extend ours: {server_first}"
        salted = hashlib.pbkdf2_hmac(algo, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", algo).digest()
        stored_key = hashlib.new(algo, client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, algo).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        final = f"{without_proof},p={base64.b64encode(proof).decode()}"
        self.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{base64.b64encode(final.encode()).decode()}</response>")
        el = await self.inbox.wait(lambda e: e.tag in ends)
        if el.tag == tag("sasl", "success"):
            server_key = hmac.new(salted, b"Server Key", algo).digest()
            expected = base64.b64encode(hmac.new(server_key, auth_message, algo).digest()).decode()
            got = base64.b64decode(el.text or "").decode()
            assert got == f"v={expected}", f"bad SCRAM server signature: {got!r}"
        return el

    async def login(self, account: Account, resource: str | None = "raw", tls: bool = True,
                    bind: bool = True) -> tuple[str | None, ET.Element]:
        """STARTTLS (unless direct TLS), PLAIN, restart, bind (unless not asked to).

        Returns (full JID or None, post-auth features)."""
        if tls:
            feats = await self.open_stream()
            if feats.find("tls:starttls", NS) is not None:
                await self.starttls()
        else:
            await self.open_stream()
        res = await self.auth_plain(account.localpart, account.password)
        assert res.tag == tag("sasl", "success"), f"login failed: {to_str(res)}"
        feats = await self.open_stream()
        jid = await self.bind(resource) if bind else None
        return jid, feats

    async def bind(self, resource: str | None) -> str:
        r = f"<resource>{resource}</resource>" if resource else ""
        res = await self.iq(f"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{r}</bind>", "set", to=None)
        assert res.get("type") == "result", f"bind failed: {to_str(res)}"
        return res.findtext("bind:bind/bind:jid", namespaces=NS)

    async def iq(self, payload: str, type_: str = "get", to: str | None = None,
                 timeout: float | None = None, attrs: str = "") -> ET.Element:
        iq_id = new_id()
        to_attr = f" to={quoteattr(to)}" if to else ""
        self.send(f"<iq type='{type_}' id='{iq_id}'{to_attr}{attrs}>{payload}</iq>")
        return await self.inbox.wait(
            lambda e: e.tag == tag("c", "iq") and e.get("id") == iq_id, timeout, what=f"reply to iq {iq_id}")

    async def stream_error(self, timeout: float | None = None) -> str:
        """Waits for the server to end the stream; returns the stream error condition.

        Fails if the stream ends (or TCP closes) without a <stream:error/>.
        """
        deadline = timeout if timeout is not None else WAIT
        seen = self.inbox.find(lambda e: e.tag == tag("stream", "error"))  # maybe consumed by an earlier wait
        if seen:
            return self._condition(seen[0])
        err_wait = asyncio.ensure_future(self.inbox.wait(lambda e: e.tag == tag("stream", "error"), deadline))
        closed_wait = asyncio.ensure_future(self.closed.wait())
        done, pending = await asyncio.wait({err_wait, closed_wait}, timeout=deadline,
                                           return_when=asyncio.FIRST_COMPLETED)
        if err_wait in pending and closed_wait in done:
            # TCP closed: give the parser a last chance (error and close arrive together).
            try:
                await asyncio.wait_for(asyncio.shield(err_wait), 0.5)
            except Exception:
                pass
        for p in (err_wait, closed_wait):
            if not p.done():
                p.cancel()
        if not err_wait.done() or err_wait.cancelled() or err_wait.exception() is not None:
            raise AssertionError(f"no stream error (closed={self.closed.is_set()}); received:\n{self.inbox.summary()}")
        return self._condition(err_wait.result())

    @staticmethod
    def _condition(err: ET.Element) -> str:
        for child in err:
            if child.tag.startswith("{%s}" % NS["streams"]) and local(child) != "text":
                return local(child)
        raise AssertionError(f"stream error without a defined condition: {to_str(err)}")

    async def wait_closed(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout if timeout is not None else WAIT)

    async def close(self) -> None:
        self._task.cancel()
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except BaseException:
            pass


# ---------------------------------------------------------------------------------------------
# Per-test environment: owns the clients and streams it created and closes them afterwards
# ---------------------------------------------------------------------------------------------

class Env:
    def __init__(self, target: Target):
        self.target = target
        self._clients: list[Client] = []
        self._raws: list[RawStream] = []
        self._resources = itertools.count(1)

    @property
    def domain(self) -> str:
        return self.target.domain

    def account(self) -> Account:
        """A fresh account nobody else in this run uses (empty roster, no state)."""
        return self.target.take_account()

    async def client(self, account: Account | None = None, resource: str | None = "auto", *,
                     presence: bool = False, priority: int | None = None, status: str | None = None,
                     mech: str | None = None, direct_tls: bool = False, password: str | None = None,
                     ep: Endpoint | None = None, timeout: float | None = None, plugins: Iterable[str] = ()) -> Client:
        """Connects and waits for session start; optionally sends initial presence."""
        account = account or self.account()
        if resource == "auto":
            resource = f"r{next(self._resources)}"
        ep = ep or self.target.ep
        c = Client(self, account, resource, mech=mech, direct_tls=direct_tls, password=password, plugins=plugins)
        self._clients.append(c)
        await c.connect(ep.host, ep.tls_port if direct_tls else ep.port, timeout or WAIT)
        if presence or priority is not None or status is not None:
            c.presence(priority=priority, status=status)
        return c

    async def online(self, account: Account | None = None, resource: str | None = "auto", **kw) -> Client:
        """Client that has sent initial presence and received its own presence back (RFC 6121 §4.2.2)."""
        c = await self.client(account, resource, presence=True, **kw)
        await c.inbox.wait(is_presence(frm=c.jid), what="own initial presence reflected")
        return c

    async def raw(self, *, direct_tls: bool = False, source_ip: str | None = None, ep: Endpoint | None = None,
                  **kw) -> RawStream:
        r = await RawStream.open(ep or self.target.ep, direct_tls=direct_tls, source_ip=source_ip, **kw)
        self._raws.append(r)
        return r

    async def raw_session(self, account: Account | None = None, resource: str | None = "raw",
                          source_ip: str | None = None) -> tuple[RawStream, str]:
        """A raw stream logged in and bound; returns (stream, full JID)."""
        account = account or self.account()
        r = await self.raw(source_ip=source_ip)
        jid, _ = await r.login(account, resource)
        return r, jid

    async def subscribe_mutually(self, a: Client, b: Client) -> None:
        """Makes a and b contacts with subscription 'both' (RFC 6121 §3.1 both ways).

        Both must be available; both become interested resources (roster requested).
        """
        for c in (a, b):
            if not c.roster_requested:
                await c.get_roster()
        for x, y in ((a, b), (b, a)):
            x.presence(to=y.bare, type_="subscribe")
            await y.inbox.wait(is_presence(from_bare=x.bare, type_="subscribe"))
            y.presence(to=x.bare, type_="subscribed")
            await x.inbox.wait(is_presence(from_bare=y.bare, type_="subscribed"))
        # Both sides have seen the final roster state once 'both' is pushed.
        await a.inbox.wait(is_roster_push(jid=b.bare, subscription="both"))
        await b.inbox.wait(is_roster_push(jid=a.bare, subscription="both"))

    async def aclose(self) -> None:
        for c in self._clients:
            try:
                await c.close()
            except Exception:
                pass
        for r in self._raws:
            await r.close()
