// A real third-party client for the interop suite: xmpp.js (@xmpp/client) logs in over TCP with
// STARTTLS, records which SASL profile it used, sends one message and prints, as JSON lines on
// stdout, what happened: {"online": jid, "sasl2": bool, "mechanism": name}, then each message
// received {"message": {"from", "body"}}. It ends after the message it waits for or a timeout.
//
//   node client.mjs HOST PORT DOMAIN USERNAME PASSWORD RESOURCE TO BODY WAIT_FOR_BODY
import { client, xml } from "@xmpp/client";

const [host, port, domain, username, password, resource, to, body, waitFor] = process.argv.slice(2);
// The test server's certificate is self-signed.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

const xmpp = client({ service: `xmpp://${host}:${port}`, domain, username, password, resource });
let sasl2 = false;
let mechanism = null;
xmpp.on("send", (element) => {
  if (element.name === "authenticate" && element.attrs.xmlns === "urn:xmpp:sasl:2") sasl2 = true;
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
xmpp.on("online", async (address) => {
  console.log(JSON.stringify({ online: address.toString(), sasl2, mechanism }));
  await xmpp.send(xml("presence"));
  await xmpp.send(xml("message", { to, type: "chat" }, xml("body", {}, body)));
});
const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), 20000));
try {
  await xmpp.start();
  await Promise.race([done, timeout]);
  await xmpp.stop();
  process.exit(0);
} catch (error) {
  console.log(JSON.stringify({ error: String(error) }));
  process.exit(1);
}
