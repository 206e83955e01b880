// A real third-party client for the interop suite: xmpp.js (@xmpp/client) logs in over TCP with
// STARTTLS, records which SASL profile it used, sends one message and prints, as JSON lines on
// stdout, what happened: {"online": jid, "sasl2": bool, "mechanism": name}, then each message
// received {"message": {"from", "body"}}. It ends after the message it waits for or a timeout.
// With a last argument `again`, it then logs in a second time, with the FAST token the first
// login got (xmpp.js asks for one when offered), and prints {"again": jid, "mechanism": name}.
// Each "online" line says too whether Bind2 was used; a line {"streamManagement", "resumable"}
// after the message whether stream management was enabled.
//
//   node client.mjs HOST PORT DOMAIN USERNAME PASSWORD RESOURCE TO BODY WAIT_FOR_BODY [again]
import { client, xml } from "@xmpp/client";

const [host, port, domain, username, password, resource, to, body, waitFor, again] = process.argv.slice(2);
// The test server's certificate is self-signed.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

const xmpp = client({ service: `xmpp://${host}:${port}`, domain, username, password, resource });
let sasl2 = false;
let mechanism = null;
let bind2 = false;
let tokenRequested = false;
xmpp.on("send", (element) => {
  if (element.name === "authenticate" && element.attrs.xmlns === "urn:xmpp:sasl:2") sasl2 = true;
  if (element.name === "authenticate" && element.getChild("bind", "urn:xmpp:bind:0")) bind2 = true;
  if (element.name === "authenticate" && element.getChild("request-token", "urn:xmpp:fast:0")) tokenRequested = true;
  if (element.name === "authenticate" || element.name === "auth") mechanism = element.attrs.mechanism;
});
xmpp.on("error", (error) => console.log(JSON.stringify({ error: String(error) })));
const done = new Promise((resolve) => {
  xmpp.on("stanza", (stanza) => {
    if (!stanza.is("message")) return;
    const text = stanza.getChildText("body");
    console.log(JSON.stringify({ message: { from: stanza.attrs.from, body: text } }));
    if (text === waitFor) resolve();
  });
});
let logins = 0;
xmpp.on("online", async (address) => {
  logins += 1;
  if (logins > 1) {
    console.log(JSON.stringify({ again: address.toString(), mechanism, bind2 }));
    return;
  }
  console.log(JSON.stringify({ online: address.toString(), sasl2, mechanism, bind2, tokenRequested }));
  await xmpp.send(xml("presence"));
  await xmpp.send(xml("message", { to, type: "chat" }, xml("body", {}, body)));
});
const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), 20000));
try {
  await xmpp.start();
  await Promise.race([done, timeout]);
  // xmpp.js goes online before it reads the rest of `<bound/>`: asked here, after a message.
  console.log(JSON.stringify({ streamManagement: xmpp.streamManagement.enabled, resumable: !!xmpp.streamManagement.id }));
  await xmpp.stop();
  if (again === "again") {
    bind2 = false;
    await xmpp.start();
    await xmpp.stop();
  }
  process.exit(0);
} catch (error) {
  console.log(JSON.stringify({ error: String(error) }));
  process.exit(1);
}
