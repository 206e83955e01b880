// xmpp.js in a real browser, over RFC 7395 WebSocket: serves browser/chat.html and xmpp.js's own
// browser bundle (@xmpp/client/dist/xmpp.min.js) from a loopback HTTP origin of its own, opens
// the page in Debian's headless Chromium with playwright-core, then in the page (1) fetches
// XEP-0156 host-meta.json from the server and (2) logs in over SERVICE, sends BODY to TO and
// waits for a message WAIT_FOR_BODY. Prints JSON lines on stdout like client.mjs:
// {"page": {"xmpp": type of XMPP.client}}, {"hostMeta": {"websocket": href} | {"error"}},
// {"online": jid, "mechanism"}, {"message": {"from", "body"}}, {"error": text},
// {"console": text} (browser console, e.g. CORS refusals), {"screenshot": path}.
// Exit 0 once the reply arrived. The screenshot is taken in every case.
//
//   node browser.mjs SERVICE DOMAIN USERNAME PASSWORD RESOURCE TO BODY WAIT_FOR_BODY SCREENSHOT [PAGE_PORT]
//
// SERVICE is wss://HOST:PORT/xmpp-websocket; host-meta is fetched from https://HOST:PORT.
// PAGE_PORT fixes the page's origin (http://127.0.0.1:PAGE_PORT) so a test can allow exactly
// that Origin on the server; default any free port.
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const [service, domain, username, password, resource, to, body, waitFor, screenshot, pagePort = "0"] =
  process.argv.slice(2);
const print = (line) => console.log(JSON.stringify(line));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const TIMEOUT_MS = 20000;

// The two files the page needs, each at a fixed path: nothing else is served.
const require = createRequire(import.meta.url);
const xmppjs = require.resolve("@xmpp/client/dist/xmpp.min.js");
const { version } = JSON.parse(await readFile(require.resolve("@xmpp/client/package.json"), "utf8"));
const files = {
  "/chat.html": [new URL("browser/chat.html", import.meta.url), "text/html; charset=utf-8"],
  "/xmpp.min.js": [xmppjs, "text/javascript; charset=utf-8"],
};
const http = createServer(async (req, res) => {
  const file = files[new URL(req.url, "http://x").pathname];
  if (!file) return res.writeHead(404).end();
  res.writeHead(200, { "content-type": file[1] }).end(await readFile(file[0]));
});
await new Promise((resolve) => http.listen(Number(pagePort), "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${http.address().port}`;

let browser;
let ok = false;
try {
  // Debian's Chromium, not a Playwright download; no sandbox since tests run as root.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  // The test server's certificate is self-signed (HTTPS and wss alike).
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 400 } });
  const page = await context.newPage();
  await page.exposeFunction("starlingReport", print);
  page.on("console", (message) => print({ console: message.text() }));
  page.on("pageerror", (error) => print({ error: `page: ${error}` }));
  try {
    await page.goto(`${origin}/chat.html?xmppjs=${version}`);
    print({ page: { xmpp: await page.evaluate(() => typeof globalThis.XMPP?.client) } });
    const hostMeta = new URL("/.well-known/host-meta.json", service.replace(/^ws/, "http")).href;
    print({ hostMeta: await page.evaluate((url) => chat.discover(url), hostMeta) });
    const options = { service, domain, username, password, resource, to, body, waitFor, timeoutMs: TIMEOUT_MS };
    await page.evaluate((o) => chat.chat(o), options);
    ok = true;
  } catch (error) {
    print({ error: String(error.message ?? error).split("\n")[0] });
  } finally {
    await page.screenshot({ path: screenshot, fullPage: true });
    print({ screenshot });
    await page.evaluate(() => chat.stop()).catch(() => {});
  }
} catch (error) {
  print({ error: `browser: ${String(error.message ?? error).split("\n")[0]}` });
} finally {
  await browser?.close();
  http.close();
}
process.exit(ok ? 0 : 1);
