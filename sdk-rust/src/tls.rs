//! TLS for connections to brokers served with `--tls-cert` (see [`crate::Client::connect_with`]).

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::auth::Credentials;
use crate::error::{Error, Result};

/// How to reach brokers over TLS: the CA that signed their certificates and, for brokers that
/// ask for client certificates (`--tls-client-ca`), this client's certificate and key. PEM.
#[derive(Clone, Debug, Default)]
pub struct TlsConfig {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::InvalidArgument {
        message: format!("cannot read {what} {}: {e}", path.display()),
    })
}

impl TlsConfig {
    /// TLS that trusts the CA certificate(s) in `pem`.
    pub fn with_ca_pem(pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca: Some(pem.into()),
            ..Self::default()
        }
    }

    /// TLS that trusts the CA certificate(s) in the PEM file at `path`.
    pub fn with_ca_file(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::with_ca_pem(read(path.as_ref(), "CA file")?))
    }

    /// Presents this certificate chain and private key (PEM) to brokers that ask for one.
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// [`TlsConfig::identity_pem`] from files.
    pub fn identity_files(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let c = read(cert.as_ref(), "certificate file")?;
        let k = read(key.as_ref(), "key file")?;
        Ok(self.identity_pem(c, k))
    }

    /// Checks the brokers' certificates for this name instead of the host in their address.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    pub(crate) fn client_config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            c = c.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        if let Some(d) = &self.domain {
            c = c.domain_name(d);
        }
        c
    }
}

/// How a [`crate::Client`] connects.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// `None`: plain-text HTTP/2 (a broker without `--tls-cert`).
    pub tls: Option<TlsConfig>,
    /// `None`: no credentials (a broker without `--auth`).
    pub credentials: Option<Credentials>,
}

impl ClientOptions {
    /// Options for brokers served over TLS.
    pub fn tls(tls: TlsConfig) -> Self {
        Self {
            tls: Some(tls),
            credentials: None,
        }
    }

    /// These options, authenticating with `credentials` (brokers run with `--auth`).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Options from files as a command line or keyword arguments name them: TLS trusting the
    /// CA file `ca` when given, presenting `cert` and `key` (which go together and need `ca`);
    /// plain text when none is given.
    pub fn from_tls_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self> {
        let invalid = |m: &str| {
            Err(Error::InvalidArgument {
                message: m.to_string(),
            })
        };
        let Some(ca) = ca else {
            if cert.is_some() || key.is_some() {
                return invalid(
                    "a TLS client certificate and key need the CA file that signed the broker's certificate",
                );
            }
            return Ok(Self::default());
        };
        let tls = TlsConfig::with_ca_file(ca)?;
        Ok(Self::tls(match (cert, key) {
            (None, None) => tls,
            (Some(c), Some(k)) => tls.identity_files(c, k)?,
            _ => return invalid("a TLS client certificate and its key go together"),
        }))
    }
}
