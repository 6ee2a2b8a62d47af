//! TLS to upstreams configured with `tls:`: the files read (at every poll, so that rotated
//! ones are picked up), the rustls client configuration built from them, and a handshake
//! failure explained by its cause.
//!
//! Guarantees: a key's content never appears in a message (only its file's name); each
//! file is read up to [`MAX_FILE_BYTES`]; the system's roots are read once per process, off
//! the async workers (the first build runs on the blocking pool); a certificate is checked
//! against `server_name` when one is set, and not at all with `insecure_skip_verify`, whose
//! handshake signatures are still verified (so the peer holds the key it presents).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use tokio::io::AsyncReadExt;

use crate::config::{Tls, TlsVersion};

/// A certificate or key file larger than this is refused: a bundle of 1,000 CAs is about
/// 1.4 MB, a key a few KB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The contents of a source's TLS files, as read at one poll. Compared with the previous
/// poll's to tell whether the client must be built again. `Debug` shows sizes only.
#[derive(Clone, PartialEq, Default)]
pub struct Material {
    ca: Option<Vec<u8>>,
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map(Vec::len);
        f.debug_struct("Material")
            .field("ca_bytes", &len(&self.ca))
            .field("cert_bytes", &len(&self.cert))
            .field("key_bytes", &len(&self.key))
            .finish()
    }
}

/// Reads the files `tls` names. The error names the file, never its content.
pub async fn load(tls: &Tls) -> Result<Material, String> {
    let ca = match &tls.ca_file {
        Some(p) => Some(read("ca_file", p).await?),
        None => None,
    };
    let (cert, key) = match &tls.client {
        Some((c, k)) => (
            Some(read("cert_file", c).await?),
            Some(read("key_file", k).await?),
        ),
        None => (None, None),
    };
    Ok(Material { ca, cert, key })
}

async fn read(field: &str, path: &Path) -> Result<Vec<u8>, String> {
    let cant = |e: std::io::Error| format!("cannot read tls.{field} {}: {e}", path.display());
    let f = tokio::fs::File::open(path).await.map_err(cant)?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(cant)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "tls.{field} {} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The system's CA roots, read once (a few hundred files under /etc/ssl): the same for
/// every source, and unchanged but by a package upgrade, which comes with a restart.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a system CA certificate could not be read");
        }
        found.certs
    })
}

/// The rustls configuration for `tls` with the files as `m` holds them. CPU and (the
/// first time) file work: call it on the blocking pool.
pub fn client_config(tls: &Tls, m: &Material, http2: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let (Some(bytes), Some(path)) = (&m.ca, &tls.ca_file) {
        for c in certificates("ca_file", bytes, path)? {
            roots
                .add(c)
                .map_err(|e| format!("tls.ca_file {}: {e}", path.display()))?;
        }
    }
    if tls.system_roots {
        roots.add_parsable_certificates(system_roots().iter().cloned());
    }
    let chain = if roots.is_empty() {
        if !tls.insecure_skip_verify {
            return Err("no CA certificate to trust: the system has none (set tls.ca_file)".into());
        }
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(roots.into(), provider.clone())
                .build()
                .map_err(|e| format!("cannot verify with these roots: {e}"))?,
        )
    };
    let verifier = Verifier {
        chain,
        name: tls.server_name.clone(),
        skip: tls.insecure_skip_verify,
        algorithms: provider.signature_verification_algorithms,
    };
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => rustls::ALL_VERSIONS,
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match (&m.cert, &m.key, &tls.client) {
        (Some(cert), Some(key), Some((cert_path, key_path))) => {
            let certs = certificates("cert_file", cert, cert_path)?;
            let key = private_key(key, key_path)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                format!(
                    "tls.cert_file and tls.key_file do not work together ({})",
                    scrub_key_error(&e)
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    // Set here, since reqwest does not touch a configuration it is handed.
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The PEM certificates of the file `field` names; at least one.
fn certificates(
    field: &str,
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.{field} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.{field} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "tls.key_file {}: the key is encrypted; store it decrypted (`openssl pkey -in KEY -out PLAIN`) in a file only jsonbridge can read",
            path.display()
        ));
    }
    // The error type names what was expected, never the bytes read.
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!(
            "tls.key_file {}: no usable private key ({e})",
            path.display()
        )
    })
}

