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

/// The listener's configuration: its own certificate, and client certificates required
/// and verified against the CA.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider())
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A client's configuration: server certificates verified against the CA, and this node's
/// certificate presented.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(certs(&files.cert)?, key(&files.key)?)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
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

/// Creates `ca.pem` and `ca.key` in `dir` (a CA named `name`).
pub fn make_ca(dir: &Path, name: &str) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = ca_params(name)?
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(&dir.join("ca.key"), &key.serialize_pem(), 0o600)?;
    write_private(&dir.join("ca.pem"), &cert.pem(), 0o644)
}

/// Issues `<node>.pem` and `<node>.key` in `out`, signed by the CA in `ca_dir` (made by
/// [`make_ca`] with `ca_name`), for `node` as common name and DNS name, usable as server
/// and as client.
pub fn issue(ca_dir: &Path, ca_name: &str, node: &str, out: &Path) -> Result<(), TlsError> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|e| TlsError::Read {
            path: p,
            reason: e.to_string(),
        })
    };
    let ca_key = rcgen::KeyPair::from_pem(&read(ca_dir.join("ca.key"))?)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let issuer = rcgen::Issuer::new(ca_params(ca_name)?, ca_key);
    let mut p = rcgen::CertificateParams::new(vec![node.to_owned()])
        .map_err(|e| TlsError::Generate(e.to_string()))?;
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
        make_ca(dir.path(), "test CA").unwrap();
        issue(dir.path(), "test CA", "lb1", dir.path()).unwrap();
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
}
