"""XEP-0363 HTTP file upload (`[upload]`, upload.DOMAIN) on both stores: the filesystem and a real
S3-compatible server (scripts/infra/s3: the Versity S3 Gateway). slixmpp's own XEP-0363 client
(over aiohttp) finds the service and uploads; the file comes back, to anyone with the link, with
headers that keep a browser from running it. Then every refusal the XEP and HTTP name: too large
at the slot and at the PUT, a wrong or expired signature, a type the slot did not name, a name
that tries to leave its directory, the quota at the slot and at the PUT, a slot used twice, and a
file past its retention (410, and swept: the quota it held is free again)."""

import asyncio
import http.client
import io
import os
import time
import urllib.parse

import pytest

from conftest import own_server
from harness import Account, Env, StarlingServer, Target, free_port, stanza_error

NS = "urn:xmpp:http:upload:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
PASSWORD = "upload-Password-1"
MAX = 1_000_000
QUOTA = 2_500_000
RETENTION = 8
SLOT_LIFETIME = 3
USERS = ("alice", "bob", "quota", "limits", "expiry")


class Service:
    def __init__(self, env: Env, server: StarlingServer, store: str):
        self.env, self.server, self.store = env, server, store


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def upload(request, workdir):
    store = request.param
    port = free_port()
    s3 = ""
    if store == "s3":
        setting = lambda name, default: os.environ.get(name, default)  # noqa: E731
        s3 = f"""[upload.s3]
endpoint = "{setting('S3_ENDPOINT', 'http://127.0.0.1:27070')}"
bucket = "{setting('S3_BUCKET', 'starling-test')}"
access_key_id = "{setting('S3_ACCESS_KEY_ID', 'starling')}"
secret_access_key = "{setting('S3_SECRET_ACCESS_KEY', 'starling-test-secret')}"
"""
    sections = f"""[websocket]
listen = ["127.0.0.1:{port}"]

[upload]
enabled = true
public_url = "http://127.0.0.1:{port}"
max_file_bytes = {MAX}
quota_bytes = {QUOTA}
retention_seconds = {RETENTION}
slot_lifetime_seconds = {SLOT_LIFETIME}
sweep_interval_seconds = 1
allowed_content_types = ["image/*", "text/plain", "application/octet-stream"]
store = "{store}"
{s3}"""
    with own_server(workdir, f"upload-{store}", sections, USERS, PASSWORD) as server:
        yield Service(Env(Target("starling", server.endpoint, [])), server, store)
    assert "panicked" not in server.log_tail(2000)


async def client(service: Service, user: str, **kw):
    return await service.env.client(Account(user, PASSWORD, "localhost"), **kw)


def request_xml(filename: str, size: int | None, content_type: str | None = None) -> str:
    attrs = f" filename='{filename}'" + (f" size='{size}'" if size is not None else "") + (f" content-type='{content_type}'" if content_type else "")
    return f"<request xmlns='{NS}'{attrs}/>"


async def slot(c, filename: str, size: int, content_type: str | None = "text/plain") -> tuple[str, str]:
    answer = await c.iq_ok(request_xml(filename, size, content_type), to="upload.localhost")
    put, get = answer.find(f".//{{{NS}}}put"), answer.find(f".//{{{NS}}}get")
    return put.get("url"), get.get("url")


