//! Fetching a JWKS over https: rustls against the system's roots (or a CA file given for the
//! identity provider), one HTTP/1.1 GET, a timeout on the whole exchange and a cap on the body.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};

/// The largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where a fetch may go and whom it trusts.
#[derive(Clone)]
pub struct Fetcher {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher trusting the certificates of the PEM file `ca_file`, or the system's roots.
    pub fn new(ca_file: Option<&std::path::Path>) -> Result<Fetcher, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let unreadable = |what: String| format!("{}: {what}", path.display());
                for certificate in CertificateDer::pem_file_iter(path).map_err(|error| unreadable(error.to_string()))? {
                    let certificate = certificate.map_err(|error| unreadable(error.to_string()))?;
                    roots.add(certificate).map_err(|error| unreadable(error.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(unreadable("holds no certificate".into()));
                }
            }
            None => {
                for certificate in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(certificate);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Fetcher { tls: Arc::new(tls) })
    }

    /// The body of a `200` answer to `GET url`, within `timeout`. Only `https` URLs are fetched.
    pub async fn get(&self, url: &url::Url, timeout: Duration) -> Result<Vec<u8>, String> {
        if url.scheme() != "https" {
            return Err("the JWKS URL must be https".into());
        }
        match tokio::time::timeout(timeout, self.fetch(url)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    async fn fetch(&self, url: &url::Url) -> Result<Vec<u8>, String> {
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let tcp = tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|error| format!("cannot connect: {error}"))?;
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
                .map_err(|error| error.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS: {error}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|error| error.to_string())?;
        let driver = tokio::spawn(connection);
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let request = http::Request::get(target)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|error| error.to_string())?;
        let response = sender.send_request(request).await.map_err(|error| error.to_string())?;
        if response.status() != http::StatusCode::OK {
            driver.abort();
            return Err(format!("the server answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|error| format!("the body: {error}"))?;
        driver.abort();
        Ok(body.to_bytes().to_vec())
    }
}
