//! The real hub, in this process, on 127.0.0.1 port 0, over mutual TLS with a fresh PKI kept in
//! memory: started exactly as `quotahub serve` and the integration tests start it.

use std::net::SocketAddr;

use anyhow::Context;
use chrono::NaiveDate;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::api::Limits;
use crate::clock::Clock;
use crate::domain::Agency;
use crate::pki::{CertifiedKey, DevCa, Validity};
use crate::server::{Application, ServerTls};
use crate::store::{Store, StoreOptions};

/// A hub serving on loopback until stopped.
pub struct BenchHub {
    /// Where it listens.
    pub address: SocketAddr,
    /// The store it uses (the re-check is measured on it directly).
    pub store: Store,
    /// Where the supervision console listens (the same certificates).
    pub console: SocketAddr,
    ca: DevCa,
    /// Each agency's one certificate, issued and registered on first use.
    certificates: std::sync::Mutex<std::collections::HashMap<String, CertifiedKey>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl BenchHub {
    /// Opens the store at `url` (applying the migrations), with a manual clock that stands on
    /// `today` (the generated data's first delivery: the hub's first start), and serves it. The
    /// replay moves the clock (the store's `checks().clock`, shared with the server) to the day of
    /// each delivery and leaves it on the check date.
    pub async fn start(url: &str, today: NaiveDate, limits: Limits) -> anyhow::Result<BenchHub> {
        crate::tls::install_crypto_provider();
        let ca = DevCa::generate("quotahub bench CA").context("cannot make the bench CA")?;
        let server_key = ca
            .issue_server(&["localhost", "127.0.0.1"])
            .context("cannot make the server certificate")?;
        let tls = ServerTls {
            ca_pem: ca.cert_pem().as_bytes().to_vec(),
            cert_pem: server_key.cert_pem.as_bytes().to_vec(),
            key_pem: server_key.key_pem.as_bytes().to_vec(),
        };
        let store = Store::connect(url, &StoreOptions::default())
            .await
            .map_err(|error| anyhow::anyhow!("cannot open the hub's database: {error}"))?;
        let mut checks = store.checks().clone();
        checks.clock = Clock::on(today);
        let store = store.with_checks(checks);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port")?;
        let console_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port")?;
        let application = Application::with_listener(listener, store.clone(), &tls, limits)?
            .with_console(console_listener, &tls)?;
        let address = application.local_addr();
        let console = application
            .console_addr()
            .context("the console is not listening")?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(BenchHub {
            address,
            store,
            console,
            ca,
            certificates: std::sync::Mutex::default(),
            shutdown: Some(shutdown),
            server: Some(server),
        })
    }

    /// The CA the hub trusts, in PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The certificate of `agency`, issued and registered on first use (one per agency, as the
    /// registry keeps one).
    pub async fn certificate(&self, agency: &Agency) -> anyhow::Result<CertifiedKey> {
        let known = self
            .certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&agency.id())
            .cloned();
        if let Some(certificate) = known {
            return Ok(certificate);
        }
        let certificate: CertifiedKey = self
            .ca
            .issue_agency(agency, Validity::default_leaf())
            .context("cannot issue an agency certificate")?;
        let (_, fingerprint) = crate::tls::certificate_identity(certificate.cert_pem.as_bytes())
            .map_err(anyhow::Error::msg)?;
        self.store
            .add_agency(agency, Some(&fingerprint))
            .await
            .map_err(|error| anyhow::anyhow!("cannot register {agency}: {error}"))?;
        self.certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agency.id(), certificate.clone());
        Ok(certificate)
    }

    /// A new mutual-TLS connection authenticated as `agency`.
    pub async fn channel(&self, agency: &Agency) -> anyhow::Result<Channel> {
        let certificate = self.certificate(agency).await?;
        crate::tls::client_channel(
            &format!("https://{}", self.address),
            self.ca.cert_pem().as_bytes(),
            certificate.cert_pem.as_bytes(),
            certificate.key_pem.as_bytes(),
        )
        .await
        .with_context(|| format!("cannot connect to the hub as {}", agency.id()))
    }

    /// `count` connections as `agency`.
    pub async fn channels(&self, agency: &Agency, count: usize) -> anyhow::Result<Vec<Channel>> {
        let mut channels = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            channels.push(self.channel(agency).await?);
        }
        Ok(channels)
    }

    /// Stops the hub (calls in flight finish) and closes its store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.context("the hub's task failed")??;
        }
        Ok(())
    }
}

impl Drop for BenchHub {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
