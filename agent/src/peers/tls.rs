//! Mutual TLS for the peer listener: server and client configurations from PEM files
//! (every connection must present a certificate signed by the configured CA), the name a
//! verified certificate carries, and `cutover tls ca|issue` to make a small CA and node
//! certificates for examples and tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::TlsFiles;

/// Why the peers' TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read or parsed.
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the certificates or the settings.
    #[error("TLS setup: {0}")]
    Setup(String),
    /// `cutover tls` could not create a certificate.
    #[error("creating certificates: {0}")]
    Generate(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Read {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Setup(format!("CA {}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// The only TLS version spoken: both ends are cutover agents or current tooling.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The ALPN protocol of the remote API (HTTP/2, for gRPC).
const H2: &[u8] = b"h2";

/// The listener's configuration: its own certificate, and client certificates required
/// and verified against the CA.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server(files).map(Arc::new)
}

/// [`server_config`] for the remote API: HTTP/2 offered by ALPN.
pub fn server_config_h2(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = server(files)?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(Arc::new(config))
}

fn server(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider())
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)
        .map_err(|e| TlsError::Setup(e.to_string()))
}

/// A client's configuration: server certificates verified against the CA, and this node's
/// certificate presented.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    client(files).map(Arc::new)
}

/// [`client_config`] for the remote API: HTTP/2 asked for by ALPN.
pub fn client_config_h2(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = client(files)?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(Arc::new(config))
}

fn client(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(certs(&files.cert)?, key(&files.key)?)
        .map_err(|e| TlsError::Setup(e.to_string()))
}

/// A client's configuration without a certificate of its own (a webhook's receiver):
/// the server's certificate verified against the CAs in `ca`. Certificates rustls cannot use
/// are skipped, as a system bundle may hold some; a file with none usable is refused.
pub fn verify_only_client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs(ca)?);
    if added == 0 {
        return Err(TlsError::Read {
            path: ca.to_owned(),
            reason: "no usable CA certificate in the file".into(),
        });
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name a client checks: the peer's node name (its certificate carries it as a
/// DNS name).
pub fn server_name(node: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(node.to_owned()).map_err(|e| TlsError::Setup(format!("{node:?}: {e}")))
}

/// The name of a (verified) peer or client certificate, for the journal and the audit
/// log: its first DNS name (`cutover tls issue` puts the node name there), or `unknown`.
pub fn peer_name(cert: &CertificateDer<'_>) -> String {
    webpki::EndEntityCert::try_from(cert)
        .ok()
        .and_then(|c| c.valid_dns_names().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The CA's distinguished name; issuing rebuilds it from the same parameters.
fn ca_params(name: &str) -> Result<rcgen::CertificateParams, TlsError> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_owned());
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn write_private(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    crate::fsio::write_atomic(
        path,
        text.as_bytes(),
        crate::fsio::WriteOptions {
            keep_previous: false,
            new_mode: mode,
        },
    )
    .map(|_| ())
    .map_err(|e| TlsError::Generate(e.to_string()))
}

/// Name of a CA made by [`make_ca`] without a name: this, a space and a fingerprint of
/// the CA's key, so two CAs never share a name (a client of another CA is then told
/// "unknown CA", not a signature error).
pub const DEFAULT_CA_NAME: &str = "cutover CA";

/// Creates `ca.pem` and `ca.key` in `dir`: a CA named `name`, or by default
/// [`DEFAULT_CA_NAME`] and a fingerprint of its key. Returns the name.
pub fn make_ca(dir: &Path, name: Option<&str>) -> Result<String, TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            let raw = key.public_key_raw();
            let tail = &raw[raw.len().saturating_sub(6)..];
            let hex: String = tail.iter().map(|b| format!("{b:02x}")).collect();
            format!("{DEFAULT_CA_NAME} {hex}")
        }
    };
    let cert = ca_params(&name)?
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(&dir.join("ca.key"), &key.serialize_pem(), 0o600)?;
    write_private(&dir.join("ca.pem"), &cert.pem(), 0o644)?;
    Ok(name)
}