def fetch(method: str, url: str, body=None, headers: dict | None = None, chunked: bool = False) -> tuple[int, dict, bytes]:
    """One HTTP request; (status, headers, body). A server that answers before reading the whole
    body may reset the connection while the client still writes: that is an answer too."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            connection.request(method, target, body=body, headers=headers or {}, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the body was read: the answer is waiting
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


async def call(method: str, url: str, body=None, headers: dict | None = None, chunked: bool = False):
    return await asyncio.to_thread(fetch, method, url, body, headers, chunked)


@pytest.mark.deadline(60)
async def test_a_real_client_uploads_and_anyone_with_the_link_downloads(upload):
    alice = await client(upload, "alice", plugins=["xep_0363"])
    items = await alice.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to="localhost")
    assert "upload.localhost" in {item.get("jid") for item in items.iter("{http://jabber.org/protocol/disco#items}item")}
    info = await alice.iq_ok(f"<query xmlns='{DISCO_INFO}'/>", to="upload.localhost")
    identity = info.find(f".//{{{DISCO_INFO}}}identity")
    assert (identity.get("category"), identity.get("type")) == ("store", "file")
    assert NS in {feature.get("var") for feature in info.iter(f"{{{DISCO_INFO}}}feature")}
    fields = {field.get("var"): field.findtext("{jabber:x:data}value") for field in info.iter("{jabber:x:data}field")}
    assert fields == {"FORM_TYPE": NS, "max-file-size": str(MAX)}

    photo = bytes(range(256)) * 1000
    url = await alice.x.plugin["xep_0363"].upload_file("holiday photo.png", size=len(photo), content_type="image/png", input_file=io.BytesIO(photo), timeout=20)
    assert url.startswith("http://127.0.0.1:"), url
    status, headers, body = await call("GET", url)
    assert status == 200 and body == photo
    assert headers["content-type"] == "image/png"
    assert headers["content-length"] == str(len(photo))
    assert headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in headers["content-security-policy"] and "default-src 'none'" in headers["content-security-policy"]
    assert headers["content-disposition"] == "inline; filename*=UTF-8''holiday%5Fphoto%2Epng"
    assert headers["access-control-allow-origin"] == "*"
    status, headers, body = await call("HEAD", url)
    assert (status, headers["content-length"], body) == (200, str(len(photo)), b"")

    # Anything but images, audio and video is an attachment: a browser does not render it.
    put, get = await slot(alice, "page.txt", 5)
    assert (await call("PUT", put, b"hello", {"Content-Type": "text/plain"}))[0] == 201
    status, headers, body = await call("GET", get)
    assert (status, body) == (200, b"hello")
    assert headers["content-disposition"].startswith("attachment;")
    await alice.close()


@pytest.mark.deadline(60)
async def test_what_a_slot_request_refuses(upload):
    limits = await client(upload, "limits")
    too_large = await limits.iq(request_xml("big.bin", MAX + 1, "application/octet-stream"), to="upload.localhost")
    assert stanza_error(too_large) == ("modify", "not-acceptable")
    assert too_large.findtext(f".//{{{NS}}}file-too-large/{{{NS}}}max-file-size") == str(MAX)
    refused_type = await limits.iq(request_xml("clip.mp4", 10, "video/mp4"), to="upload.localhost")
    assert stanza_error(refused_type)[1] == "not-acceptable"
    for bad in (request_xml("x", None), request_xml("", 10), request_xml("x", -5), request_xml("x", 10, "nonsense")):
        assert stanza_error(await limits.iq(bad, to="upload.localhost"))[1] == "bad-request", bad
    unknown = await limits.iq("<query xmlns='jabber:iq:version'/>", to="upload.localhost")
    assert stanza_error(unknown)[1] == "service-unavailable"

    # The quota (2.5 MB): checked at the slot request and again at the PUT, since slots issued
    # together are all granted before any is used.
    quota = await client(upload, "quota")
    slots = [await slot(quota, f"part{n}.bin", MAX, "application/octet-stream") for n in range(3)]
    for put, _ in slots[:2]:
        assert (await call("PUT", put, b"q" * MAX))[0] == 201
    status, _, body = await call("PUT", slots[2][0], b"q" * MAX)
    assert status == 413, body
    assert (await call("GET", slots[2][1]))[0] == 404
    over = await quota.iq(request_xml("more.bin", MAX, "application/octet-stream"), to="upload.localhost")
    assert stanza_error(over) == ("wait", "resource-constraint")
    await limits.close()
    await quota.close()


@pytest.mark.deadline(60)
async def test_what_a_put_or_get_refuses(upload):
    bob = await client(upload, "bob")
    put, get = await slot(bob, "../../etc/passwd", 10)
    assert urllib.parse.urlsplit(put).path.endswith("/passwd") and "/etc/" not in put, put
    body = b"0123456789"
    forged = put[:-1] + ("0" if put[-1] != "0" else "1")
    assert (await call("PUT", forged, body))[0] == 403
    assert (await call("PUT", put.replace("size=10", "size=11"), body + b"!"))[0] == 403
    assert (await call("PUT", put, body + b"!"))[0] == 413, "Content-Length above the slot's size"
    assert (await call("PUT", put, body[:9]))[0] == 400, "Content-Length below the slot's size"
    # Without a Content-Length (chunked) the body is counted: cut at the slot's size.
    assert (await call("PUT", put, iter([body, b"more"]), chunked=True))[0] == 413
    assert (await call("PUT", put, iter([body[:4]]), chunked=True))[0] == 400
    assert (await call("GET", get))[0] == 404, "a refused body stored nothing"
    assert (await call("PUT", put, body, {"Content-Type": "image/png"}))[0] == 415
    assert (await call("PUT", put, body, {"Content-Type": "text/plain; charset=utf-8"}))[0] == 201
    assert (await call("PUT", put, body))[0] == 409, "a slot is used once"
    status, _, got = await call("GET", get)
    assert (status, got) == (200, body)

    assert (await call("GET", get.replace("sig=", "sig=00")))[0] in (403, 404)
    assert (await call("GET", get[:-1] + ("0" if get[-1] != "0" else "1")))[0] == 403, "a changed signature"
    base = get.split("/upload/")[0]
    assert (await call("GET", base + "/upload/../../etc/passwd"))[0] == 404
    assert (await call("GET", base + "/upload/nothing"))[0] == 404
    assert (await call("DELETE", get))[0] == 405
    status, headers, _ = await call("OPTIONS", put, headers={"Origin": "https://web.example", "Access-Control-Request-Method": "PUT"})
    assert status == 204 and "PUT" in headers["access-control-allow-methods"] and headers["access-control-allow-origin"] == "*"

    late_put, _ = await slot(bob, "late.txt", 4)
    await asyncio.sleep(SLOT_LIFETIME + 1.5)
    status, _, why = await call("PUT", late_put, b"late")
    assert status == 403 and b"expired" in why
    await bob.close()


@pytest.mark.deadline(60)
async def test_files_expire_and_are_swept(upload):
    expiry = await client(upload, "expiry")
    gets = []
    for n in range(2):
        put, get = await slot(expiry, f"old{n}.bin", MAX, "application/octet-stream")
        assert (await call("PUT", put, b"e" * MAX))[0] == 201
        gets.append(get)
    started = time.monotonic()
    full = await expiry.iq(request_xml("new.bin", MAX, "application/octet-stream"), to="upload.localhost")
    assert stanza_error(full)[1] == "resource-constraint"
    await asyncio.sleep(RETENTION + 1.5 - (time.monotonic() - started))
    assert (await call("GET", gets[0]))[0] == 410, "past its retention, a link is gone"
    # The sweep (every second here) deleted them: the quota they held is free.
    deadline = time.monotonic() + 10
    while True:
        answer = await expiry.iq(request_xml("new.bin", MAX, "application/octet-stream"), to="upload.localhost")
        if answer.get("type") == "result" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert answer.get("type") == "result", "expired files were not swept"
    if upload.store == "filesystem":
        left = [path for path in (upload.server.dir / "data" / "uploads").rglob("*")]
        assert left == [], left
    await expiry.close()


@pytest.mark.deadline(90)
async def test_an_unreachable_store_is_a_try_again_not_a_hang(workdir):
    """S3 down (nothing listens at the endpoint): a slot request that needs the quota is answered
    `internal-server-error` of type `wait` within seconds (the slot answer holds the user's stream
    for at most 5 s, however the store fails), and the stream goes on; a PUT and a GET are 503
    with `Retry-After`, never a hang."""
    port, dead = free_port(), free_port()
    common = f"""[websocket]
