// Runs SINT with Smack's Signal OMEMO service registered (smack-omemo-signal, over libsignal):
// SINT's OMEMO classes need an OmemoService and skip themselves without one. BouncyCastle is added
// last among the crypto providers: Smack's OMEMO asks AES/GCM for an IvParameterSpec, which the
// JDK's own provider refuses, so the cipher falls through to it (first, it would take over TLS's
// key exchange, which the JDK's TLS cannot use). `run` compiles this into target/launcher.
public class OmemoLauncher {
    public static void main(String[] args) throws Exception {
        java.security.Security.addProvider(new org.bouncycastle.jce.provider.BouncyCastleProvider());
        org.jivesoftware.smackx.omemo.signal.SignalOmemoService.acknowledgeLicense();
        org.jivesoftware.smackx.omemo.signal.SignalOmemoService.setup();
        org.igniterealtime.smack.inttest.SmackIntegrationTestFramework.main(args);
    }
}