/// The common name of the CA certificate at `path` (the name [`make_ca`] gave it).
pub fn ca_name(path: &Path) -> Result<String, TlsError> {
    let err = |reason: &str| TlsError::Read {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let cert = certs(path)?.remove(0);
    let anchor = webpki::anchor_from_trusted_cert(&cert).map_err(|e| err(&e.to_string()))?;
    common_name(anchor.subject.as_ref()).ok_or_else(|| err("the CA certificate has no common name"))
}

/// The first common name (OID 2.5.4.3) in the DER of a distinguished name, as a UTF-8,
/// printable or IA5 string.
fn common_name(der: &[u8]) -> Option<String> {
    const CN: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(CN.len()).position(|w| w == CN)? + CN.len();
    let (&tag, rest) = der.get(at..)?.split_first()?;
    let (&len, rest) = rest.split_first()?;
    // Names made here are short: one length byte.
    if !matches!(tag, 0x0c | 0x13 | 0x16) || len >= 0x80 {
        return None;
    }
    String::from_utf8(rest.get(..usize::from(len))?.to_vec()).ok()
}

/// What [`issue`] puts in a certificate besides the name.
#[derive(Debug, Clone, Default)]
pub struct IssueOptions {
    /// SAN URIs (e.g. SPIFFE IDs), after the DNS name.
    pub uris: Vec<String>,
    /// Valid from 2020-01-01 to 2020-01-02 only (for tests of an expired certificate).
    pub expired: bool,
}

/// Issues `<node>.pem` and `<node>.key` in `out`, signed by the CA in `ca_dir` (made by
/// [`make_ca`]; `ca_name` defaults to the name in its `ca.pem`), for `node` as common name
/// and DNS name, usable as server and as client.
pub fn issue(ca_dir: &Path, ca_name: Option<&str>, node: &str, out: &Path) -> Result<(), TlsError> {
    issue_with(ca_dir, ca_name, node, out, &IssueOptions::default())
}

/// [`issue`] with `options`.
pub fn issue_with(
    ca_dir: &Path,
    ca_name: Option<&str>,
    node: &str,
    out: &Path,
    options: &IssueOptions,
) -> Result<(), TlsError> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|e| TlsError::Read {
            path: p,
            reason: e.to_string(),
        })
    };
    let ca_name = match ca_name {
        Some(n) => n.to_owned(),
        None => self::ca_name(&ca_dir.join("ca.pem"))?,
    };
    let ca_key = rcgen::KeyPair::from_pem(&read(ca_dir.join("ca.key"))?)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let issuer = rcgen::Issuer::new(ca_params(&ca_name)?, ca_key);
    let mut p = rcgen::CertificateParams::new(vec![node.to_owned()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    for uri in &options.uris {
        let uri = uri
            .as_str()
            .try_into()
            .map_err(|e| TlsError::Generate(format!("URI {uri:?}: {e}")))?;
        p.subject_alt_names.push(rcgen::SanType::URI(uri));
    }
    if options.expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 2);
    }
    p.distinguished_name
        .push(rcgen::DnType::CommonName, node.to_owned());
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(out).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(
        &out.join(format!("{node}.key")),
        &key.serialize_pem(),
        0o600,
    )?;
    write_private(&out.join(format!("{node}.pem")), &cert.pem(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_load_and_carry_the_name() {
        let dir = tempfile::tempdir().unwrap();
        make_ca(dir.path(), Some("test CA")).unwrap();
        issue(dir.path(), None, "lb1", dir.path()).unwrap();
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("lb1.pem"),
            key: dir.path().join("lb1.key"),
        };
        server_config(&files).unwrap();
        client_config(&files).unwrap();
        let c = certs(&files.cert).unwrap();
        assert_eq!(peer_name(&c[0]), "lb1");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&files.key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn default_ca_names_are_unique_and_issuing_reads_them() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let name_a = make_ca(a.path(), None).unwrap();
        let name_b = make_ca(b.path(), None).unwrap();
        assert!(name_a.starts_with("cutover CA "), "{name_a}");
        assert_ne!(name_a, name_b);
        assert_eq!(ca_name(&a.path().join("ca.pem")).unwrap(), name_a);
        let options = IssueOptions {
            uris: vec!["spiffe://example/ci".into()],
            expired: false,
        };
        issue_with(a.path(), None, "ci", a.path(), &options).unwrap();
        let files = TlsFiles {
            ca: a.path().join("ca.pem"),
            cert: a.path().join("ci.pem"),
            key: a.path().join("ci.key"),
        };
        client_config(&files).unwrap();
        let c = certs(&files.cert).unwrap();
        let cert = webpki::EndEntityCert::try_from(&c[0]).unwrap();
        assert_eq!(
            cert.valid_uri_names().collect::<Vec<_>>(),
            ["spiffe://example/ci"]
        );
    }
}