listen = ["127.0.0.1:{port}"]

[upload]
enabled = true
public_url = "http://127.0.0.1:{port}"
store = "s3"
[upload.s3]
endpoint = "http://127.0.0.1:{dead}"
bucket = "nothing"
access_key_id = "x"
secret_access_key = "y"
"""
    with own_server(workdir, "upload-outage", common, ("alice",), PASSWORD) as server:
        alice = await client(Service(Env(Target("starling", server.endpoint, [])), server, "s3"), "alice")
        started = time.monotonic()
        refused = await alice.iq(request_xml("a.txt", 5), to="upload.localhost", timeout=30)
        assert stanza_error(refused) == ("wait", "internal-server-error")
        assert time.monotonic() - started < 15
        await alice.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to="localhost")
        await alice.close()
    # Without a quota the slot needs no store; the PUT and the GET find it down.
    no_quota = common.replace('store = "s3"', 'store = "s3"\nquota_bytes = 0')
    with own_server(workdir, "upload-outage-noquota", no_quota, ("alice",), PASSWORD) as server:
        alice = await client(Service(Env(Target("starling", server.endpoint, [])), server, "s3"), "alice")
        put, get = await slot(alice, "a.txt", 5)
        for method, url, body in (("PUT", put, b"hello"), ("GET", get, None)):
            started = time.monotonic()
            status, headers, _ = await call(method, url, body)
            assert (status, "retry-after" in headers) == (503, True), (method, status)
            assert time.monotonic() - started < 30
        await alice.close()
