//! TLS: which databases are on another machine (and so reached only over TLS), and the rustls
//! configuration that verifies the server's certificate. The handshake is in `connect.rs`.

use super::*;

/// Whether any host the configuration names is on another machine (see
/// [`super::is_local_host`]); `hostaddr`, when given, is where the connection goes.
pub(super) fn reaches_another_machine(config: &tokio_postgres::Config) -> bool {
    let (hosts, addresses) = (config.get_hosts(), config.get_hostaddrs());
    (0..hosts.len().max(addresses.len())).any(|index| match (addresses.get(index), hosts.get(index)) {
        (Some(address), _) => !address.to_canonical().is_loopback(),
        (None, Some(Host::Tcp(name))) => !crate::adapter::is_local_host(name),
        (None, Some(Host::Unix(_)) | None) => false,
    })
}

/// TLS settings: certificates are always verified, chain and host name, against
/// `root_certificates` (a PEM file, as libpq's `sslrootcert`) when given, else against the
/// system's roots. `sslmode` decides whether TLS is used: `disable`, `prefer` (TLS when the
/// server offers it; the default for this machine) or `require` (also spelled `verify-ca` or
/// `verify-full`; the default for a database on another machine).
pub(super) fn tls_config(root_certificates: Option<&str>) -> Result<rustls::ClientConfig, AdapterError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root_certificates {
        Some(path) => {
            let unreadable = || AdapterError::invalid("the sslrootcert file cannot be read as PEM certificates");
            for certificate in CertificateDer::pem_file_iter(path).map_err(|_| unreadable())? {
                roots.add(certificate.map_err(|_| unreadable())?).map_err(|_| unreadable())?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is skipped, as every TLS client does.
                let _ = roots.add(certificate);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| AdapterError::new(AdapterErrorKind::Connection, error))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