/// rustls' own words, which name key types and never key material.
fn scrub_key_error(e: &TlsError) -> String {
    match e {
        TlsError::InconsistentKeys(_) => "the key is not the certificate's".into(),
        other => other.to_string(),
    }
}

/// Checks the upstream's certificate against the roots, for `server_name` where set.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    name: Option<ServerName<'static>>,
    skip: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match (&self.chain, self.skip) {
            (_, true) => Ok(ServerCertVerified::assertion()),
            (Some(chain), false) => chain.verify_server_cert(
                end_entity,
                intermediates,
                self.name.as_ref().unwrap_or(server_name),
                ocsp_response,
                now,
            ),
            (None, false) => Err(TlsError::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The cause of a TLS failure somewhere in `e`'s chain, in words that say what to do, or
/// `None` when TLS is not the cause.
pub fn diagnose(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    Some(match found(e)? {
        Found::Error(TlsError::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "the upstream's certificate is signed by an unknown authority (trust its CA with tls.ca_file)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the upstream's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the upstream's certificate is not valid yet (is this machine's clock right?)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the upstream's certificate is not valid for the name asked for (name mismatch; tls.server_name sets the name to verify)".into()
            }
            CertificateError::Revoked => "the upstream's certificate is revoked".into(),
            other => format!("the upstream's certificate is refused: {other:?}"),
        },
        Found::Error(TlsError::AlertReceived(a)) => alert(&format!("{a:?}")),
        Found::Alert(name) => alert(&name),
        Found::Error(TlsError::NoApplicationProtocol) => {
            "the upstream speaks no protocol offered (ALPN; try enable_http2: false)".into()
        }
        Found::Error(other) => format!("TLS handshake failed: {other}"),
    })
}

/// An alert the upstream sent, by its name in rustls' `AlertDescription`.
fn alert(name: &str) -> String {
    match name {
        "CertificateRequired" => {
            "the upstream requires a client certificate (set tls.cert_file and tls.key_file)".into()
        }
        "BadCertificate"
        | "UnknownCA"
        | "CertificateUnknown"
        | "CertificateExpired"
        | "CertificateRevoked"
        | "UnsupportedCertificate"
        | "AccessDenied" => {
            format!("the upstream refused the client certificate (alert {name})")
        }
        other => format!("the upstream ended the TLS session (alert {other})"),
    }
}

enum Found<'a> {
    Error(&'a TlsError),
    /// An alert after the handshake (TLS 1.3 checks the client's certificate then), which
    /// reaches us as an I/O error's text only.
    Alert(String),
}

/// A `rustls::Error` in the chain. `io::Error` hides the error it wraps from `source()`,
/// so each link is also looked into through `get_ref`.
fn found<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<Found<'a>> {
    loop {
        if let Some(t) = e.downcast_ref::<TlsError>() {
            return Some(Found::Error(t));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(f) = found(inner) {
                return Some(f);
            }
            // rustls words it so (`Error::AlertReceived`'s Display); only the name follows.
            if io.kind() == std::io::ErrorKind::InvalidData
                && let Some(name) = inner.to_string().strip_prefix("received fatal alert: ")
            {
                return Some(Found::Alert(name.to_string()));
            }
        }
        e = e.source()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_found_inside_io_errors() {
        let wrapped = std::io::Error::other(TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let m = diagnose(&wrapped).unwrap();
        assert!(m.contains("unknown authority"), "{m}");
        let refused = std::io::Error::other(TlsError::AlertReceived(
            rustls::AlertDescription::CertificateRequired,
        ));
        assert!(
            diagnose(&refused)
                .unwrap()
                .contains("requires a client certificate")
        );
        // After the handshake, the alert comes as an I/O error's text.
        let late = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: UnknownCA",
        );
        assert!(
            diagnose(&late)
                .unwrap()
                .contains("refused the client certificate")
        );
        assert!(diagnose(&std::io::Error::other("connection refused")).is_none());
    }

    #[test]
    fn an_encrypted_key_is_named_as_such_and_never_shown() {
        let pem = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdr\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = private_key(pem, Path::new("/k.pem")).unwrap_err();
        assert!(e.contains("encrypted") && e.contains("/k.pem"), "{e}");
        assert!(!e.contains("TUlJ"), "{e}");
        let e = private_key(b"not a key TUlJ", Path::new("/k.pem")).unwrap_err();
        assert!(!e.contains("TUlJ"), "{e}");
    }
}
